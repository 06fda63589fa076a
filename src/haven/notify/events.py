"""From what the engine reports (EngineEvent) to the events haven publishes, with Masakari-like payloads.

Called by the Publisher for every engine event. Only a notification's life is
published: ``haven.notification.create`` when it opens, ``haven.recovery.start``
when its first step starts, ``haven.recovery.end`` (finished, or ignored) or
``haven.recovery.error`` (failed) when it ends. Each has a key made of the
notification and the event type, so replaying an engine event after a restart
(a resumed recovery starts its steps again) publishes nothing twice.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from haven.domain.events import EngineEvent, EventKind
from haven.domain.incidents import (
    HAVEN_PAYLOAD_KEYS,
    RECOVERY_MODE_KEY,
    RECOVERY_SUMMARY_KEY,
    Notification,
    NotificationStatus,
)
from haven.domain.publishing import Priority, PublishedEvent

NOTIFICATION_CREATE = "haven.notification.create"
RECOVERY_START = "haven.recovery.start"
RECOVERY_END = "haven.recovery.end"
RECOVERY_ERROR = "haven.recovery.error"
EVENT_TYPES = (NOTIFICATION_CREATE, RECOVERY_START, RECOVERY_END, RECOVERY_ERROR)


def event_type_for(event: EngineEvent) -> str | None:
    """The published event type an engine event stands for, or None when it is not published."""
    if event.notification_id is None:
        return None
    if event.kind is EventKind.NOTIFICATION_CREATED:
        return NOTIFICATION_CREATE
    if event.kind is EventKind.STEP_STARTED:
        return RECOVERY_START
    if event.kind is EventKind.NOTIFICATION_FINISHED:
        failed = event.detail.get("status") == NotificationStatus.FAILED.value
        return RECOVERY_ERROR if failed else RECOVERY_END
    return None


def key_for(notification_id: str, event_type: str) -> str:
    return f"{notification_id}/{event_type}"


def published_event(event_type: str, notification: Notification, now: float) -> PublishedEvent:
    """The event of ``event_type`` about ``notification`` (as stored at this moment)."""
    payload = notification_payload(notification)
    if event_type in (RECOVERY_END, RECOVERY_ERROR):
        payload["outcome"] = notification.status.value
        payload["summary"] = dict(notification.payload.get(RECOVERY_SUMMARY_KEY, {}))
    return PublishedEvent(
        id=str(uuid.uuid4()),
        key=key_for(notification.id, event_type),
        event_type=event_type,
        priority=Priority.ERROR if event_type == RECOVERY_ERROR else Priority.INFO,
        payload=payload,
        created_at=now,
    )


def notification_payload(notification: Notification) -> dict[str, Any]:
    """Masakari's notification fields (its ``NotificationApiPayload``), plus the segment and haven's mode."""
    return {
        "notification_uuid": notification.id,
        "type": notification.type.value,
        "hostname": notification.hostname,
        "status": notification.status.value,
        "payload": {k: v for k, v in notification.payload.items() if k not in HAVEN_PAYLOAD_KEYS},
        "generated_time": iso_time(notification.generated_at),
        "segment_uuid": notification.segment_id,
        "recovery_mode": notification.payload.get(RECOVERY_MODE_KEY),
    }


def iso_time(epoch: float) -> str:
    """UTC, the way Masakari's API shows times (ISO 8601, microseconds, no zone suffix)."""
    return (
        datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        .replace(tzinfo=None)
        .isoformat(timespec="microseconds")
    )
