"""What a dashboard page shows, and how the engine's events change it.

A ``Board`` is read from the store once, when a page or its event stream opens; after that the
engine's events move it: a host's condition comes from the detector's own event (the engine tells
the hub before it stores the condition, so the event is the fresher word), a notification's
timeline is read again from the store when one of its steps starts or finishes (the executor commits
a step before it announces it), and the alerts are read again when an event that raises or clears
them arrives. No timer reads the database. ``apply`` says which parts of the page changed, so that a
stream sends only those. Beside the engine: the control plane's replicas are read again when its
reconciler says they changed (``controlplane_changed``), the explanations when the explainer finished
one, the canary's boots when a round finished, the backups, each protected server's latest restore drill
and their alerts when a backup round ended (``backups_changed``, once per round of the leader's backup
service, and when an admin asked for a drill from the page). When segments or their hosts change (the
engine's ``segments_changed``, after the API's writes), the segments and hosts are read again, with
each host's zone and rack as the cloud now says (haven.dashboard.domains): the map and the segment
tables follow a segment created, a host added or moved, after haven serve started.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from haven.backups.config import SchedulerSettings
from haven.backups.planner import BackupPlan, max_age_s
from haven.canary.model import CanaryRun, durations, run_from_json
from haven.canary.runner import BOOT
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.backups import BackupRecord, BackupState, RestorePurpose, RestoreRecord, RestoreState
from haven.domain.controlplane import ReplicaHealth, ReplicaState
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    RECOVERY_SUMMARY_KEY,
    SILENT_SINCE_KEY,
    Alert,
    AlertKind,
    Notification,
    Step,
)
from haven.recovery.evacuate_step import VERIFY, EvacuateDetail
from haven.recovery.workflows import EVACUATE
from haven.store import Store

RECENT_NOTIFICATIONS = 15
RECENT_EXPLANATIONS = 5
RECENT_CANARIES = 8
TOP_CAUSES = 3
BACKUP_ROWS = 20  # the most urgent protected servers shown (a fleet has thousands)
DRILLS_LOOKBACK_S = 35 * 86_400.0  # a protected server's latest drill is looked for this far back
CONDITIONS = ("healthy", "suspect", "dead", "isolated", "held", "agent_down")
VERIFY_PHASE = "verify"  # the timeline's line after evacuate: the VMs verified running elsewhere

_HOST_EVENTS = {
    EventKind.HOST_SUSPECTED: "suspect",
    EventKind.HOST_CONFIRMED_DEAD: "dead",
    EventKind.HOST_ISOLATED: "isolated",
    EventKind.HOST_AGENT_DOWN: "agent_down",
    EventKind.HOST_HEALTHY: "healthy",
}
_NOTIFICATION_EVENTS = frozenset(
    {
        EventKind.NOTIFICATION_CREATED,
        EventKind.STEP_STARTED,
        EventKind.STEP_FINISHED,
        EventKind.NOTIFICATION_FINISHED,
        EventKind.NOTIFICATION_LEFT_TO_OWNER,
        EventKind.NOTIFICATION_CLAIMED,
        EventKind.NOTIFICATION_PROGRESS,
        EventKind.STEP_ERROR,
    }
)
_ALERT_EVENTS = frozenset(
    {
        *_HOST_EVENTS,
        EventKind.SEGMENT_HELD,
        EventKind.SEGMENT_RELEASED,
        EventKind.NOTIFICATION_FINISHED,
        EventKind.SAFETY_DECISION,
        EventKind.STEP_ERROR,
        EventKind.CONTROLPLANE_CHANGED,  # the reconciler raises and clears its alerts in that pass
    }
)


@dataclass
class HostView:
    name: HostName
    segment: str
    condition: str
    reason: str = ""
    changed_at: float | None = None
    zone: str = ""  # the failure domains the cloud reports (availability zone, rack/aggregate)
    rack: str = ""


@dataclass(frozen=True, slots=True)
class Phase:
    """One line of a notification's timeline: a kind of step, how many of them are done."""

    kind: str
    done: int
    total: int
    state: str  # done, running, failed, pending, skipped: the phase as a whole
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class NotificationView:
    notification: Notification
    phases: tuple[Phase, ...]
    summary: str
    detect_s: float | None = None  # from the host's last heartbeat to the opening (None: not recorded)


@dataclass(frozen=True, slots=True)
class Incident:
    notification_id: NotificationId
    host: HostName
    opened_at: float
    status: str
    phases: tuple[tuple[str, float, float], ...]  # kind, start and end in seconds after opening
    detect_s: float | None = None  # the host's last heartbeat, in seconds before opening (None: unknown)

    @property
    def total_s(self) -> float:
        """From the opening to the end of the last phase."""
        return max(end for _, _, end in self.phases)


@dataclass(frozen=True, slots=True)
class ServiceView:
    """A control-plane service: its replicas as the reconciler last recorded them."""

    name: str
    replicas: tuple[ReplicaState, ...]
    declared: int | None  # the spec's min_replicas (None: not told)

    @property
    def healthy(self) -> int:
        return sum(1 for r in self.replicas if r.health is ReplicaHealth.HEALTHY)


@dataclass(frozen=True, slots=True)
class ProtectedView:
    """A protected server's recovery point against its policy (the backup runner's latest plan)."""

    server_id: str
    server_name: str
    schedule: str
    newest: BackupRecord | None  # its newest good (available) backup
    age_s: float | None  # of the recovery point (the newest good backup's start)
    max_age_s: float  # what the policy allows
    stale: bool
    waiting: str
    in_flight: BackupRecord | None = None  # a backup being taken now (issued or creating)
    drill: RestoreRecord | None = None  # its latest restore drill (running, passed or failed)

    @property
    def drill_result(self) -> str:
        """``running``, ``passed`` or ``failed`` ("" with no drill yet)."""
        if self.drill is None:
            return ""
        if self.drill.state.in_flight:
            return "running"
        return "passed" if self.drill.state is RestoreState.DONE else "failed"

    @property
    def drill_to_active_s(self) -> float | None:
        """The drill's boot to ACTIVE (Nova's status seen by haven), None until then."""
        d = self.drill
        return None if d is None or d.active_at is None else max(0.0, d.active_at - d.created_at)

    @property
    def drill_point_age_s(self) -> float | None:
        """How old the recovery point the drill proved was when the drill started."""
        return None if self.drill is None else max(0.0, self.drill.created_at - self.drill.recovery_point)


# An admin's restore drill of one server, now (haven serve's BackupService.drill_now): the record.
DrillNow = Callable[[str, str], Awaitable[RestoreRecord]]


@dataclass(frozen=True, slots=True)
class BackupStatus:
    """What a BackupsView reads: the runner's latest plan and its limits (haven serve's BackupService),
    and how to start a restore drill now (None: not from this page)."""

    plan: BackupPlan | None
    settings: SchedulerSettings
    drill: DrillNow | None = None


BackupsView = Callable[[], BackupStatus]


@dataclass
class Changes:
    """The parts of a page an event batch changed."""

    hosts: set[HostName] = field(default_factory=set)
    notifications: set[NotificationId] = field(default_factory=set)
    alerts: bool = False
    controlplane: bool = False
    explanations: bool = False  # the explanations or the canary's boots
    backups: bool = False
    membership: bool = False  # segments or their hosts: the map and the segment tables
    announcements: list[str] = field(default_factory=list)  # for the page's live region

    def __bool__(self) -> bool:
        panels = (self.alerts, self.controlplane, self.explanations, self.backups, self.membership)
        return bool(self.hosts or self.notifications or any(panels))


class Board:
    """The dashboard's state: segments, hosts by condition, recent notifications, alerts, holds."""

    def __init__(
        self,
        store: Store,
        domains: Mapping[HostName, tuple[str, str]] | None = None,
        *,
        declared: Mapping[str, int] | None = None,
        backups: BackupsView | None = None,
        now: float | None = None,
    ) -> None:
        """``declared``: each control-plane service's min_replicas; ``backups``: the backup runner's
        plan (None: backups are not run by this server); ``now``: for the recovery points' ages."""
        self._store = store
        self.read_at = time.time() if now is None else now  # when the store was read for this board
        self._domains = domains or {}
        self._declared = declared or {}
        self.segments = {s.id: s for s in store.list_segments()}
        self.hosts: dict[HostName, HostView] = {}
        self.reload_membership(None)
        self.notifications: dict[NotificationId, NotificationView] = {}
        for n in store.list_notifications(limit=RECENT_NOTIFICATIONS):
            self.notifications[n.id] = _notification_view(n, store.list_steps(n.id))
        self.alerts: list[Alert] = store.list_alerts(active_only=True)
        self.replicas: list[ReplicaState] = store.list_replicas()
        self.explanations: list[ExplanationRecord] = []
        self.canaries: list[CanaryRun] = []
        self.reload_explanations()
        self._backups = backups
        self.backups_on = backups is not None
        self.protected: list[ProtectedView] = []
        self.drill_now: DrillNow | None = None
        self.reload_backups(time.time() if now is None else now)

    # --- reading -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        found = Counter(h.condition for h in self.hosts.values())
        return {c: found.get(c, 0) for c in (*CONDITIONS, *sorted(set(found) - set(CONDITIONS)))}

    def hosts_by_segment(self) -> list[tuple[str, list[HostView]]]:
        """Each segment (one without hosts too) and its hosts, by name."""
        grouped: dict[str, list[HostView]] = {s.name: [] for s in self.segments.values()}
        for h in sorted(self.hosts.values(), key=lambda h: (h.segment, h.name)):
            grouped.setdefault(h.segment, []).append(h)
        return sorted(grouped.items())

    def domains(self) -> list[tuple[str, list[tuple[str, list[HostView]]]]]:
        """Zones, their racks and the hosts in each (hosts the cloud gave no domain: zone "")."""
        zones: dict[str, dict[str, list[HostView]]] = {}
        for h in sorted(self.hosts.values(), key=lambda h: h.name):
            zones.setdefault(h.zone, {}).setdefault(h.rack, []).append(h)
        return [(z, sorted(racks.items())) for z, racks in sorted(zones.items())]

    def recent(self) -> list[NotificationView]:
        return sorted(self.notifications.values(), key=lambda v: -v.notification.created_at)

    def incidents(self, limit: int = 10) -> list[Incident]:
        """The newest finished host recoveries, each phase placed in seconds after the notification
        opened, and the detection before it (for the plot of detection and recovery times per phase)."""
        out = []
        for v in self.recent():
            n = v.notification
            if n.status.value not in ("finished", "failed") or not v.phases:
                continue
            bars = tuple(
                (p.kind, p.started_at - n.created_at, p.finished_at - n.created_at)
                for p in v.phases
                if p.started_at is not None and p.finished_at is not None
            )
            if bars:
                out.append(Incident(n.id, n.hostname, n.created_at, n.status.value, bars, v.detect_s))
        return out[:limit]

    def holds(self) -> list[tuple[Alert, str]]:
        """Active gate holds with their segment's name."""
        return [(a, self.segment_name(a.segment_id)) for a in self.alerts if a.kind is AlertKind.GATE_HOLD]

    def other_alerts(self) -> list[Alert]:
        return [a for a in self.alerts if a.kind is not AlertKind.GATE_HOLD]

    def explanation_of(self, alert: Alert) -> ExplanationRecord | None:
        """The alert's explanation (the explainer's record ``alert:ID``), if it is among the newest."""
        key = f"alert:{alert.id}"
        return next((r for r in self.explanations if r.id == key), None)

    def backup_counts(self) -> dict[str, int]:
        """Protected servers by condition: stale, none yet, within policy."""
        stale = sum(1 for p in self.protected if p.stale)
        none_yet = sum(1 for p in self.protected if not p.stale and p.age_s is None)
        return {"stale": stale, "none_yet": none_yet, "within_policy": len(self.protected) - stale - none_yet}

    def services(self) -> list[ServiceView]:
        grouped: dict[str, list[ReplicaState]] = {}
        for r in self.replicas:
            grouped.setdefault(r.service, []).append(r)
        return [
            ServiceView(name, tuple(sorted(rs, key=lambda r: r.host)), self._declared.get(name))
            for name, rs in sorted(grouped.items())
        ]

    def replicas_observed_at(self) -> float | None:
        return max((r.observed_at for r in self.replicas), default=None)

    def segment_name(self, segment_id: SegmentId | None) -> str:
        if segment_id is None:
            return "-"
        segment = self.segments.get(segment_id)
        return segment.name if segment is not None else segment_id

    # --- the engine's events ---------------------------------------------------------------------
    def apply(self, events: list[EngineEvent]) -> Changes:
        changes = Changes()
        for event in events:
            condition = _HOST_EVENTS.get(event.kind)
            if condition is not None and event.host is not None:
                self._set_condition(event.host, condition, event, changes)
            elif event.kind is EventKind.SEGMENT_HELD:
                for host in event.detail.get("hosts", ()):
                    self._set_condition(HostName(str(host)), "held", event, changes)
            if event.kind in _NOTIFICATION_EVENTS and event.notification_id is not None:
                changes.notifications.add(event.notification_id)
            if event.kind in _ALERT_EVENTS:
                changes.alerts = True
            if event.kind is EventKind.CONTROLPLANE_CHANGED:
                changes.controlplane = True
            elif event.kind in (EventKind.EXPLANATION_FINISHED, EventKind.CANARY_FINISHED):
                changes.explanations = True
            elif event.kind is EventKind.BACKUPS_CHANGED:
                changes.backups = True
            elif event.kind is EventKind.SEGMENTS_CHANGED:
                changes.membership = True
        for nid in changes.notifications:
            n = self._store.get_notification(nid)
            self.notifications[nid] = _notification_view(n, self._store.list_steps(nid))
            if len(self.notifications) > RECENT_NOTIFICATIONS:
                oldest = min(self.notifications.values(), key=lambda v: v.notification.created_at)
                del self.notifications[oldest.notification.id]
        changes.notifications &= self.notifications.keys()
        if changes.membership:
            self.reload_membership(changes)
        if changes.alerts:
            self.reload_alerts()
        if changes.controlplane:
            self._reload_replicas(changes)
        if changes.explanations:
            self.reload_explanations()
        if changes.backups:
            self._backups_changed(max(e.at for e in events if e.kind is EventKind.BACKUPS_CHANGED), changes)
        return changes

    def reload_membership(self, changes: Changes | None) -> None:
        """The segments and their hosts from the store, each host's zone and rack from the domains as
        they stand; a host already shown keeps its condition (the engine's events are the fresher word).
        ``changes``: where to announce hosts added or moved (None: the board's first read)."""
        self.segments = {s.id: s for s in self._store.list_segments()}
        hosts: dict[HostName, HostView] = {}
        for h in self._store.list_hosts():
            segment = self.segment_name(h.segment_id)
            zone, rack = self._domains.get(h.name, ("", ""))
            view = self.hosts.get(h.name)
            if view is None:
                view = HostView(h.name, segment, h.condition, zone=zone, rack=rack)
                if changes is not None:
                    changes.announcements.append(f"{h.name} is in segment {segment}")
            elif changes is not None and view.segment != segment:
                changes.announcements.append(f"{h.name} moved to segment {segment}")
            view.segment, view.zone, view.rack = segment, zone, rack
            hosts[h.name] = view
        self.hosts = hosts

    def reload_alerts(self) -> None:
        self.alerts = self._store.list_alerts(active_only=True)

    def reload_explanations(self) -> None:
        self.explanations = [
            r
            for r in self._store.list_explanations(limit=RECENT_EXPLANATIONS * 2)
            if r.state is ExplanationState.DONE
        ][:RECENT_EXPLANATIONS]
        self.canaries = [run_from_json(d) for d in self._store.list_canaries(BOOT, limit=RECENT_CANARIES)]

    def reload_backups(self, now: float) -> None:
        """The backup runner's latest plan against the stored backups (nothing: no backups run here)."""
        if self._backups is None:
            self.protected = []
            return
        status = self._backups()
        self.drill_now = status.drill
        self.protected = _protected(self._store, status, now)

    def _backups_changed(self, now: float, changes: Changes) -> None:
        """A backup round ended: its plan, the newest backups, and the alerts the round raised or cleared."""
        before = {p.server_id: p for p in self.protected}
        self.reload_backups(now)
        for p in self.protected:
            was = before.get(p.server_id)
            if p.newest is not None and (was is None or was.newest is None or was.newest.id != p.newest.id):
                changes.announcements.append(f"a backup of {p.server_name} was taken")
            if p.stale and (was is None or not was.stale):
                changes.announcements.append(f"{p.server_name}'s recovery point is stale")
            prev = None if was is None else was.drill
            if p.drill is not None and (prev is None or prev.id != p.drill.id or prev.state.in_flight):
                changes.announcements.extend(_drill_news(p, new=prev is None or prev.id != p.drill.id))
        if not changes.alerts:
            known = {a.id for a in self.alerts}
            self.reload_alerts()
            changes.alerts = known != {a.id for a in self.alerts}

    def _reload_replicas(self, changes: Changes) -> None:
        before = {(r.service, r.host): r.health for r in self.replicas}
        self.replicas = self._store.list_replicas()
        for r in self.replicas:
            was = before.get((r.service, r.host))
            if was is not None and was is not r.health:
                changes.announcements.append(f"{r.service} on {r.host} is {r.health.value}")

    def _set_condition(self, host: HostName, condition: str, event: EngineEvent, changes: Changes) -> None:
        view = self.hosts.get(host)
        if view is None:  # a host the store did not list when the page opened (added since)
            segment = self.segment_name(event.segment_id)
            zone, rack = self._domains.get(host, ("", ""))
            view = self.hosts[host] = HostView(host, segment, "healthy", zone=zone, rack=rack)
        if view.condition == condition:
            return
        view.condition = condition
        view.reason = str(event.detail.get("reason", ""))
        view.changed_at = event.at
        changes.hosts.add(host)
        changes.announcements.append(f"{host} is {condition.replace('_', ' ')}")


class _Part(NamedTuple):
    """One step's share of a timeline phase."""

    state: str
    started_at: float | None
    finished_at: float | None


def _notification_view(n: Notification, steps: list[Step]) -> NotificationView:
    phases: dict[str, list[_Part]] = {}
    for s in sorted(steps, key=lambda s: s.seq):
        if s.kind == EVACUATE:
            asked, verified = _evacuation_parts(s)
            phases.setdefault(EVACUATE, []).append(asked)
            phases.setdefault(VERIFY_PHASE, []).append(verified)
        else:
            phases.setdefault(s.kind, []).append(_Part(s.state.value, s.started_at, s.finished_at))
    out = []
    for kind, group in phases.items():
        states = {p.state for p in group}
        done = sum(1 for p in group if p.state == "done")
        unfinished = [st for st in ("failed", "running", "pending") if st in states]
        state: str = unfinished[0] if unfinished else ("done" if done else "skipped")
        starts = [p.started_at for p in group if p.started_at is not None]
        ends = [p.finished_at for p in group if p.finished_at is not None]
        finished = max(ends) if ends and state in ("done", "failed", "skipped") else None
        out.append(Phase(kind, done, len(group), state, min(starts) if starts else None, finished))
    summary = _summary_text(n.payload.get(RECOVERY_SUMMARY_KEY))
    return NotificationView(n, tuple(out), summary, _detect_s(n))


def _evacuation_parts(s: Step) -> tuple[_Part, _Part]:
    """An evacuate step as two lines of the timeline, from what the step persists
    (haven.recovery.evacuate_step): the evacuation asked until Nova accepted it (its ``issued_at``,
    when the step moved to its verify phase), then the VM verified running on a healthy host (its
    ``verified_at``). A step that ended without reaching its verify phase has nothing verified."""
    try:
        d = EvacuateDetail.of(s.detail)
    except (KeyError, TypeError, ValueError):  # not as the step writes it (a record made by hand)
        d = EvacuateDetail(HostName(""), None)
    issued_at, verified_at = d.issued_at, _number(d.extra.get("verified_at"))
    state = s.state.value
    if d.phase != VERIFY and verified_at is None:  # not accepted by Nova (yet)
        if state == "done":  # a record without its phases (older, or made by hand): the whole step
            return _Part(state, s.started_at, s.finished_at), _Part(state, None, None)
        later = "pending" if state in ("pending", "running") else "skipped"
        return _Part(state, s.started_at, s.finished_at), _Part(later, None, None)
    asked_at = issued_at if issued_at is not None else s.started_at
    asked = _Part("done", s.started_at, asked_at)
    if verified_at is not None:
        return asked, _Part("done", asked_at, verified_at)
    return asked, _Part(state, asked_at, s.finished_at)  # being verified, or failed/skipped there


def _detect_s(n: Notification) -> float | None:
    """Seconds from the host's last heartbeat to the notification's opening, as haven's detector
    recorded it when it opened the notification (None: opened by others, or before it was recorded)."""
    heard = _number(n.payload.get(SILENT_SINCE_KEY))
    return None if heard is None else max(0.0, n.created_at - heard)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _summary_text(summary: object) -> str:
    """A finished recovery's summary in a few words (the notification's payload keeps it all)."""
    if not isinstance(summary, Mapping):
        return ""
    words = []
    if "planned" in summary:
        words.append(f"{summary.get('evacuated', 0)} of {summary['planned']} VMs evacuated")
    for key in ("unplaced", "failures"):
        if summary.get(key):
            words.append(f"{len(summary[key])} {key}")
    for key in ("dry_run", "note"):
        if summary.get(key):
            words.append(str(summary[key]))
    return "; ".join(words)


def _drill_news(p: ProtectedView, new: bool) -> list[str]:
    """What to announce of a server's latest drill: started (a new one running), passed or failed."""
    if p.drill_result == "running":
        return [f"a restore drill of {p.server_name} started"] if new else []
    if p.drill_result == "passed":
        active = p.drill_to_active_s
        return [
            f"the restore drill of {p.server_name} passed"
            + (f" (ACTIVE in {active:.1f} s)" if active is not None else "")
        ]
    return [f"the restore drill of {p.server_name} failed"]


def _protected(store: Store, status: BackupStatus, now: float) -> list[ProtectedView]:
    """Each server the runner's latest plan protects: its newest good backup and recovery point's age."""
    if status.plan is None:
        return []
    newest: dict[str, BackupRecord] = {}
    taking: dict[str, BackupRecord] = {}
    for r in store.backups_relevant(now):
        kept = newest if r.state is BackupState.AVAILABLE else taking if r.state.in_flight else None
        if kept is not None and (r.server_id not in kept or r.created_at > kept[r.server_id].created_at):
            kept[r.server_id] = r
    drills: dict[str, RestoreRecord] = {}
    for d in store.list_restores(since=now - DRILLS_LOOKBACK_S):  # oldest first: the latest stays
        if d.purpose is RestorePurpose.DRILL:
            drills[d.server_id] = d
    out = []
    for s in status.plan.statuses:
        age = None if s.recovery_point is None else max(0.0, now - s.recovery_point)
        limit = max_age_s(s.policy, status.settings)
        found = newest.get(s.server_id)
        view = ProtectedView(
            s.server_id, s.server_name, s.policy.schedule, found, age, limit, s.stale, s.waiting,
            taking.get(s.server_id), drills.get(s.server_id),
        )  # fmt: skip
        out.append(view)
    # the most urgent first: stale, then a failed latest drill (its backup did not boot), then no
    # recovery point yet, then the oldest recovery point
    return sorted(
        out,
        key=lambda p: (
            not p.stale,
            p.drill_result != "failed",
            p.age_s is not None,
            -(p.age_s or 0.0),
            p.server_name,
        ),
    )


def canary_durations(run: CanaryRun) -> dict[str, float]:
    """Each boot phase's own duration (from the phase before it)."""
    return durations(run.phases)


def age_text(seconds: float | None) -> str:
    """An age in the largest unit that keeps it readable: 45 s, 12 min, 3.5 h, 2.0 d."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def clock_text(at: float | None) -> str:
    """A time of day in UTC (the engine's clock is epoch seconds)."""
    if at is None:
        return "-"
    return time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int((at % 1) * 10)}"
