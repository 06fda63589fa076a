"""The explainer: each symptom becomes a persisted record, explained once from the evidence around it.

Run by the service wiring (``haven explain listen``) beside a NovaListener; its ``take`` is that listener's
handler. Symptoms are an ``instance.create.error`` (a boot failed) and haven's own alerts about a failed
recovery (``recovery_failed``, ``unplaced``), and failed or slow canaries (haven.canary, through
``open_and_explain``). The shape is the engine's:

1. the symptom is recorded ``pending`` under a key of its own (the notification's message id, the alert's
   id) before any evidence is read, so seeing it twice opens one record;
2. the evidence is gathered (notifications kept in the store; haven's own doings from the store: hosts it
   found dead, fenced and evacuated, its holds, its control plane's restarts (haven.explain.own); metrics
   from the MetricsSource over the ranker's baseline and window) and ranked by haven.diagnosis.rank;
3. the ranked explanations are committed and the record is ``done``. A record left pending (an engine
   stopped in between) is explained by ``resume``; the result depends on stored evidence and the metrics
   source, not on when it runs;
4. with an Alertmanager configured, the loop sends the incidents (symptoms grouped by root cause, with
   haven's own alerts) at each change and every ``resend_s`` (haven.explain.alerting).

A metrics source that fails leaves a note on the record and the ranking to the events: an explanation
that comes late is worth less than one without metrics. Time comes from the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from haven.diagnosis import Explanation, Graph, NodeEvent, RankSettings, Series, Symptom, rank
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.clock import Clock
from haven.domain.errors import CloudError
from haven.domain.incidents import Alert, AlertKind, NotificationType
from haven.evidence.controlplane import same_work_seen
from haven.evidence.metrics import MetricsSource
from haven.evidence.nova import BootFailure, Received
from haven.explain.alerting import AlertingSettings, AlertmanagerNotifier
from haven.explain.foreign import foreign_record
from haven.explain.own import OwnRecords, extend, own_events
from haven.notify.alertmanager_webhook import parse_webhook
from haven.store import Store
from haven.topology import SERVER_BOOT, SERVER_EVACUATE, Topology, phase_of_fault

_log = logging.getLogger(__name__)
T = TypeVar("T")

# haven's alerts that say a recovery failed, and the phase each points at when its words do not.
EXPLAINED_ALERTS: dict[AlertKind, str | None] = {
    AlertKind.RECOVERY_FAILED: None,
    AlertKind.UNPLACED: "scheduling",  # no host had room: the scheduler's and Placement's answer
}


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """A PromQL expression whose series are ``metric`` of ``node`` (one series per label set)."""

    node: str
    metric: str  # in words: "p95 latency"
    query: str  # e.g. histogram_quantile(0.95, sum by (le) (rate(glance_request_seconds_bucket[1m])))
    unit: str = ""


# Evidence the canary keeps about a service's own state, not its failure (haven.canary.runner's scopes): the
# canary image not active in Glance, Placement without room, every compute of a zone disabled. No
# dependency's failure causes these, so the node is no dependency's victim (RankSettings.own_scopes).
STATE_SCOPES = frozenset({"image", "room", "nova-services:disabled"})


def rank_settings(
    window_s: float = 600.0, baseline_s: float = 3600.0, z_threshold: float = 3.0
) -> RankSettings:
    """The ranker's settings for OpenStack ([diagnosis]'s keys), with the canary's state scopes."""
    return RankSettings(window_s, baseline_s, z_threshold, own_scopes=STATE_SCOPES)


@dataclass(frozen=True, slots=True)
class ExplainSettings:
    rank: RankSettings = field(default_factory=rank_settings)
    metrics: tuple[MetricQuery, ...] = ()
    step_s: float = 15.0  # the range queries' resolution
    poll_s: float = 5.0  # how often haven's alerts are looked at
    keep_evidence_s: float = 86_400.0  # kept notifications older than this are pruned
    alerting: AlertingSettings = field(default_factory=AlertingSettings)  # Alertmanager ("": none)


@dataclass(frozen=True, slots=True)
class RankInputs:
    """What one symptom's ranking read (bench/explain.py keeps it to compare and replay rankers)."""

    graph: Graph
    events: tuple[NodeEvent, ...]
    series: tuple[Series, ...]
    notes: tuple[str, ...]  # what was missing: "no token issue time for keystone: ..."


class Explainer:
    def __init__(
        self,
        store: Store,
        topology: Topology,
        clock: Clock,
        metrics: MetricsSource | None = None,
        settings: ExplainSettings | None = None,
    ) -> None:
        self._store = store
        self._graph = Graph(topology.depends_on, topology.labels, topology.phases)
        self._clock = clock
        self._metrics = metrics
        self._settings = settings or ExplainSettings()
        alerting = self._settings.alerting
        self.notifier = AlertmanagerNotifier(store, clock, alerting) if alerting.url else None

    async def take(self, received: Received) -> ExplanationRecord | None:
        """One notification: evidence is kept; a failed boot is recorded and explained (returned).

        An unexpected error is logged and loses that notification only (the listener goes on).
        """
        return await self._isolated(self._take(received))

    async def _take(self, received: Received) -> ExplanationRecord | None:
        item = received.item
        if isinstance(item, NodeEvent):
            key = f"notification:{received.message_id}"
            await asyncio.to_thread(self._store.keep_evidence, {key: item}, self._clock.now())
            return None
        return await self.open_and_explain(_boot_record(received.message_id, item, self._clock.now()))

    async def take_alertmanager(self, payload: object) -> list[ExplanationRecord]:
        """Alertmanager's webhook: each firing alert haven did not raise is a symptom, explained once.

        ValueError (naming what is wrong) when ``payload`` is not Alertmanager's."""
        now = self._clock.now()
        nodes = self._graph.nodes()
        done = []
        for alert in parse_webhook(payload):
            record = foreign_record(alert, nodes, now)
            if record is not None:
                explained = await self._isolated(self.open_and_explain(record))
                done += [explained] if explained is not None else []
        return done

    async def watch_alerts(self) -> list[ExplanationRecord]:
        """Explain each alert about a failed recovery that has no record yet; returns the new records."""
        alerts = await asyncio.to_thread(self._store.list_alerts, active_only=False)
        wanted = [a for a in alerts if a.kind in EXPLAINED_ALERTS]
        known = await asyncio.to_thread(self._store.known_explanations, [_alert_key(a) for a in wanted])
        done = []
        for alert in sorted(wanted, key=lambda a: (a.raised_at, a.id)):
            if _alert_key(alert) not in known:
                record = await self._isolated(self.open_and_explain(_alert_record(alert, self._clock.now())))
                done += [record] if record is not None else []
        return done

    async def resume(self) -> list[ExplanationRecord]:
        """Explain every record left pending (oldest first)."""
        pending = await asyncio.to_thread(self._store.list_explanations, state=ExplanationState.PENDING)
        done = []
        for record in sorted(pending, key=lambda r: r.created_at):
            explained = await self._isolated(self.explain(record))
            done += [explained] if explained is not None else []
        return done

    async def open_and_explain(self, record: ExplanationRecord) -> ExplanationRecord:
        if await asyncio.to_thread(self._store.open_explanation, record):
            return await self.explain(record)
        return await asyncio.to_thread(self._store.get_explanation, record.id)  # seen before

    async def explain(self, record: ExplanationRecord) -> ExplanationRecord:
        """Gather the evidence around a pending record's symptom, rank it, and commit the result."""
        if record.state is ExplanationState.DONE:
            return record
        found = await self.gather(record)
        diagnosis = rank(found.graph, record.symptom, found.series, found.events, self._settings.rank)
        notes = found.notes
        now = self._clock.now()
        await asyncio.to_thread(self._store.finish_explanation, record.id, diagnosis, notes, now)
        _log.info("explained %s: %s", record.id, diagnosis.summary)
        return await asyncio.to_thread(self._store.get_explanation, record.id)

    async def refine(self, record: ExplanationRecord) -> ExplanationRecord:
        """Rank an explained record's symptom again with the evidence kept since (the canary's look after
        a failed check, haven.canary.runner). Stored only when its first three causes changed, and then
        explained at now: ``explained_at`` stays the moment the ranking it holds was first known. A series
        the first ranking read that cannot be read now (Prometheus down) keeps the first ranking, unless
        the look kept new evidence (events are hard evidence; the ranking then goes without that series)."""
        stored = await asyncio.to_thread(self._store.get_explanation, record.id)
        if stored.state is not ExplanationState.DONE or stored.diagnosis is None:
            return stored
        found = await self.gather(stored)
        lost = self._unread(found.notes) - self._unread(stored.notes)
        if lost and not await self._kept_since(stored):
            # nothing new to rank, and fewer series than the first ranking had: keep the first
            _log.info("not ranking %s again: %s now missing", record.id, ", ".join(sorted(lost)))
            return stored
        diagnosis = rank(found.graph, stored.symptom, found.series, found.events, self._settings.rank)
        if _top(diagnosis.explanations) == _top(stored.diagnosis.explanations):
            return stored
        now = self._clock.now()
        await asyncio.to_thread(self._store.refine_explanation, record.id, diagnosis, found.notes, now)
        _log.info("explained %s again: %s", record.id, diagnosis.summary)
        return await asyncio.to_thread(self._store.get_explanation, record.id)

    async def gather(self, record: ExplanationRecord) -> RankInputs:
        """The ranker's input for ``record``'s symptom: the graph with haven's hosts, events, series."""
        symptom = record.symptom
        start = symptom.at - self._settings.rank.lookback_s
        events = await asyncio.to_thread(self._store.evidence_between, start, symptom.at)
        own = await asyncio.to_thread(self._own_records, start)
        skip = record.subject if record.source.startswith("alert:") else None
        events += own_events(own, start, symptom.at, skip_host=skip)
        series, notes = await self._series(start, symptom.at)
        graph, events = prepare(self._graph, events)
        return RankInputs(graph, tuple(events), tuple(series), notes)

    async def run(self) -> None:
        """Until cancelled: pending records, then haven's alerts every ``poll_s``; old evidence is pruned."""
        await self._isolated(self.resume())
        while True:
            await self._isolated(self.watch_alerts())
            if self.notifier is not None:
                await self._isolated(self.notifier.tick())
            before = self._clock.now() - self._settings.keep_evidence_s
            await self._isolated(asyncio.to_thread(self._store.prune_evidence, before))
            await self._clock.sleep_until(self._clock.now() + self._settings.poll_s)

    @staticmethod
    async def _isolated(work: Awaitable[T]) -> T | None:
        """``work``'s result; an unexpected error is logged and fails that piece of work only (None)."""
        try:
            return await work
        except Exception:
            _log.exception("explaining failed; the explainer goes on")
            return None

    def _own_records(self, start: float) -> OwnRecords:
        """What haven itself did since ``start``: its host notifications with their steps, alerts, actions."""
        notes = self._store.list_notifications(type=NotificationType.COMPUTE_HOST, created_after=start)
        steps = {str(n.id): self._store.list_steps(n.id) for n in notes}
        alerts = [a for a in self._store.list_alerts(active_only=False) if a.raised_at >= start]
        return OwnRecords(notes, steps, alerts, self._store.actions_since(start))

    async def _kept_since(self, stored: ExplanationRecord) -> bool:
        """Whether evidence about ``stored``'s window was kept after it was explained (the look's)."""
        if stored.explained_at is None:
            return True
        start = stored.symptom.at - self._settings.rank.lookback_s
        since = await asyncio.to_thread(
            self._store.evidence_between, start, stored.symptom.at, stored.explained_at
        )
        return bool(since)

    def _unread(self, notes: Sequence[str]) -> set[str]:
        """The configured series ``notes`` say could not be read (``_series``' notes), as "metric of node"."""
        return {
            f"{wanted.metric} of {wanted.node}"
            for wanted in self._settings.metrics
            if any(note.startswith(_unread_prefix(wanted)) for note in notes)
        }

    async def _series(self, start: float, end: float) -> tuple[list[Series], tuple[str, ...]]:
        if self._metrics is None or not self._settings.metrics:
            return [], ()
        found: list[Series] = []
        notes: list[str] = []
        for wanted in self._settings.metrics:
            try:
                answer = await self._metrics.query_range(wanted.query, start, end, self._settings.step_s)
            except CloudError as exc:
                notes.append(f"{_unread_prefix(wanted)}{exc}")
                continue
            for one in answer:
                metric = wanted.metric
                if len(answer) > 1:  # several label sets: say which one
                    metric += " (" + ", ".join(f"{k}={v}" for k, v in sorted(one.labels.items())) + ")"
                found.append(Series(wanted.node, metric, one.points, wanted.unit))
        return found, tuple(notes)


def _unread_prefix(wanted: MetricQuery) -> str:
    return f"no {wanted.metric} for {wanted.node}: "


def _top(ranked: Sequence[Explanation]) -> list[str]:
    """What a ranking is judged by: its first three causes."""
    return [e.node for e in ranked[:3]]


def prepare(graph: Graph, events: Sequence[NodeEvent]) -> tuple[Graph, list[NodeEvent]]:
    """The graph and events the ranker reads for one symptom, from the topology's graph and the events
    gathered: haven's hosts joined below nova-compute and the scheduler, and nova-compute a leaf of the
    scheduling phase (haven.explain.own.extend); the passes of checks that do a control-plane
    probe's work as that probe's HEALTHY (haven.evidence.controlplane.same_work_seen). Pure (bench/explain.py
    ``--replay`` ranks recorded evidence through it)."""
    return extend(graph, events), [*events, *same_work_seen(events)]


def _boot_record(message_id: str, failure: BootFailure, now: float) -> ExplanationRecord:
    server = failure.name or failure.instance
    cause = f" ({failure.exception})" if failure.exception else ""
    return ExplanationRecord(
        id=f"instance.create.error:{message_id or failure.instance}",
        source="instance.create.error",
        subject=failure.instance,
        symptom=Symptom(SERVER_BOOT, failure.at, f"boot of {server} failed{cause}", failure.phase),
        created_at=now,
    )


def _alert_key(alert: Alert) -> str:
    return f"alert:{alert.id}"


def _alert_record(alert: Alert, now: float) -> ExplanationRecord:
    phase = phase_of_fault("", alert.message) or EXPLAINED_ALERTS[alert.kind]
    return ExplanationRecord(
        id=_alert_key(alert),
        source=f"alert:{alert.kind.value}",
        subject=alert.host or "",
        symptom=Symptom(
            SERVER_EVACUATE, alert.raised_at, f"recovery of {alert.host or 'a host'} failed", phase
        ),
        created_at=now,
    )
