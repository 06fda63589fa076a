"""The RabbitMQ recovery loop: observe every node, decide (haven.stateful.rabbitmq), act one persisted step.

Who calls it: the tests and ``haven drill rabbitmq-*`` on a loopback cluster (haven.stateful
.rabbitmq_drills), and haven serve's ``[stateful.rabbitmq]`` (haven.stateful.serving), as a leader-only
runnable.

Each pass reads every node at once (its VM running, its own ``cluster_status``), asks ``decide`` and:
- START / RESTART: commits the intent to the journal, makes the effect (a start re-reads the node first:
  a node already running is not started twice; a restart is ``stop_app`` then ``start_app``), then
  commits the outcome;
- HOLD: raises one ``rabbitmq_hold`` alert, kept while the same hold lasts, cleared once the loop
  decides anything else.

The journal is the store's table of stateful steps (galera_actions, migration 0012; no table of its own):
a RabbitMQ cluster's steps are kept under the key ``rabbitmq:<cluster>``, so its one-unfinished-step
index holds for RabbitMQ too, and a Galera cluster of the same name never shares it. A pass first
finishes any step a stopped engine left ``issued``, re-reading its node: a start whose VM runs was made
(done), one whose VM does not run was not (failed, decided afresh); a restart whose node answers was made
(done); one whose node runs but whose app is stopped (haven stopped between ``stop_app`` and
``start_app``) is completed by ``start_app``, the one effect a resume makes: leaving a node's app stopped
is never safer. Under a pausing mode (pause_minority, pause_if_all_down) a node RabbitMQ paused answers
the same, so ``start_app`` is made only once the node reaches a majority of the cluster (``reachable``:
Erlang pings from it, RabbitMQ's own test before it resumes a paused node); until then the step stays
``issued`` and the pass holds, its alert saying why. A hold's alert says so when the pass's resume made
a ``start_app``. A restart whose ``start_app`` failed after ``stop_app`` (the node's app stopped) is left
``issued`` the same way, so the next pass completes it; ``start_app`` is tried ``start_attempts`` times,
then the step fails and the loop holds (``hold_if_stuck``, which also holds a node started again and
again). Every journal and alert write carries the leader's epoch: once one is refused
(``Deposed``), this loop makes no effect and writes nothing more. No effect is made whose intent could
not be committed.

Queues (when given ``queues`` settings): each pass, once its decision is made and acted on, also reads
the cluster's queues from one node whose status answered (``RabbitNode.queues``, one call), judges them
(haven.stateful.rabbitmq_queues.judge) and keeps one ``rabbitmq_backlog`` alert per backlog, cleared
when it drains. A backlog never changes the decision: nothing is started or restarted for it. The read
has its own deadline (``QueueSettings.read_timeout_s``, ``queues_timeout_s``): a hung queue or a stopped
peer fails the read fast instead of holding the next pass for erl_call's 30 s. A read that fails (or
runs past its deadline) keeps the backlogs as they were; a partial read keeps those of the queues that
did not answer (haven.stateful.rabbitmq_queues.judge); ``UNREAD_ALERT_AFTER`` failed reads in a row raise
one more ``rabbitmq_backlog`` alert (``CLUSTER:unread``) saying the queues cannot be read, cleared by the
next read that answers. Without ``queues`` (watch_queues off), the first pass clears the backlog alerts
a watch left.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from haven.domain.clock import Clock
from haven.domain.errors import HavenError
from haven.domain.galera import DONE, FAILED, GaleraAction
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.domain.waiting import within
from haven.stateful.journal import HoldAlerts, Journaled, StepJournal, StoreHold, StoreJournal, run_passes
from haven.stateful.rabbitmq import (
    NOTHING_MADE,
    PAUSING,
    DecisionKind,
    NodeObservation,
    PastStep,
    RabbitDecision,
    RabbitSettings,
    decide,
    hold_decision,
    hold_if_stuck,
)
from haven.stateful.rabbitmq_node import APP_STOPPED, RabbitNode
from haven.stateful.rabbitmq_queues import (
    BacklogKind,
    QueueHealth,
    QueueMemory,
    QueueRead,
    QueueSettings,
    absent_kept,
    judge,
)
from haven.store import Store

log = logging.getLogger(__name__)


UNREAD_ALERT_AFTER = 3  # the queues' reads failed in a row before one alert says they cannot be read
UNREAD = "unread"  # that alert's subject (a backlog's subject begins with its kind: never this)


def journal_key(cluster: str) -> str:
    """The journal's cluster key of a RabbitMQ cluster (Galera's steps use the plain name)."""
    return f"rabbitmq:{cluster}"


RabbitJournal = StepJournal  # the journal, and its steps since a time (a node started again and again holds)


class RabbitStoreAlerts(StoreHold):
    """One ``rabbitmq_hold`` alert per hold in the store's alerts (its host: the cluster's name)."""

    def __init__(self, store: Store, cluster: str, clock: Clock, epoch: int | None = None) -> None:
        super().__init__(store, cluster, clock, epoch, kind=AlertKind.RABBITMQ_HOLD)


class BacklogAlerts(Protocol):
    """Where the backlogs' alerts are kept: one per backlog (its subject: kind and queue)."""

    def show(self, backlogs: Mapping[str, str]) -> None:
        """Raise an alert for each subject of ``backlogs`` (subject -> text) not raised yet, clear every
        other backlog alert of this cluster."""
        ...

    def active(self) -> dict[str, str]:
        """The backlog alerts of this cluster raised now (subject -> text): what a previous leader left."""
        ...


class StoreBacklogs:
    """``rabbitmq_backlog`` alerts in the store, their host ``CLUSTER:SUBJECT``."""

    def __init__(self, store: Store, cluster: str, clock: Clock, epoch: int | None = None) -> None:
        self.store, self.cluster, self._clock, self._epoch = store, cluster, clock, epoch

    def active(self) -> dict[str, str]:
        prefix = f"{self.cluster}:"
        return {
            a.host[len(prefix):]: a.message for a in self.store.list_alerts()
            if a.kind is AlertKind.RABBITMQ_BACKLOG and a.host and a.host.startswith(prefix)
        }  # fmt: skip

    def show(self, backlogs: Mapping[str, str]) -> None:
        prefix = f"{self.cluster}:"
        active = {HostName(prefix + subject) for subject in self.active()}
        wanted = {_alert_host(prefix + subject): text for subject, text in backlogs.items()}
        for host in sorted(active - set(wanted)):
            self.store.clear_alerts(
                now=self._clock.now(), kind=AlertKind.RABBITMQ_BACKLOG, host=host, epoch=self._epoch
            )
        for host, text in sorted(wanted.items()):
            if host not in active:
                now = self._clock.now()
                alert = Alert(str(uuid.uuid4()), AlertKind.RABBITMQ_BACKLOG, text, now, host=host)
                self.store.raise_alert(alert, epoch=self._epoch)


def _alert_host(subject: str) -> HostName:
    """The alert's host (255 characters in the store): a longer subject (queue names reach 255 bytes)
    is cut and ends with a digest of the whole, so two long names never share an alert."""
    if len(subject) <= 255:
        return HostName(subject)
    return HostName(f"{subject[:230]}~{hashlib.sha256(subject.encode()).hexdigest()[:24]}")


class RabbitRecovery:
    def __init__(
        self,
        nodes: Sequence[RabbitNode],
        journal: RabbitJournal,
        alerts: HoldAlerts,
        clock: Clock,
        cluster: str,
        settings: RabbitSettings | None = None,
        queues: QueueSettings | None = None,
        backlog_alerts: BacklogAlerts | None = None,
    ) -> None:
        self._nodes: Mapping[str, RabbitNode] = {n.name: n for n in nodes}
        self._clock, self.cluster = clock, cluster
        self._steps = Journaled(journal, alerts, "rabbitmq", cluster)
        self._settings = settings or RabbitSettings()
        self._mute_since: dict[str, float] = {}
        self._partitioned_since: float | None = None
        self._start_app_failures: dict[str, int] = {}  # an unfinished restart's id -> start_app failures
        self._resumed: list[str] = []  # this pass: nodes whose cut restart the resume completed (start_app)
        self._minority: dict[str, tuple[str, ...]] = {}  # this pass: cut restarts left -> nodes reached
        self._queue_settings, self._backlog_alerts = queues, backlog_alerts
        self._queue_memory = QueueMemory()
        self.queue_health: QueueHealth | None = None  # the last judgement (None: no read answered yet)
        self.queue_error = ""  # why the last read failed ("" when it answered)
        self._shown: dict[str, str] | None = None  # the backlog alerts as last written
        # The backlog alerts found in the store before this loop's first write (a previous leader's, or
        # this process's before a restart; None: not read yet), kept while their queue is not seen.
        self._found: dict[str, str] | None = None
        self._failed_reads = 0  # the queues' reads failed in a row

    @classmethod
    def on_store(
        cls,
        nodes: Sequence[RabbitNode],
        store: Store,
        cluster: str,
        clock: Clock,
        *,
        epoch: int | None = None,
        settings: RabbitSettings | None = None,
        queues: QueueSettings | None = None,
    ) -> RabbitRecovery:
        """The loop with its journal and alerts in haven's store (what haven serve and the drills run);
        with ``queues``, the queues watched too, their backlog alerts in the store; without, the backlog
        alerts a watch left are cleared by the first pass."""
        journal = StoreJournal(store, journal_key(cluster), clock, epoch)
        alerts = RabbitStoreAlerts(store, cluster, clock, epoch)
        backlogs = StoreBacklogs(store, cluster, clock, epoch)  # without ``queues``: cleared once
        return cls(nodes, journal, alerts, clock, cluster, settings, queues, backlogs)

    async def run_pass(self) -> RabbitDecision:
        self._resumed, self._minority = [], {}
        for action in await self._steps.unfinished():
            await self._resume(action)
        if self._steps.deposed is not None:
            return RabbitDecision(DecisionKind.WAIT, self._steps.deposed_reason)
        observations = await self.observe()
        now = self._clock.now()
        decision = decide(observations, now, self._partitioned_since, self._settings)
        if self._minority:
            decision = self._minority_hold(decision)
        if decision.kind is not DecisionKind.HOLD:
            try:
                steps = await self._steps.since(now - self._settings.start_window_s)
            except HavenError as exc:  # the store unavailable: act on nothing this pass
                log.warning("rabbitmq %s: journal not read: %s", self.cluster, exc)
                return RabbitDecision(DecisionKind.WAIT, f"the journal cannot be read: {exc}")
            past = [PastStep(s.kind, s.node, s.state, s.error, s.created_at) for s in steps]
            decision = hold_if_stuck(decision, observations, past, now, self._settings)
        if decision.kind in (DecisionKind.START, DecisionKind.RESTART):
            for name in decision.nodes:
                await self._act(decision, name)
            if decision.kind is DecisionKind.RESTART:
                self._partitioned_since = None  # a new view: the next partition seen waits its grace
        if decision.kind is DecisionKind.HOLD and self._resumed:  # the alert says what this pass made
            made = (
                f"This pass completed haven's cut restart of {', '.join(self._resumed)} (start_app); "
                "nothing else was started or restarted."
            )
            decision = replace(decision, alert=decision.alert.replace(NOTHING_MADE, made))
        held = decision.kind is DecisionKind.HOLD or bool(decision.alert)  # a START may hold a stuck node
        await self._steps.show_hold(held, decision.reason, decision.alert)
        if self._queue_settings is not None and decision.kind is not DecisionKind.NOTHING:
            # Only a whole cluster's queues are read: the read asks every node's queues through
            # RabbitMQ's delegates, and its connections to a node a partition split off would mend the
            # split under the decision (a real cluster's heal took three restarts instead of one).
            self.queue_error = f"the queues are read once the cluster is whole (this pass: {decision.kind})"
        elif self._queue_settings is not None:  # after the decision's effects: a read never delays them
            await self._watch_queues(observations, decision.nodes)
        elif self._backlog_alerts is not None and self._shown is None:
            await self._clear_backlogs()  # watch_queues off: no read will ever clear what is left
        return decision

    async def _clear_backlogs(self) -> None:
        """Clear the backlog alerts a watch left (once: nothing raises them while the queues are not read)."""
        assert self._backlog_alerts is not None
        try:
            await asyncio.to_thread(self._backlog_alerts.show, {})
        except HavenError as exc:  # the store unavailable, or deposed: the next pass tries again
            log.warning("rabbitmq %s: backlog alerts not cleared: %s", self.cluster, exc)
            self._steps.note_deposed(exc)
            return
        self._shown = {}

    def _minority_hold(self, decision: RabbitDecision) -> RabbitDecision:
        """The hold of a cut restart left unfinished: its node's app is stopped and, under a pausing mode,
        it does not reach a majority (RabbitMQ would have paused it too): no start_app, one alert."""
        mode = self._settings.partition_handling
        sees = "; ".join(
            f"{name} reaches {', '.join(seen) or 'no other node'}" for name, seen in self._minority.items()
        )
        names = ", ".join(self._minority)
        return hold_decision(
            f"{names}'s app is stopped (haven's restart of it was cut between stop_app and start_app, or "
            f"RabbitMQ paused it) and under {mode} it does not reach a majority of the {len(self._nodes)} "
            f"nodes ({sees}): start_app is not made, the restart stays open and is completed once it does",
            decision.states,
            f"An operator: check the network between {names} and the other nodes; once {names} reaches a "
            f"majority, haven completes the restart (`rabbitmqctl -n NODE start_app`). Do not `start_app` "
            "a node while it cannot reach a majority.",
        )

    async def run_until_healthy(self, timeout_s: float, interval_s: float = 0.5) -> list[RabbitDecision]:
        """Passes until every node runs and sees every other (or ``timeout_s``, or a hold); the decisions."""
        return await run_passes(self.run_pass, timeout_s, interval_s)

    # ---- observe -----------------------------------------------------------------------------------

    async def observe(self) -> list[NodeObservation]:
        observations = list(await asyncio.gather(*(self._observe(n) for n in self._nodes.values())))
        partitioned = any(o.status is not None and any(o.status.partitions.values()) for o in observations)
        if not partitioned:
            self._partitioned_since = None
        elif self._partitioned_since is None:
            self._partitioned_since = self._clock.now()
        return observations

    async def _observe(self, node: RabbitNode) -> NodeObservation:
        try:
            running = await node.running()
        except HavenError as exc:
            return NodeObservation(node.name, None, error=str(exc))
        if not running:
            self._mute_since.pop(node.name, None)
            return NodeObservation(node.name, False)
        try:
            status = await node.status()
        except HavenError as exc:
            since = self._mute_since.setdefault(node.name, self._clock.now())
            return NodeObservation(node.name, True, error=str(exc), unreadable_since=since)
        self._mute_since.pop(node.name, None)
        return NodeObservation(node.name, True, status)

    async def _watch_queues(self, observations: Sequence[NodeObservation], acted: Sequence[str]) -> None:
        """Read the queues from the first node whose status answered (and which this pass did not start
        or restart), within the read's deadline; judge them, show the backlogs."""
        settings = self._queue_settings
        if settings is None:
            return
        answered = sorted(o.name for o in observations if o.status is not None and o.name not in acted)
        if not answered:
            some = any(o.status is not None for o in observations)
            self.queue_error = (
                "every node whose status answered was started or restarted by this pass: the queues are "
                "not read (the next pass reads them)"
                if some
                else "no node's status answered: the queues are not read"
            )
            return
        deadline = settings.read_timeout_s
        try:
            read = await within(self._nodes[answered[0]].queues(timeout_s=deadline), deadline)
        except TimeoutError:  # a slow read fails fast; the backlogs stay as they were
            await self._read_failed(
                f"queues of {answered[0]}: no answer in {deadline:g} s (queues_timeout_s)"
            )
            return
        except HavenError as exc:  # the backlogs stay as they were: nothing says they drained
            await self._read_failed(f"queues of {answered[0]}: {exc}")
            return
        except Exception as exc:  # a bug: the queues' read only, never the recovery
            log.exception("rabbitmq %s: queues' read", self.cluster)
            await self._read_failed(
                f"queues of {answered[0]}: unexpected error: {type(exc).__name__}: {exc}", logged=True
            )
            return
        now = self._clock.now()
        self.queue_health, self._queue_memory = judge(read, now, self._queue_memory, self._queue_settings)
        self.queue_error, self._failed_reads = "", 0
        shown = {
            f"{b.kind.value}:{b.queue.key}": b.alert(self.cluster, now) for b in self.queue_health.backlogs
        }
        found = await self._found_alerts()
        if found is None:
            return  # the store unavailable: nothing written, the next pass tries again
        keep = absent_kept(read, settings)
        self._found = {s: t for s, t in found.items() if s not in shown and self._still_unseen(s, read, keep)}
        shown = {**self._found, **shown}  # a previous leader's alert of a queue this read did not see stays
        if self._shown is not None and shown.keys() == self._shown.keys():
            return  # the first pass writes even none: it clears what a previous leader left of seen queues
        await self._show(shown)

    async def _found_alerts(self) -> dict[str, str] | None:
        """The backlog alerts found in the store before this loop's first write (read once, without the
        ``unread`` one: it is raised again or cleared by this loop); None when the store cannot be read."""
        if self._found is None:
            if self._backlog_alerts is None:
                self._found = {}
                return self._found
            try:
                active = await asyncio.to_thread(self._backlog_alerts.active)
            except HavenError as exc:
                log.warning("rabbitmq %s: backlog alerts not read: %s", self.cluster, exc)
                self._steps.note_deposed(exc)
                return None
            self._found = {subject: text for subject, text in active.items() if subject != UNREAD}
        return self._found

    def _still_unseen(self, subject: str, read: QueueRead, keep: Callable[[str, BacklogKind], bool]) -> bool:
        """Whether a found alert's queue is one ``read`` did not see (it did not answer, or may be past the
        read's limit): then the alert stays. An alert cut to the store's 255 characters (``_alert_host``)
        is matched to its queue among those the read saw or names as not answering."""
        kind_value, _, key = subject.partition(":")
        try:
            kind = BacklogKind(kind_value)
        except ValueError:  # not a backlog's subject
            return False
        host = f"{self.cluster}:{subject}"
        if len(host) == 255 and "~" in subject:
            named = [q.key for q in read.held] + list(read.missing or ())
            key = next((k for k in named if _alert_host(f"{self.cluster}:{kind_value}:{k}") == host), key)
        return keep(key, kind)

    async def _read_failed(self, error: str, logged: bool = False) -> None:
        """A failed read: the backlogs stay; after ``UNREAD_ALERT_AFTER`` in a row, one alert says the
        queues cannot be read (its subject ``unread``), cleared by the next read that answers. Raised beside
        the backlog alerts as last written, or, before this loop wrote any, as found in the store (a
        previous leader's: kept, now marked as maybe stale)."""
        self.queue_error, self._failed_reads = error, self._failed_reads + 1
        if not logged:
            log.info("rabbitmq %s: %s", self.cluster, error)
        if self._failed_reads < UNREAD_ALERT_AFTER or UNREAD in (self._shown or {}):
            return
        found = await self._found_alerts()
        if found is None:
            return  # the store unavailable: the next failed read tries again
        text = (
            f"RabbitMQ {self.cluster}: the queues could not be read {self._failed_reads} times in a row "
            f"(last: {error}); the backlog alerts stay as the last read saw them and may be stale. Read "
            "them with `rabbitmqctl list_queues -p VHOST name messages_ready messages_unacknowledged "
            "consumers`; a node slow to answer may be overloaded."
        )
        await self._show({**found, **(self._shown or {}), UNREAD: text})

    async def _show(self, shown: dict[str, str]) -> None:
        if self._backlog_alerts is None:
            return
        for subject in shown.keys() - (self._shown or {}).keys() - (self._found or {}).keys():
            log.warning("%s", shown[subject])
        try:
            await asyncio.to_thread(self._backlog_alerts.show, shown)
        except HavenError as exc:  # the store unavailable, or deposed: the next pass writes them again
            log.warning("rabbitmq %s: backlog alerts not written: %s", self.cluster, exc)
            self._steps.note_deposed(exc)
            return
        self._shown = shown

    # ---- act ---------------------------------------------------------------------------------------

    async def _act(self, decision: RabbitDecision, name: str) -> None:
        action = GaleraAction(
            str(uuid.uuid4()), journal_key(self.cluster), decision.kind.value, name, decision.reason,
            ",".join(decision.kept), self._clock.now(),
        )  # fmt: skip
        if not await self._steps.issue(action):
            return
        state, error = DONE, ""
        try:
            node = self._nodes[name]
            if action.kind == DecisionKind.RESTART.value:
                await node.restart_app()
            else:
                await node.start()
        except HavenError as exc:
            state, error = FAILED, str(exc)
            log.warning("rabbitmq %s of %s failed: %s", action.kind, name, exc)
            if action.kind == DecisionKind.RESTART.value and await self._app_stopped(name):
                # stop_app was made, start_app was not: the step stays issued and the next pass's
                # resume completes it with start_app (a few tries, then it fails and the loop holds)
                return
        except Exception as exc:  # a bug: this step fails, never the loop
            state, error = FAILED, f"unexpected error: {type(exc).__name__}: {exc}"
            log.exception("rabbitmq %s of %s", action.kind, name)
        await self._steps.outcome(action, state, error)

    async def _app_stopped(self, name: str) -> bool:
        """Whether ``name``'s VM runs with its ``rabbit`` app stopped (rabbitmqctl says so)."""
        try:
            await self._nodes[name].status()
        except HavenError as exc:
            return APP_STOPPED in str(exc)
        return False

    async def _reaches(self, node: RabbitNode) -> tuple[str, ...] | None:
        """The other nodes ``node``'s VM reaches; None when that cannot be read (then: not a majority)."""
        peers = [name for name in self._nodes if name != node.name]
        try:
            return tuple(n for n in await node.reachable(peers) if n in peers)
        except HavenError as exc:
            log.warning("rabbitmq: what %s reaches cannot be read: %s", node.name, exc)
            return None

    async def _resume(self, action: GaleraAction) -> None:
        """A step a stopped engine left ``issued``: finish it from its node's state now."""
        if not await self._steps.resume_if_running(action, self._nodes.get(action.node)):
            return
        node = self._nodes[action.node]
        if action.kind != DecisionKind.RESTART.value:
            await self._steps.outcome(action, DONE, "")
            return
        try:
            await node.status()
        except HavenError as exc:
            if APP_STOPPED not in str(exc):
                log.info(
                    "rabbitmq: %s does not answer yet; its unfinished restart waits: %s", action.node, exc
                )
                return
            if self._settings.partition_handling in PAUSING:
                # A node paused by pause_minority answers the same: start_app only once it reaches a
                # majority (as RabbitMQ itself would resume it); else the step stays issued, the loop holds.
                reached = await self._reaches(node)
                if reached is None or 2 * (len(reached) + 1) <= len(self._nodes):
                    self._minority[action.node] = reached or ()
                    return
            try:  # stopped between stop_app and start_app: the restart is completed, never left half-made
                await node.start_app()
                self._resumed.append(action.node)
            except HavenError as again:
                tries = self._start_app_failures.get(action.id, 0) + 1
                self._start_app_failures[action.id] = tries
                if tries < self._settings.start_attempts:
                    log.warning("rabbitmq: start_app of %s failed (try %d): %s", action.node, tries, again)
                    return  # the step stays issued: the next pass tries again
                await self._steps.outcome(action, FAILED, f"start_app failed {tries} times: {again}")
                return
        await self._steps.outcome(action, DONE, "")
