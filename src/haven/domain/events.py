"""What the engine tells the world as it works: the demo's live view and drills read these."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from haven.domain.ids import HostName, NotificationId, SegmentId


class EventKind(StrEnum):
    HOST_SUSPECTED = "host_suspected"
    HOST_CONFIRMED_DEAD = "host_confirmed_dead"
    HOST_ISOLATED = "host_isolated"
    HOST_AGENT_DOWN = "host_agent_down"
    HOST_HEALTHY = "host_healthy"
    HOST_RETURNED = "host_returned_to_service"
    SEGMENT_HELD = "segment_held"
    SEGMENT_RELEASED = "segment_released"
    NOTIFICATION_CREATED = "notification_created"
    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    NOTIFICATION_FINISHED = "notification_finished"  # also when an external system finishes or fails it
    # Custom recovery: haven hands a failure to an external system, which claims it and reports progress.
    NOTIFICATION_LEFT_TO_OWNER = "notification_left_to_owner"  # a VM's own HA_Mode=notify said so
    NOTIFICATION_CLAIMED = "notification_claimed"
    NOTIFICATION_PROGRESS = "notification_progress"
    FAULT_INJECTED = "fault_injected"  # drills only: the instant the failure was injected
    # Several engines (haven serve --coordination): this engine began or ended a term as leader.
    LEADERSHIP_GAINED = "leadership_gained"
    LEADERSHIP_LOST = "leadership_lost"
    SAFETY_DECISION = "safety_decision"  # the safety policy held or refused a fence, evacuation or disable
    SEGMENTS_CHANGED = "segments_changed"  # segments or their hosts changed in the store (the API's writes)
    STEP_ERROR = "step_error"  # a step raised an unexpected error: that step is retried, then failed
    # Beside the engine (haven serve hands these to the dashboard's hub only, not to the publisher):
    CONTROLPLANE_CHANGED = "controlplane_changed"  # a reconciler pass recorded replica states that differ
    EXPLANATION_FINISHED = "explanation_finished"  # the explainer stored a symptom's ranked causes
    CANARY_FINISHED = "canary_finished"  # a canary round's boots finished (their verdicts are stored)
    BACKUPS_CHANGED = "backups_changed"  # a backup round ended (its plan and records are stored)


@dataclass(frozen=True, slots=True)
class EngineEvent:
    kind: EventKind
    at: float
    host: HostName | None = None
    segment_id: SegmentId | None = None
    notification_id: NotificationId | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


EventSink = Callable[[EngineEvent], None]


def discard_events(event: EngineEvent) -> None:
    """An EventSink for when nobody is listening."""


def fan_out(*sinks: EventSink) -> EventSink:
    """One EventSink that hands each event to every one of ``sinks``, in order."""

    def emit(event: EngineEvent) -> None:
        for sink in sinks:
            sink(event)

    return emit
