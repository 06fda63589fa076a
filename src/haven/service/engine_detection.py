"""The engine's detection: liveness readings turned into host conditions, holds, alerts and notifications.

Owned by haven.service.engine.Engine, which calls ``look`` on each detection pass while it acts.
``look`` reads the unusual hosts' channels, applies the pure detector (haven.detection) and acts on
what changed: a segment held or released (a gate_hold alert), a host's condition changed (its alert
raised or cleared, its condition stored, a COMPUTE_HOST notification when it is dead), a process that
died or came back on a live host (a PROCESS notification). Every store write carries the leader's
epoch (None for the one engine of a single-node set-up), so a deposed leader writes none of them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from haven.cloud.base import LivenessSource
from haven.detection.detector import Detection, Hold, Membership, Verdict, detect
from haven.domain.clock import Clock
from haven.domain.errors import CloudError, NotFound
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import (
    SILENT_SINCE_KEY,
    SOURCE_KEY,
    Alert,
    AlertKind,
    Notification,
    NotificationStatus,
    NotificationType,
    SegmentHost,
)
from haven.domain.liveness import BmcPower, HostCondition
from haven.domain.settings import DetectionSettings
from haven.recovery.workflows import FENCE
from haven.safety import (
    Action,
    Answer,
    Decision,
    SafetyView,
    Source,
    authorize,
    fence_budget,
    process_gate_reason,
)
from haven.store import Store

log = logging.getLogger("haven.engine")

HEALTHY = HostCondition.HEALTHY
NOVA_COMPUTE = "nova-compute"
FENCE_LOOKBACK_S = 3600.0  # how far back a notification may have been opened and still fence now
_CONDITION_ALERTS = {
    HostCondition.ISOLATED: AlertKind.ISOLATED,
    HostCondition.AGENT_DOWN: AlertKind.AGENT_DOWN,
}
_CONDITION_EVENTS = {
    HostCondition.SUSPECT: EventKind.HOST_SUSPECTED,
    HostCondition.DEAD: EventKind.HOST_CONFIRMED_DEAD,
    HostCondition.ISOLATED: EventKind.HOST_ISOLATED,
    HostCondition.AGENT_DOWN: EventKind.HOST_AGENT_DOWN,
    HostCondition.HEALTHY: EventKind.HOST_HEALTHY,
}

# Opens a notification the way Engine.submit does, fenced with the epoch given.
OpenNotification = Callable[[NotificationType, HostName, Mapping[str, Any], int | None], Notification | None]


class HostWatch:
    """The hosts' conditions, the segments' holds and the failed processes, kept up to date."""

    def __init__(
        self,
        liveness: LivenessSource,
        store: Store,
        clock: Clock,
        settings: DetectionSettings,
        emit: EventSink,
        open_notification: OpenNotification,
    ) -> None:
        self._liveness, self._store, self._settings = liveness, store, settings
        self._emit, self._open = emit, open_notification
        self.membership = Membership({}, {})
        self.conditions: dict[HostName, HostCondition] = {}
        self.holds: dict[SegmentId, Hold] = {}
        self.failed_processes: dict[HostName, frozenset[str]] = {}
        self.released: frozenset[HostName] = frozenset()  # released from the gate by an operator
        self._noticed: dict[HostName, float] = {}  # when haven first saw each silent host silent
        self.read_at = float("-inf")  # when the last liveness readings were had (stale verdicts hold fences)
        self.tick = 0  # the engine's ticks, counted (a fence goes out in the tick of its readings)
        self._read_tick = -1  # the tick of the last readings
        self._powered: set[HostName] = set()  # hosts whose BMC did not report power off at the last pass
        self.verdicts: dict[HostName, Verdict] = {}  # the last pass's verdicts (hosts not plainly healthy)
        self.control_plane_hold: str | None = None  # the PROCESS gate's reason while it holds
        self._held_processes: set[HostName] = set()  # hosts whose nova-compute the PROCESS gate held
        self._settle_until = float("-inf")  # after the gate: their services get time to report again
        # Hosts with a SAFETY_HOLD alert raised by this engine, and the answer it told.
        self._safety_alerted: dict[HostName, Answer] = {}
        self._clock = clock
        self.next_detection = clock.now()
        self.recheck_at: float | None = None

    # ---- start-up ------------------------------------------------------------------------

    def reload_membership(self) -> None:
        segment_of = {h.name: h.segment_id for h in self._store.list_hosts()}
        sizes: dict[SegmentId, int] = {}
        for segment_id in segment_of.values():
            sizes[segment_id] = sizes.get(segment_id, 0) + 1
        self.membership = Membership(segment_of, sizes)

    def load(self, members: Sequence[SegmentHost], failed_process_hosts: Collection[HostName]) -> None:
        """Remembered conditions and holds from the store; ``failed_process_hosts``: hosts whose
        nova-compute failure haven acted on (so one still going on is not reported again)."""
        self.reload_membership()
        self.conditions = {h.name: HostCondition(h.condition) for h in members if h.condition != HEALTHY}
        # Hosts already known silent before a restart are old news for the gate; any other host found
        # silent by this engine's first pass counts as of that pass.
        self._noticed = {h: float("-inf") for h in self.conditions}
        for alert in self._store.list_alerts(active_only=True):
            if alert.kind is AlertKind.GATE_HOLD and alert.segment_id is not None:
                held = frozenset(
                    h
                    for h, c in self.conditions.items()
                    if c is HostCondition.HELD and self.membership.segment_of.get(h) == alert.segment_id
                )
                self.holds[alert.segment_id] = Hold(alert.segment_id, alert.raised_at, alert.message, held)
        for host in failed_process_hosts:
            self.failed_processes[host] = frozenset({NOVA_COMPUTE})
        self.released = self._load_released()
        for alert in self._store.list_alerts(active_only=True):
            if alert.kind is AlertKind.CONTROL_PLANE:
                self.control_plane_hold = alert.message

    def _load_released(self) -> frozenset[HostName]:
        return frozenset(
            a.host
            for a in self._store.list_alerts(active_only=True)
            if a.kind is AlertKind.GATE_RELEASED and a.host is not None
        )

    # ---- queries -------------------------------------------------------------------------

    def membership_segment_of(self, host: HostName) -> SegmentId | None:
        return self.membership.segment_of.get(host)

    def is_healthy(self, host: HostName) -> bool:
        return self.conditions.get(host, HEALTHY) is HEALTHY and host not in self.failed_processes

    def condition(self, host: HostName) -> HostCondition:
        return self.conditions.get(host, HEALTHY)

    def is_due(self, now: float) -> bool:
        return now >= self.next_detection or (self.recheck_at is not None and now >= self.recheck_at)

    def wake_times(self) -> list[float]:
        return [self.next_detection] + ([self.recheck_at] if self.recheck_at is not None else [])

    # ---- the safety policy's questions -----------------------------------------------------

    def authorize(
        self,
        action: Action,
        host: HostName,
        notification: Notification,
        epoch: int | None,
        waited_s: float = 0.0,
        bmc_answered_at: float | None = None,
    ) -> Decision:
        """Ask haven.safety whether ``action`` may happen to ``host`` now; a hold or refusal is alerted."""
        view = dataclasses.replace(
            self.safety_view(host, notification, action),
            waited_s=waited_s,
            readings_after_bmc_s=self.read_at - bmc_answered_at if bmc_answered_at is not None else None,
            readings_this_tick=self._read_tick == self.tick,
        )
        decision = authorize(action, view, self._settings)
        now = self._clock.now()
        if decision.until_next_pass:
            decision = dataclasses.replace(decision, retry_after_s=max(0.0, self.next_detection - now))
        if decision.answer is not Answer.ALLOW and decision.alert:
            verb = "held" if decision.answer is Answer.HOLD else "refused"
            message = f"{action.value} of {host} {verb}: {decision.reason} (notification {notification.id})"
            alert = Alert(uuid.uuid4().hex, AlertKind.SAFETY_HOLD, message, now, view.segment_id, host)
            if self._safety_alerted.get(host, decision.answer) is not decision.answer:
                # A hold became a refusal (or the reverse): the alert tells the current answer.
                self._store.clear_alerts(now=now, kind=AlertKind.SAFETY_HOLD, host=host, epoch=epoch)
            if self._store.raise_alert(alert, epoch=epoch).id == alert.id:
                log.warning("%s", message)
                self._emit(
                    EngineEvent(
                        EventKind.SAFETY_DECISION,
                        now,
                        host,
                        view.segment_id,
                        notification.id,
                        {"action": action.value, "answer": decision.answer.value, "reason": decision.reason},
                    )
                )
            self._safety_alerted[host] = decision.answer
        elif decision.answer is Answer.ALLOW and host in self._safety_alerted:
            del self._safety_alerted[host]
            self._store.clear_alerts(now=now, kind=AlertKind.SAFETY_HOLD, host=host, epoch=epoch)
        return decision

    def safety_view(
        self, host: HostName, notification: Notification, action: Action = Action.FENCE
    ) -> SafetyView:
        """What haven.safety reads about ``host``: its condition, its segment's gates, who reported.

        What only a fence needs (the budget, an earlier fence) is read from the store for a fence only:
        an evacuation is asked hundreds of times in a rack's recovery.
        """
        fencing = action is Action.FENCE
        segment_id = self.membership.segment_of.get(host)
        hold = self.holds.get(segment_id) if segment_id is not None else None
        verdict = self.verdicts.get(host)
        source = (
            Source.DETECTOR
            if notification.payload.get(SOURCE_KEY) == Source.DETECTOR.value
            else Source.EXTERNAL
        )
        return SafetyView(
            host=host,
            condition=self.conditions.get(host, HEALTHY),
            reason=verdict.reason if verdict is not None else "",
            segment_id=segment_id,
            segment_size=self.membership.sizes.get(segment_id, 0) if segment_id is not None else 0,
            segment_hold=hold.reason if hold is not None else None,
            released=host in self.released,
            fenced_in_window=(
                self._fenced_in_window(host, segment_id) if fencing and segment_id is not None else 0
            ),
            control_plane_hold=self.control_plane_hold,
            source=source,
            fenced_already=fencing and self._not_back_yet(host, excluding=notification.id),
            powered=host in self._powered,
            readings_age_s=self._clock.now() - self.read_at,
        )

    def _fenced_in_window(self, host: HostName, segment_id: SegmentId) -> int:
        """Other hosts of the segment whose power-off haven requested within the gate window, read
        from the store (a restarted engine counts them too); held or refused fences never count."""
        now = self._clock.now()
        since = now - self._settings.gate_window_s
        # A fence is requested at most a step's lifetime after its notification: look that far back.
        recent = self._store.list_notifications(
            type=NotificationType.COMPUTE_HOST, created_after=since - FENCE_LOOKBACK_S
        )
        recent = [
            n
            for n in recent
            if n.segment_id == segment_id and n.hostname != host and n.hostname not in self.released
        ]
        opened = len({n.hostname for n in recent})
        if opened < fence_budget(self.membership.sizes.get(segment_id, 0), self._settings):
            # Fewer hosts than the budget even had a recovery opened: an upper bound below the budget
            # answers the same, without reading their steps.
            return opened
        fenced: set[HostName] = set()
        for n in recent:
            if n.hostname in fenced:
                continue
            for step in self._store.list_steps(n.id):
                requested = step.detail.get("requested_at") if step.kind == FENCE else None
                if requested is not None and float(requested) >= since:
                    fenced.add(n.hostname)
        return len(fenced - self.released)

    # ---- a detection pass ----------------------------------------------------------------

    async def look(self, now: float, epoch: int | None) -> None:
        try:
            readings = await self._liveness.liveness_anomalies()
        except CloudError as exc:
            # A real cloud's API did not answer: keep the last verdicts and look again next interval.
            log.warning("liveness readings unavailable, verdicts unchanged: %s", exc)
            self.next_detection = now + self._settings.heartbeat_interval_s
            self.recheck_at = None
            return
        if self.holds or self.released:
            self.released = self._load_released()  # an operator's release (CLI or API) since the last pass
        result = detect(
            readings, self.membership, self.holds, now, self._settings, self.released, self._noticed
        )
        self.verdicts = dict(result.verdicts)
        self.read_at, self._read_tick = now, self.tick
        self._powered = {r.host for r in readings if r.bmc is not BmcPower.OFF}
        self._note_silences(result.verdicts, now)
        self._end_releases(result.verdicts, now, epoch)
        self._apply_holds(result, now, epoch)
        changed: dict[HostName, str] = {}
        conditions = {h: v.condition for h, v in result.verdicts.items() if v.condition is not HEALTHY}
        for host in self.conditions.keys() | conditions.keys():
            old, new = self.conditions.get(host, HEALTHY), conditions.get(host, HEALTHY)
            if old is not new:
                self._on_transition(host, old, new, result.verdicts.get(host), now, epoch)
                changed[host] = new.value
        self.conditions = conditions
        if changed:
            self._store.set_host_conditions(changed, epoch=epoch)
        self._check_processes(result, now, epoch)
        self.next_detection = now + self._settings.heartbeat_interval_s
        # A tiny margin so that the grace period has surely elapsed when we look again.
        self.recheck_at = result.recheck_at + 1e-6 if result.recheck_at is not None else None

    def _note_silences(self, verdicts: Mapping[HostName, Verdict], now: float) -> None:
        """When haven first saw each host silent (the gate counts a host seen late as of then)."""
        silent = {h for h, v in verdicts.items() if v.silent_since is not None}
        self._noticed = {h: self._noticed.get(h, now) for h in silent}

    def _end_releases(self, verdicts: Mapping[HostName, Verdict], now: float, epoch: int | None) -> None:
        """A released host heard again on any channel is under the gate again (its release is history):
        a release covers the silence it was given for, never a later one."""
        back = {h for h in self.released if h not in verdicts or verdicts[h].silent_since is None}
        for host in back:
            self._store.clear_alerts(now=now, kind=AlertKind.GATE_RELEASED, host=host, epoch=epoch)
        self.released = self.released - back

    def _apply_holds(self, result: Detection, now: float, epoch: int | None) -> None:
        self.holds = dict(result.holds)
        for hold in result.new_holds:
            self._store.raise_alert(
                Alert(uuid.uuid4().hex, AlertKind.GATE_HOLD, hold.reason, now, segment_id=hold.segment_id),
                epoch=epoch,
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
            self._store.clear_alerts(now=now, kind=AlertKind.GATE_HOLD, segment_id=segment_id, epoch=epoch)
            self._emit(EngineEvent(EventKind.SEGMENT_RELEASED, now, segment_id=segment_id))

    def _on_transition(
        self,
        host: HostName,
        old: HostCondition,
        new: HostCondition,
        verdict: Verdict | None,
        now: float,
        epoch: int | None,
    ) -> None:
        reason = verdict.reason if verdict else "every channel healthy again"
        segment_id = self.membership.segment_of.get(host)
        if old in _CONDITION_ALERTS:
            self._store.clear_alerts(now=now, kind=_CONDITION_ALERTS[old], host=host, epoch=epoch)
        if new in _CONDITION_ALERTS:
            alert = Alert(
                uuid.uuid4().hex,
                _CONDITION_ALERTS[new],
                f"{host}: {reason}",
                now,
                segment_id=segment_id,
                host=host,
            )
            self._store.raise_alert(alert, epoch=epoch)
        if new in _CONDITION_EVENTS:
            detail: dict[str, Any] = {"reason": reason}
            if verdict is not None and verdict.silent_since is not None:
                detail["silent_since"] = verdict.silent_since  # the last heartbeat heard (for metrics)
            self._emit(EngineEvent(_CONDITION_EVENTS[new], now, host, segment_id, detail=detail))
        if new is HostCondition.DEAD and not self._not_back_yet(host):
            payload: dict[str, Any] = {
                "event": "STOPPED",
                "host_status": "UNKNOWN",
                "cluster_status": "OFFLINE",
                "reason": reason,
            }
            heard = verdict.silent_since if verdict is not None else None
            if heard is not None and math.isfinite(heard):
                # The host's last heartbeat: the dashboard's detection time runs from it to the opening.
                payload[SILENT_SINCE_KEY] = heard
            self._open(NotificationType.COMPUTE_HOST, host, payload, epoch)

    def _not_back_yet(self, host: HostName, excluding: str | None = None) -> bool:
        """haven fenced and emptied this host and has not returned it to service since: silent again
        (powered on and booting, say) it is the same failure, not a new one, and is not fenced again.

        Known from the store: haven's disable is still in place and the newest notification about
        the host is that finished host recovery (a later one, a process failure say, means the host
        was heard from since, so its death now is new).
        """
        try:
            if not self._store.get_host(host).disabled_by_haven:
                return False
        except NotFound:
            return False
        newest = [n for n in self._store.list_notifications(hostname=host, limit=2) if n.id != excluding][:1]
        return (
            bool(newest)
            and newest[0].type is NotificationType.COMPUTE_HOST
            and newest[0].status is NotificationStatus.FINISHED
        )

    def _check_processes(self, result: Detection, now: float, epoch: int | None) -> None:
        """A process that died on a live host gets a STOPPED notification; its return a STARTED one.

        When too many nova-computes stop at once while their hosts beat (the PROCESS gate, in
        haven.safety), the control plane is the likely fault: nothing is opened, one alert says so.
        """
        current = {
            h: v.failed_processes
            for h, v in result.verdicts.items()
            if v.failed_processes and v.condition is HEALTHY
        }
        # Reports overdue count as much as services Nova already counts down: they stop together.
        down = len(result.nova_stalled | {h for h, p in current.items() if NOVA_COMPUTE in p})
        hold = process_gate_reason(down, len(self.membership.segment_of), self._settings)
        if hold and not self.control_plane_hold:
            self._store.raise_alert(Alert(uuid.uuid4().hex, AlertKind.CONTROL_PLANE, hold, now), epoch=epoch)
            self._emit(
                EngineEvent(EventKind.SEGMENT_HELD, now, detail={"reason": hold, "scope": "control-plane"})
            )
        elif not hold and self.control_plane_hold:
            self._store.clear_alerts(now=now, kind=AlertKind.CONTROL_PLANE, epoch=epoch)
            self._emit(EngineEvent(EventKind.SEGMENT_RELEASED, now, detail={"scope": "control-plane"}))
            # The services come back one report interval at a time: those still down are not
            # judged until each had the time to report again.
            self._settle_until = now + self._settings.nova_report_interval_s + self._settings.grace_s
        self.control_plane_hold = hold or None
        if hold:
            # Nothing is opened, and what was already known stays known: a service disabled before
            # the outage is still enabled again when it reports, the others were never touched.
            self._held_processes |= set(current) - set(self.failed_processes)
            return
        if now < self._settle_until:
            current = {
                h: p
                for h, p in current.items()
                if h not in self._held_processes or h in self.failed_processes
            }
        else:
            self._held_processes.clear()
        for host, processes in current.items():
            for process in sorted(processes - self.failed_processes.get(host, frozenset())):
                self._open(
                    NotificationType.PROCESS, host, {"event": "STOPPED", "process_name": process}, epoch
                )
        for host, processes in self.failed_processes.items():
            if self.conditions.get(host, HEALTHY) is not HEALTHY:
                current.setdefault(host, processes)  # can't tell while the host itself is unwell
                continue
            for process in sorted(processes - current.get(host, frozenset())):
                self._open(
                    NotificationType.PROCESS, host, {"event": "STARTED", "process_name": process}, epoch
                )
        self.failed_processes = current
