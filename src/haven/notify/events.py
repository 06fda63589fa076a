"""From what the engine reports (EngineEvent) to the events haven publishes, with Masakari-like payloads.

Called by the Publisher for every engine event. Only a notification's life is
published: ``haven.notification.create`` when it opens, ``haven.recovery.start``
when its first step starts, ``haven.recovery.end`` (finished, or ignored) or
``haven.recovery.error`` (failed) when it ends. Custom recovery adds
``haven.notification.left_to_owner`` (a VM's ``HA_Mode=notify`` handed its
notification to its owner), ``haven.notification.claim`` and
``haven.notification.progress``; an external finish or fail is a recovery end or
error like any other. Each has a key made of the notification and the event type,
so replaying an engine event after a restart (a resumed recovery starts its steps
again) publishes nothing twice; progress reports come from API calls, are never
replayed, and each gets a key of its own.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Mapping
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
LEFT_TO_OWNER = "haven.notification.left_to_owner"
CLAIM = "haven.notification.claim"
PROGRESS = "haven.notification.progress"
EVENT_TYPES = (
    NOTIFICATION_CREATE, RECOVERY_START, RECOVERY_END, RECOVERY_ERROR, LEFT_TO_OWNER, CLAIM, PROGRESS,
)  # fmt: skip
_SIMPLE = {
    EventKind.NOTIFICATION_CREATED: NOTIFICATION_CREATE,
    EventKind.STEP_STARTED: RECOVERY_START,
    EventKind.NOTIFICATION_LEFT_TO_OWNER: LEFT_TO_OWNER,
    EventKind.NOTIFICATION_CLAIMED: CLAIM,
    EventKind.NOTIFICATION_PROGRESS: PROGRESS,
}
# What an external owner said (claim, progress, finish, fail), copied into the payload.
_OWNER_FIELDS = ("owner", "message", "percentage")


def event_type_for(event: EngineEvent) -> str | None:
    """The published event type an engine event stands for, or None when it is not published."""
    if event.notification_id is None:
        return None
    if event.kind in _SIMPLE:
        return _SIMPLE[event.kind]
    if event.kind is EventKind.NOTIFICATION_FINISHED:
        failed = event.detail.get("status") == NotificationStatus.FAILED.value
        return RECOVERY_ERROR if failed else RECOVERY_END
    return None


def key_for(notification_id: str, event_type: str) -> str:
    """The dedup key; every progress report is its own event."""
    if event_type == PROGRESS:
        return f"{notification_id}/{event_type}/{uuid.uuid4()}"
    return f"{notification_id}/{event_type}"


def published_event(
    event_type: str,
    notification: Notification,
    now: float,
    detail: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> PublishedEvent:
    """The event of ``event_type`` about ``notification`` (as stored at this moment).

    ``detail`` is the engine event's: what an external owner said is passed on.
    ``key`` defaults to ``key_for(notification.id, event_type)``.
    """
    payload = notification_payload(notification)
    if event_type in (RECOVERY_END, RECOVERY_ERROR):
        payload["outcome"] = notification.status.value
        payload["summary"] = dict(notification.payload.get(RECOVERY_SUMMARY_KEY, {}))
    said = {k: detail[k] for k in _OWNER_FIELDS if detail and k in detail}
    if said:
        payload["owner_report"] = said
    return PublishedEvent(
        id=str(uuid.uuid4()),
        key=key or key_for(notification.id, event_type),
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
