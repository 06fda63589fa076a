"""The engine's intake: opening a notification the way Masakari does, once per failure.

Owned by haven.service.engine.Engine, whose ``submit`` (the API, the drills' simulated agents) and
whose detection (a dead host, a failed process) open notifications here. A failure already being
handled (an unfinished notification of the same type, host, event, VM and process) is not opened
twice; a host on maintenance or in a disabled segment gets an IGNORED one, as in Masakari (its
API refuses them: haven.api.routes.notifications answers 409 before they get here), except what
haven's own detector reports about a host whose maintenance is haven's (see ``_ignored``). The
executor tracks a new notification at once when this engine acts; a follower only stores it and
the leader adopts it from the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from haven.domain.clock import Clock
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    RECOVERY_MODE_KEY,
    SOURCE_KEY,
    UNFINISHED_STATUSES,
    Notification,
    NotificationStatus,
    NotificationType,
    SegmentHost,
    SegmentMode,
)
from haven.recovery.executor import RecoveryExecutor
from haven.recovery.workflows import initial_steps
from haven.safety import Source
from haven.service.engine_return import clear_incident_alerts
from haven.store import Store

# Payload keys that tell one failure from another of the same type and host (a monitor's free-text
# fields, or haven's own "reason", may differ between two reports of one failure).
_SAME_FAILURE_KEYS = ("event", "instance_uuid", "process_name")


class Intake:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        executor: RecoveryExecutor,
        emit: EventSink,
        segment_of: Callable[[HostName], SegmentId | None],
        acting_in_term: Callable[[], bool],
        return_to_service: str = "automatic",
    ) -> None:
        """``segment_of``: the host's segment as the engine knows it; ``acting_in_term``: whether the
        engine acts now, in the term it began (then its executor tracks what is opened);
        ``return_to_service``: haven.domain.settings.RETURN_TO_SERVICE."""
        self._store, self._clock, self._executor, self._emit = store, clock, executor, emit
        self._segment_of, self._acting_in_term = segment_of, acting_in_term
        self._return_to_service = return_to_service

    def open(
        self,
        type_: NotificationType,
        host: HostName,
        payload: Mapping[str, Any],
        generated_at: float | None,
        epoch: int | None,
        source: Source = Source.EXTERNAL,
    ) -> Notification | None:
        """Open a notification unless an identical one is already open; ``epoch`` fences the writes.

        ``source`` is recorded in the payload (a report's own value for that key is overwritten): the
        safety policy weighs a report from outside as evidence, never as a verdict of its own.
        """
        now = self._clock.now()
        for n in self._store.list_notifications(statuses=UNFINISHED_STATUSES, type=type_, hostname=host):
            if all(n.payload.get(k) == payload.get(k) for k in _SAME_FAILURE_KEYS):
                # The same failure is already being handled (by haven or, in notify mode, by others).
                return None
        segment_id = self._segment_of(host)
        status, mode = NotificationStatus.NEW, SegmentMode.AUTOMATIC
        if segment_id is not None:
            segment, member = self._store.get_segment(segment_id), self._store.get_host(host)
            mode = segment.mode
            if not segment.enabled or self._ignored(member, type_, payload, source):
                status = NotificationStatus.IGNORED  # as Masakari does for maintenance and disabled segments
        notification = Notification(
            NotificationId(str(uuid.uuid4())),
            type_,
            host,
            status,
            {**payload, RECOVERY_MODE_KEY: mode.value, SOURCE_KEY: source.value},
            generated_at=now if generated_at is None else generated_at,
            created_at=now,
            updated_at=now,
            segment_id=segment_id,
        )
        if type_ is NotificationType.COMPUTE_HOST and status is NotificationStatus.NEW:
            clear_incident_alerts(self._store, host, now, epoch)  # a new incident: the last one's are history
        steps = initial_steps(notification, mode) if status is NotificationStatus.NEW else []
        self._store.create_notification(notification, steps, epoch=epoch)
        if status is NotificationStatus.NEW and mode is not SegmentMode.NOTIFY and self._acting_in_term():
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

    def _ignored(
        self, member: SegmentHost, type_: NotificationType, payload: Mapping[str, Any], source: Source
    ) -> bool:
        """A host on maintenance is left alone (Masakari), except by haven's own detector when the
        maintenance is haven's (it took the host's compute service out and owes its return):
        - the host dying is recovered whatever the return mode: a crashed nova-compute left its VMs
          running there, and haven's safety rules (a host fenced and emptied is not fenced again
          while it boots: engine_detection's ``_not_back_yet``) still decide about the fence;
        - its process coming back ends the maintenance with automatic return; with Masakari's,
          an operator ends it (the notification is ignored, as Masakari's API refuses it).
        """
        if not member.on_maintenance:
            return False
        if source is not Source.DETECTOR or not member.disabled_by_haven:
            return True
        if type_ is NotificationType.COMPUTE_HOST:
            return False
        started = str(payload.get("event", "")).upper() == "STARTED"
        return not (started and self._return_to_service == "automatic")
