"""The engine: detection passes turned into notifications and alerts, and recoveries driven to the end.

Owned by the service runner (``haven serve``), by drills and by the demo.
Each ``tick`` reads the unusual hosts' channels, applies the pure detector,
acts on what changed (open a notification, raise or clear an alert, return a
recovered host to service) and runs the executor's due steps. It never
sleeps: ``next_wake`` says when it wants to be called again.

Several engines (``haven serve --coordination etcd://...``): the engine gets a
``leadership`` (the elector) and acts only while it leads. A tick of a follower
does nothing. The first tick of a term claims every unfinished notification in
the store for the term's epoch, reloads from the store and resumes them; the
first tick after the term ended forgets them and says so (LEADERSHIP_LOST).
The executor checks leadership again before each step and fences each commit
with the epoch, so a step never starts once leadership is gone. Every other
write the engine makes as leader (alerts raised or cleared, notifications the
detector opens, host conditions, a host returned to service, and the check
before returning one) carries the term's epoch too: the store refuses it with
``Deposed`` once a newer leader wrote, and the engine then stands by for the
rest of that term (LEADERSHIP_LOST, ``deposed_by``). Notifications submitted
through the API are stored whatever the term (the leader adopts them).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from haven.cloud.base import Cloud, LivenessSource
from haven.detection.detector import Detection, Hold, Membership, Verdict, detect
from haven.domain.clock import Clock
from haven.domain.errors import CloudError, Deposed, NotFound
from haven.domain.events import EngineEvent, EventKind, EventSink, discard_events
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    RECOVERY_MODE_KEY,
    UNFINISHED_STATUSES,
    Alert,
    AlertKind,
    Notification,
    NotificationStatus,
    NotificationType,
    SegmentMode,
    Step,
    StepState,
)
from haven.domain.liveness import HostCondition
from haven.domain.settings import EngineSettings
from haven.fencing.base import Fencer
from haven.recovery.custom import CustomRecovery
from haven.recovery.executor import CommitHook, RecoveryExecutor, no_hook
from haven.recovery.workflows import DISABLE_SERVICE, FORCE_DOWN, initial_steps
from haven.store import Store

log = logging.getLogger("haven.engine")

HEALTHY = HostCondition.HEALTHY
FOLLOWER_POLL_S = 0.2  # how often a follower looks whether it leads now (a local check, no I/O)
NOVA_COMPUTE = "nova-compute"
_CONDITION_ALERTS = {
    HostCondition.ISOLATED: AlertKind.ISOLATED,
    HostCondition.AGENT_DOWN: AlertKind.AGENT_DOWN,
}
# Alerts about one recovery of a host; cleared when the host is back or a new incident opens.
INCIDENT_ALERTS = (AlertKind.FENCE_FAILED, AlertKind.UNPLACED, AlertKind.RECOVERY_FAILED)
# Payload keys that tell one failure from another of the same type and host (a monitor's free-text
# fields, or haven's own "reason", may differ between two reports of one failure).
_SAME_FAILURE_KEYS = ("event", "instance_uuid", "process_name")
_CONDITION_EVENTS = {
    HostCondition.SUSPECT: EventKind.HOST_SUSPECTED,
    HostCondition.DEAD: EventKind.HOST_CONFIRMED_DEAD,
    HostCondition.ISOLATED: EventKind.HOST_ISOLATED,
    HostCondition.AGENT_DOWN: EventKind.HOST_AGENT_DOWN,
    HostCondition.HEALTHY: EventKind.HOST_HEALTHY,
}


class Leading(Protocol):
    """What the engine needs of an elector (haven.coordination.Elector): answered locally."""

    def is_leader(self) -> bool: ...

    def epoch(self) -> int | None: ...


class Engine:
    def __init__(
        self,
        cloud: Cloud,
        liveness: LivenessSource,
        fencer: Fencer,
        store: Store,
        clock: Clock,
        settings: EngineSettings | None = None,
        on_event: EventSink = discard_events,
        on_commit: CommitHook = no_hook,
        leadership: Leading | None = None,
    ) -> None:
        """``leadership`` None: this engine alone acts, always (the embedded default, drills)."""
        self._cloud, self._liveness, self._store, self._clock = cloud, liveness, store, clock
        self.settings = settings or EngineSettings()
        self._emit = on_event
        self._leadership = leadership
        self._term: int | None = None  # the epoch of the term this engine acts in; None: not acting
        self._deposed_in: int | None = None  # a term the store refused: not begun again
        self._executor = RecoveryExecutor(
            cloud,
            fencer,
            store,
            clock,
            self.settings.recovery,
            self.is_healthy,
            self._on_step_event,
            on_commit,
            leadership.epoch if leadership is not None else None,
        )
        # Custom recovery: the API's claim/progress/finish/fail, heard by the same event sink.
        self.custom = CustomRecovery(store, clock, on_event)
        self._membership = Membership({}, {})
        self._conditions: dict[HostName, HostCondition] = {}
        self._holds: dict[SegmentId, Hold] = {}
        self._failed_processes: dict[HostName, frozenset[str]] = {}
        self._returning: set[HostName] = set()
        self._next_detection = clock.now()
        self._recheck_at: float | None = None

    # ---- start-up ------------------------------------------------------------------------

    def start(self) -> int:
        """Load segments, remembered conditions and holds; resume unfinished recoveries."""
        self.reload_membership()
        members = self._store.list_hosts()
        self._conditions = {h.name: HostCondition(h.condition) for h in members if h.condition != HEALTHY}
        for alert in self._store.list_alerts(active_only=True):
            if alert.kind is AlertKind.GATE_HOLD and alert.segment_id is not None:
                held = frozenset(
                    h
                    for h, c in self._conditions.items()
                    if c is HostCondition.HELD and self._membership.segment_of.get(h) == alert.segment_id
                )
                self._holds[alert.segment_id] = Hold(alert.segment_id, alert.raised_at, alert.message, held)
        # Hosts haven disabled (a host failure or a process failure) come back through the one
        # return path, which also clears force_down; it waits until they are healthy again.
        self._returning = {h.name for h in members if h.disabled_by_haven}
        for h in members:
            last = self._last_haven_disable(h.name) if h.disabled_by_haven else None
            if last is not None and last.kind == DISABLE_SERVICE:
                # A process failure haven acted on: remembered, so one still going on is not
                # reported again, and its end is (a STARTED notification).
                self._failed_processes[h.name] = frozenset({NOVA_COMPUTE})
        return self._executor.resume()

    def reload_membership(self) -> None:
        segment_of = {h.name: h.segment_id for h in self._store.list_hosts()}
        sizes: dict[SegmentId, int] = {}
        for segment_id in segment_of.values():
            sizes[segment_id] = sizes.get(segment_id, 0) + 1
        self._membership = Membership(segment_of, sizes)

    # ---- queries -------------------------------------------------------------------------

    def is_healthy(self, host: HostName) -> bool:
        return self._conditions.get(host, HEALTHY) is HEALTHY and host not in self._failed_processes

    def condition(self, host: HostName) -> HostCondition:
        return self._conditions.get(host, HEALTHY)

    @property
    def holds(self) -> Mapping[SegmentId, Hold]:
        return dict(self._holds)

    def open_notifications(self) -> list[Notification]:
        return self._executor.open_notifications()

    @property
    def term(self) -> int | None:
        """The epoch this engine acts under now (None: a follower, or not started as leader yet)."""
        return self._term

    def is_acting(self) -> bool:
        """Whether this engine may act now: alone, or the leader."""
        return self._leadership is None or self._leadership.is_leader()

    def next_wake(self) -> float:
        if self._leadership is not None and self._term is None:
            return self._clock.now() + FOLLOWER_POLL_S
        candidates = [self._next_detection]
        if self._recheck_at is not None:
            candidates.append(self._recheck_at)
        due = self._executor.next_due()
        if due is not None:
            candidates.append(due)
        return min(candidates)

    # ---- the loop body -------------------------------------------------------------------

    async def tick(self) -> None:
        try:
            if self._leadership is not None and not self._check_term():
                return  # a follower: stand by (the API still serves reads)
            now = self._clock.now()
            if now >= self._next_detection or (self._recheck_at is not None and now >= self._recheck_at):
                if self._leadership is not None:
                    self._executor.adopt_new()  # notifications a follower's API stored for the leader
                await self._detection_pass(now)
                await self._return_hosts(now)
            await self._executor.run_due()
        except Deposed as exc:
            self._deposed(exc)

    def _check_term(self) -> bool:
        """Begin or end a term as leadership comes and goes; whether this engine acts now."""
        assert self._leadership is not None
        epoch = self._leadership.epoch()
        if epoch is not None and epoch == self._deposed_in:
            epoch = None  # the store refused this term's writes: a newer leader exists
        if epoch == self._term:
            return epoch is not None
        if self._term is not None:
            self._end_term()
        if epoch is not None:
            self._begin_term(epoch)
        return epoch is not None

    def _epoch(self) -> int | None:
        """The epoch this engine's writes as leader carry (None: the only engine, writes unfenced)."""
        return self._term if self._leadership is not None else None

    def _deposed(self, exc: Deposed) -> None:
        """The store refused a write: a newer leader wrote since. Stand by until a newer term."""
        self._deposed_in = exc.epoch
        if self._term is not None:
            self._term = None
            self._executor.drop_all()
        log.warning("deposed: %s", exc)
        detail = {"epoch": exc.epoch, "deposed_by": exc.owner_epoch}
        self._emit(EngineEvent(EventKind.LEADERSHIP_LOST, self._clock.now(), detail=detail))

    def _begin_term(self, epoch: int) -> None:
        now = self._clock.now()
        claimed = self._store.claim_unfinished(epoch)  # from now on an older leader's commits are refused
        resumed = self.start()
        self._term = epoch
        self._next_detection = now
        log.info("leading (epoch %d): resumed %d unfinished notification(s)", epoch, resumed)
        detail = {"epoch": epoch, "resumed": resumed, "claimed": claimed}
        self._emit(EngineEvent(EventKind.LEADERSHIP_GAINED, now, detail=detail))

    def _end_term(self) -> None:
        epoch, self._term = self._term, None
        self._executor.drop_all()  # the next term reloads from the store
        log.warning("no longer the leader (epoch %s ended): this engine stops acting and stands by", epoch)
        self._emit(EngineEvent(EventKind.LEADERSHIP_LOST, self._clock.now(), detail={"epoch": epoch}))

    async def _detection_pass(self, now: float) -> None:
        try:
            readings = await self._liveness.liveness_anomalies()
        except CloudError as exc:
            # A real cloud's API did not answer: keep the last verdicts and look again next interval.
            log.warning("liveness readings unavailable, verdicts unchanged: %s", exc)
            self._next_detection = now + self.settings.detection.heartbeat_interval_s
            self._recheck_at = None
            return
        result = detect(readings, self._membership, self._holds, now, self.settings.detection)
        self._apply_holds(result, now)
        changed: dict[HostName, str] = {}
        conditions = {h: v.condition for h, v in result.verdicts.items() if v.condition is not HEALTHY}
        for host in self._conditions.keys() | conditions.keys():
            old, new = self._conditions.get(host, HEALTHY), conditions.get(host, HEALTHY)
            if old is not new:
                self._on_transition(host, old, new, result.verdicts.get(host), now)
                changed[host] = new.value
        self._conditions = conditions
        if changed:
            self._store.set_host_conditions(changed, epoch=self._epoch())
        self._check_processes(result.verdicts, now)
        interval = self.settings.detection.heartbeat_interval_s
        self._next_detection = now + interval
        # A tiny margin so that the grace period has surely elapsed when we look again.
        self._recheck_at = result.recheck_at + 1e-6 if result.recheck_at is not None else None

    def _apply_holds(self, result: Detection, now: float) -> None:
        self._holds = dict(result.holds)
        for hold in result.new_holds:
            self._store.raise_alert(
                Alert(uuid.uuid4().hex, AlertKind.GATE_HOLD, hold.reason, now, segment_id=hold.segment_id),
                epoch=self._epoch(),
            )
            self._emit(
                EngineEvent(
                    EventKind.SEGMENT_HELD,
                    now,
                    segment_id=hold.segment_id,
                    detail={"reason": hold.reason, "hosts": sorted(hold.hosts)},
                )
            )
        for segment_id in result.released:
            self._store.clear_alerts(
                now=now, kind=AlertKind.GATE_HOLD, segment_id=segment_id, epoch=self._epoch()
            )
            self._emit(EngineEvent(EventKind.SEGMENT_RELEASED, now, segment_id=segment_id))

    def _on_transition(
        self, host: HostName, old: HostCondition, new: HostCondition, verdict: Verdict | None, now: float
    ) -> None:
        reason = verdict.reason if verdict else "every channel healthy again"
        segment_id = self._membership.segment_of.get(host)
        epoch = self._epoch()
        if old in _CONDITION_ALERTS:
            self._store.clear_alerts(now=now, kind=_CONDITION_ALERTS[old], host=host, epoch=epoch)
        if new in _CONDITION_ALERTS:
            self._store.raise_alert(
                Alert(
                    uuid.uuid4().hex,
                    _CONDITION_ALERTS[new],
                    f"{host}: {reason}",
                    now,
                    segment_id=segment_id,
                    host=host,
                ),
                epoch=epoch,
            )
        if new in _CONDITION_EVENTS:
            detail: dict[str, Any] = {"reason": reason}
            if verdict is not None and verdict.silent_since is not None:
                detail["silent_since"] = verdict.silent_since  # the last heartbeat heard (for metrics)
            self._emit(EngineEvent(_CONDITION_EVENTS[new], now, host, segment_id, detail=detail))
        if new is HostCondition.DEAD:
            payload = {
                "event": "STOPPED",
                "host_status": "UNKNOWN",
                "cluster_status": "OFFLINE",
                "reason": reason,
            }
            self._open(NotificationType.COMPUTE_HOST, host, payload, None, self._epoch())

    def _check_processes(self, verdicts: Mapping[HostName, Verdict], now: float) -> None:
        """A process that died on a live host gets a STOPPED notification; its return a STARTED one."""
        current = {
            h: v.failed_processes
            for h, v in verdicts.items()
            if v.failed_processes and v.condition is HEALTHY
        }
        for host, processes in current.items():
            for process in sorted(processes - self._failed_processes.get(host, frozenset())):
                stopped = {"event": "STOPPED", "process_name": process}
                self._open(NotificationType.PROCESS, host, stopped, None, self._epoch())
        for host, processes in self._failed_processes.items():
            if self._conditions.get(host, HEALTHY) is not HEALTHY:
                current.setdefault(host, processes)  # can't tell while the host itself is unwell
                continue
            for process in sorted(processes - current.get(host, frozenset())):
                started = {"event": "STARTED", "process_name": process}
                self._open(NotificationType.PROCESS, host, started, None, self._epoch())
        self._failed_processes = current

    def _term_matches(self) -> bool:
        return self._leadership is None or (self._term is not None and self._leadership.is_leader())

    def _on_step_event(self, event: EngineEvent) -> None:
        """Every host haven disables joins the return path, whichever way it later comes back."""
        detail = event.detail
        if (
            event.kind is EventKind.STEP_FINISHED
            and detail.get("kind") in (FORCE_DOWN, DISABLE_SERVICE)
            and detail.get("state") == StepState.DONE.value
            and event.host is not None
        ):
            self._returning.add(event.host)
        self._emit(event)

    def _last_haven_disable(self, host: HostName) -> Step | None:
        """The most recent step by which haven disabled (or forced down) this host's compute service."""
        for notification in self._store.list_notifications(hostname=host, limit=20):
            for step in reversed(self._store.list_steps(notification.id)):
                acted = step.state is StepState.DONE and "disabled_reason" in step.detail
                if step.kind in (FORCE_DOWN, DISABLE_SERVICE) and acted:
                    return step
        return None

    def _clear_incident_alerts(self, host: HostName, now: float, epoch: int | None) -> None:
        for kind in INCIDENT_ALERTS:
            self._store.clear_alerts(now=now, kind=kind, host=host, epoch=epoch)

    def _owes_return(self, host: HostName) -> bool:
        try:
            return self._store.get_host(host).disabled_by_haven
        except NotFound:
            return False  # not (or no longer) in any segment

    async def _return_hosts(self, now: float) -> None:
        """Hosts haven disabled come back into service once healthy again (if so configured).

        Only what haven did is undone: force_down is cleared, and the service is enabled only if
        it was enabled before haven disabled it and the host is not a reserved one.
        """
        if not self.settings.recovery.return_to_service:
            return
        busy = {n.hostname for n in self._executor.open_notifications()}
        for host in sorted(self._returning):
            if not self.is_acting():
                return  # leadership lost mid-pass: no further effect
            if not self.is_healthy(host) or host in busy:
                continue  # cheap checks first: dead hosts wait here on every pass
            if not self._owes_return(host):
                self._returning.discard(host)  # haven left it alone (say, an operator had disabled it)
                continue
            epoch = self._epoch()
            if epoch is not None:
                self._store.fence(epoch)  # a deposed leader must not touch the cloud either
            try:
                state = await self._cloud.get_host(host)
                if state.forced_down:
                    await self._cloud.force_down(host, False)
                    state = await self._cloud.get_host(host)
            except CloudError:
                # Nova did not answer, or refused (it keeps a host forced down until its restarted
                # compute has cleaned up its evacuations): look again next pass.
                continue
            if not state.service_up:
                continue  # nova-compute has not reported yet; look again next pass
            last = self._last_haven_disable(host)
            was_enabled = last is None or bool(last.detail.get("service_enabled_before", True))
            if was_enabled and not self._store.get_host(host).reserved:  # _owes_return found it just now
                await self._cloud.enable_service(host)
            self._store.update_host(host, disabled_by_haven=False, epoch=epoch)
            self._clear_incident_alerts(host, now, epoch)
            self._returning.discard(host)
            self._emit(EngineEvent(EventKind.HOST_RETURNED, now, host, detail={"enabled": was_enabled}))

    # ---- notifications -------------------------------------------------------------------

    def submit(
        self,
        type_: NotificationType,
        host: HostName,
        payload: Mapping[str, Any],
        generated_at: float | None = None,
    ) -> Notification | None:
        """Open a notification (Masakari semantics), unless an identical one is already open.

        What the API and the monitors submit is stored whatever this engine's term (unfenced).
        """
        return self._open(type_, host, payload, generated_at, None)

    def _open(
        self,
        type_: NotificationType,
        host: HostName,
        payload: Mapping[str, Any],
        generated_at: float | None,
        epoch: int | None,
    ) -> Notification | None:
        """``submit``, fenced with ``epoch`` when the engine's own detection opens it."""
        now = self._clock.now()
        for n in self._store.list_notifications(statuses=UNFINISHED_STATUSES, type=type_, hostname=host):
            if all(n.payload.get(k) == payload.get(k) for k in _SAME_FAILURE_KEYS):
                # The same failure is already being handled (by haven or, in notify mode, by others).
                return None
        segment_id = self._membership.segment_of.get(host)
        status, mode = NotificationStatus.NEW, SegmentMode.AUTOMATIC
        if segment_id is not None:
            segment, member = self._store.get_segment(segment_id), self._store.get_host(host)
            mode = segment.mode
            if not segment.enabled or member.on_maintenance:
                status = NotificationStatus.IGNORED  # as Masakari does for maintenance and disabled segments
        notification = Notification(
            NotificationId(str(uuid.uuid4())),
            type_,
            host,
            status,
            {**payload, RECOVERY_MODE_KEY: mode.value},
            generated_at=now if generated_at is None else generated_at,
            created_at=now,
            updated_at=now,
            segment_id=segment_id,
        )
        if type_ is NotificationType.COMPUTE_HOST and status is NotificationStatus.NEW:
            self._clear_incident_alerts(host, now, epoch)  # a new incident: the last one's alerts are history
        steps = initial_steps(notification, mode) if status is NotificationStatus.NEW else []
        self._store.create_notification(notification, steps, epoch=epoch)
        if status is NotificationStatus.NEW and mode is not SegmentMode.NOTIFY and self._term_matches():
            self._executor.track(notification, steps)  # a follower only stores it: the leader adopts it
        self._emit(
            EngineEvent(
                EventKind.NOTIFICATION_CREATED,
                now,
                host,
                segment_id,
                notification.id,
                {"type": type_.value, "status": status.value, **payload, RECOVERY_MODE_KEY: mode.value},
            )
        )
        return notification
