"""haven's domain objects in Masakari's field names, as the v1 resources show them.

Called by the routes. Masakari's soft-delete fields (``deleted``, ``deleted_at``) are
always false/null. ``updated_at`` is null until the first change, as Masakari leaves it.
Timestamps are UTC, written as Masakari writes them (``2017-04-21T08:59:53.000000``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from haven.api.identity import legacy_host_uuid, number, public_uuid
from haven.api.microversion import SEGMENT_ENABLED, APIVersion
from haven.domain.incidents import (
    HAVEN_PAYLOAD_KEYS,
    RECOVERY_SUMMARY_KEY,
    Notification,
    Segment,
    SegmentHost,
)

Json = dict[str, Any]


def timestamp(epoch: float | None, sep: str = "T") -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S.%f")


def _not_deleted() -> Json:
    return {"deleted": False, "deleted_at": None}


def segment_view(segment: Segment, version: APIVersion) -> Json:
    uuid = public_uuid(segment.id)
    view: Json = {
        "id": number(uuid),
        "uuid": uuid,
        "name": segment.name,
        "description": segment.description or None,
        "recovery_method": segment.recovery_method.value,
        "service_type": segment.service_type,
        "created_at": timestamp(segment.created_at),
        "updated_at": timestamp(segment.updated_at),
        **_not_deleted(),
    }
    if version >= SEGMENT_ENABLED:
        view["enabled"] = segment.enabled
    view["haven_mode"] = segment.mode.value  # haven's extension; Masakari clients ignore it
    return view


def host_view(host: SegmentHost, segment: Segment, version: APIVersion) -> Json:
    uuid = host.uuid or legacy_host_uuid(host.name)  # "": a host not stored (never shown so)
    return {
        "id": number(uuid),
        "uuid": uuid,
        "name": host.name,
        "type": host.type,
        "control_attributes": host.control_attributes,
        "reserved": host.reserved,
        "on_maintenance": host.on_maintenance,
        "failover_segment_id": public_uuid(segment.id),
        "failover_segment": segment_view(segment, version),
        "created_at": timestamp(host.created_at),
        "updated_at": timestamp(host.updated_at),
        **_not_deleted(),
    }


def notification_view(notification: Notification, source_host_uuid: str | None = None) -> Json:
    """``source_host_uuid``: the uuid of the host it is about (the routes look it up by name);
    None for a host no segment holds any more: the uuid its name was shown with before hosts
    kept their own."""
    return {
        "id": number(notification.id),
        "notification_uuid": notification.id,
        "type": notification.type.value,
        "hostname": notification.hostname,
        "source_host_uuid": source_host_uuid or legacy_host_uuid(notification.hostname),
        "generated_time": timestamp(notification.generated_at),
        "status": notification.status.value,
        "payload": {k: v for k, v in notification.payload.items() if k not in HAVEN_PAYLOAD_KEYS},
        "created_at": timestamp(notification.created_at),
        "updated_at": timestamp(notification.updated_at),
        **_not_deleted(),
    }


def haven_recovery_view(notification: Notification) -> Json:
    """haven's extension on a shown notification: its mode, who claimed it, and haven's summary."""
    return {
        "mode": notification.mode.value,
        "claimed_by": notification.claimed_by,
        "claimed_at": timestamp(notification.claimed_at),
        "summary": notification.payload.get(RECOVERY_SUMMARY_KEY),
    }
