"""Prometheus metrics of one engine: its events turned into histograms and counters, its state read at scrape.

``haven serve`` builds one ``HavenMetrics`` per engine, passes ``observe`` to the
engine as (one of) its event sinks, and hands it to the API, which serves
``exposition()`` at ``GET /metrics``. Each instance owns its own
``CollectorRegistry`` (never prometheus_client's global one), so tests and several
engines in one process never see each other's figures.

From events (since this engine started):
  haven_detection_latency_seconds{since}      confirmed dead, measured from the first suspicion
                                              (since="suspected") or from the last heartbeat heard
                                              (since="last_heartbeat")
  haven_recovery_duration_seconds{type,phase} each completed step by kind (fence, force_down, plan,
                                              enable_reserved_host, evacuate: issue, verify: issued to
                                              running again, disable/enable_compute_service, dry_run),
                                              and phase="total": notification created to finished
  haven_notifications_total{type,status}      notifications created (status new or ignored) and
                                              finished (finished, failed, ...) by this engine
  haven_gate_holds_total                      observer-gate holds raised
From the store, at each scrape:
  haven_hosts{condition}, haven_notifications_stored{status}, haven_alerts_active{kind},
  haven_gate_holds_active, haven_segment_held{segment}, haven_leader{identity,backend}, and the
  canaries' haven_canary_* and haven_api_probe_* (haven.canary.metrics)
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from haven.canary.metrics import CanaryCollector
from haven.domain.errors import HavenError
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import AlertKind, NotificationStatus, NotificationType
from haven.domain.liveness import HostCondition
from haven.recovery.workflows import EVACUATE
from haven.service.status import Leadership, SingleNodeLeadership, status_summary
from haven.store import Store

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format Prometheus 2.x parses
VERIFY = "verify"
TOTAL = "total"
UNKNOWN = "unknown"
_DETECTION_BUCKETS = (0.5, 1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 300)
_RECOVERY_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
# The statuses a notification is counted in: when created, and when it ends.
_COUNTED = (
    NotificationStatus.NEW,
    NotificationStatus.IGNORED,
    NotificationStatus.FINISHED,
    NotificationStatus.FAILED,
)
# A host's suspicion ends without a death verdict when it turns out to be one of these.
_SUSPICION_ENDS = frozenset({EventKind.HOST_HEALTHY, EventKind.HOST_ISOLATED, EventKind.HOST_AGENT_DOWN})


class HavenMetrics:
    """One engine's metrics; ``observe`` is an EventSink and never raises into the engine."""

    def __init__(self, store: Store, leadership: Leadership | None = None) -> None:
        self._store = store
        self.registry = CollectorRegistry()
        self._detection = Histogram(
            "haven_detection_latency_seconds",
            "Time until a host was confirmed dead, since its first suspicion or its last heartbeat heard.",
            ["since"],
            buckets=_DETECTION_BUCKETS,
            registry=self.registry,
        )
        self._recovery = Histogram(
            "haven_recovery_duration_seconds",
            "Duration of each completed recovery phase (step kind, verify, or total) by notification type.",
            ["type", "phase"],
            buckets=_RECOVERY_BUCKETS,
            registry=self.registry,
        )
        self._notifications = Counter(
            "haven_notifications",
            "Notifications created (new, ignored) and finished (finished, failed) by this engine.",
            ["type", "status"],
            registry=self.registry,
        )
        self._holds = Counter(
            "haven_gate_holds", "Observer-gate holds raised on a segment.", registry=self.registry
        )
        self.registry.register(_StateCollector(store, leadership or SingleNodeLeadership()))
        self.registry.register(CanaryCollector(store))  # haven.canary's latest runs and probes
        # Series that exist from the start (at 0), so rate() and alerts see them before the first event.
        for since in ("suspected", "last_heartbeat"):
            self._detection.labels(since)
        for type_ in NotificationType:
            for status in _COUNTED:
                self._notifications.labels(type_.value, status.value)
        self._suspected_at: dict[HostName, float] = {}
        self._opened: dict[NotificationId, tuple[str, float]] = {}  # type, created at
        self._step_started: dict[tuple[NotificationId, int], float] = {}

    def exposition(self) -> bytes:
        """The text exposition format (version 0.0.4), what Prometheus scrapes."""
        return generate_latest(self.registry)

    def observe(self, event: EngineEvent) -> None:
        kind = event.kind
        if kind is EventKind.HOST_SUSPECTED and event.host is not None:
            self._suspected_at.setdefault(event.host, event.at)
        elif kind in _SUSPICION_ENDS and event.host is not None:
            self._suspected_at.pop(event.host, None)
        elif kind is EventKind.HOST_CONFIRMED_DEAD and event.host is not None:
            self._on_dead(event)
        elif kind is EventKind.SEGMENT_HELD:
            self._holds.inc()
        elif kind is EventKind.NOTIFICATION_CREATED and event.notification_id is not None:
            type_, status = str(event.detail.get("type", UNKNOWN)), str(event.detail.get("status", UNKNOWN))
            self._notifications.labels(type_, status).inc()
            if status == NotificationStatus.NEW.value:
                self._opened[event.notification_id] = (type_, event.at)
        elif kind is EventKind.STEP_STARTED and event.notification_id is not None:
            self._step_started[(event.notification_id, int(event.detail.get("seq", -1)))] = event.at
        elif kind is EventKind.STEP_FINISHED and event.notification_id is not None:
            self._on_step_finished(event, event.notification_id)
        elif kind is EventKind.NOTIFICATION_FINISHED and event.notification_id is not None:
            self._on_finished(event, event.notification_id)

    def _on_dead(self, event: EngineEvent) -> None:
        assert event.host is not None
        suspected = self._suspected_at.pop(event.host, None)
        if suspected is not None:
            self._detection.labels("suspected").observe(event.at - suspected)
        heard = event.detail.get("silent_since")
        if isinstance(heard, int | float):
            self._detection.labels("last_heartbeat").observe(event.at - heard)

    def _on_step_finished(self, event: EngineEvent, nid: NotificationId) -> None:
        started = self._step_started.pop((nid, int(event.detail.get("seq", -1))), None)
        if started is None or event.detail.get("state") != "done":
            return  # started before this engine did (resumed), or did not complete
        type_ = self._type_of(nid)
        step_kind = str(event.detail.get("kind", UNKNOWN))
        issued = event.detail.get("issued_at")
        if step_kind == EVACUATE and isinstance(issued, int | float):
            self._recovery.labels(type_, EVACUATE).observe(issued - started)
            self._recovery.labels(type_, VERIFY).observe(event.at - issued)
        else:
            self._recovery.labels(type_, step_kind).observe(event.at - started)

    def _on_finished(self, event: EngineEvent, nid: NotificationId) -> None:
        type_ = self._type_of(nid)
        opened = self._opened.pop(nid, None)
        self._notifications.labels(type_, str(event.detail.get("status", UNKNOWN))).inc()
        if opened is not None:
            self._recovery.labels(type_, TOTAL).observe(event.at - opened[1])

    def _type_of(self, nid: NotificationId) -> str:
        """The notification's type; read from the store for one this engine resumed rather than opened."""
        opened = self._opened.get(nid)
        if opened is not None:
            return opened[0]
        try:
            return self._store.get_notification(nid).type.value
        except HavenError:
            return UNKNOWN  # metrics must never stop the engine


class _StateCollector(Collector):
    """Gauges read from the store (and the leadership) at each scrape, so they are never stale."""

    def __init__(self, store: Store, leadership: Leadership) -> None:
        self._store = store
        self._leadership = leadership

    def collect(self) -> Iterator[Metric]:
        summary = status_summary(self._store)
        hosts = GaugeMetricFamily(
            "haven_hosts", "Watched hosts by their current condition.", labels=["condition"]
        )
        for condition in HostCondition:
            hosts.add_metric([condition.value], summary.hosts_by_condition.get(condition.value, 0))
        stored = GaugeMetricFamily(
            "haven_notifications_stored", "Notifications in the store by status.", labels=["status"]
        )
        for status in NotificationStatus:
            stored.add_metric([status.value], summary.notifications_by_status.get(status.value, 0))
        alerts = GaugeMetricFamily("haven_alerts_active", "Active alerts by kind.", labels=["kind"])
        for kind in AlertKind:
            alerts.add_metric([kind.value], sum(1 for a in summary.alerts if a.kind is kind))
        held_ids = {a.segment_id for a in summary.holds}
        active = GaugeMetricFamily(
            "haven_gate_holds_active", "Segments whose automatic recovery the observer gate holds now."
        )
        active.add_metric([], len(held_ids))
        per_segment = GaugeMetricFamily(
            "haven_segment_held", "1 while the observer gate holds this segment.", labels=["segment"]
        )
        for segment in self._store.list_segments():
            per_segment.add_metric([segment.name], 1 if segment.id in held_ids else 0)
        leader = GaugeMetricFamily(
            "haven_leader", "1 while this engine leads.", labels=["identity", "backend"]
        )
        leader.add_metric(
            [self._leadership.identity, self._leadership.backend], 1 if self._leadership.is_leader() else 0
        )
        yield from (hosts, stored, alerts, active, per_segment, leader)
