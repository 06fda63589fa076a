"""Small constructors of domain objects for the store tests, with unique ids."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert

from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    Alert,
    AlertKind,
    Notification,
    NotificationStatus,
    NotificationType,
    Segment,
    SegmentHost,
    Step,
)
from haven.store import Store
from haven.store.tables import notifications


def new_id() -> str:
    return uuid.uuid4().hex


def segment(name: str = "rack-1", **fields: Any) -> Segment:
    return Segment(id=SegmentId(new_id()), name=name, **fields)


def host(name: str, segment: Segment, **fields: Any) -> SegmentHost:
    """A host with a uuid of its own already (the store keeps a given uuid), so round trips compare."""
    fields.setdefault("uuid", str(uuid.uuid4()))
    return SegmentHost(name=HostName(name), segment_id=segment.id, **fields)


def notification(
    hostname: str = "compute-1",
    status: NotificationStatus = NotificationStatus.NEW,
    created_at: float = 1000.0,
    **fields: Any,
) -> Notification:
    values: dict[str, Any] = {
        "type": NotificationType.COMPUTE_HOST,
        "payload": {"event": "STOPPED", "host_status": "NORMAL"},
        "generated_at": created_at - 1.0,
        "updated_at": created_at,
    }
    values.update(fields)
    return Notification(
        id=NotificationId(new_id()),
        hostname=HostName(hostname),
        status=status,
        created_at=created_at,
        **values,
    )


def steps(notification: Notification, count: int, start: int = 0) -> list[Step]:
    return [
        Step(notification_id=notification.id, seq=seq, kind="evacuate", subject=f"server-{seq}")
        for seq in range(start, start + count)
    ]


def alert(kind: AlertKind = AlertKind.GATE_HOLD, raised_at: float = 1000.0, **fields: Any) -> Alert:
    return Alert(id=new_id(), kind=kind, message=f"{kind} raised", raised_at=raised_at, **fields)


def insert_all(store: Store, made: list[Notification]) -> None:
    """Every notification in one statement (the store writes one per notification, too slow for thousands)."""
    rows = [
        {
            "id": n.id,
            "type": n.type.value,
            "hostname": n.hostname,
            "status": n.status.value,
            "payload": dict(n.payload),
            "generated_at": n.generated_at,
            "created_at": n.created_at,
            "updated_at": n.updated_at,
        }
        for n in made
    ]
    with store._engine.begin() as conn:  # test set-up only
        conn.execute(insert(notifications), rows)
