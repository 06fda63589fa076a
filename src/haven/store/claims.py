"""Queries for custom recovery: an external system claims a notify-mode notification and reports on it.

Run by Store inside its transactions, for haven.recovery.custom (which the API calls).
Each write is a test-and-set on the notification row (status still open, claimed by
nobody or by the same owner), so two systems racing for one notification get one
winner and one Conflict, on SQLite and PostgreSQL alike. Every claim and report is
also appended as a step of kind ``external``: that is the audit trail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, func, select, update

from haven.domain.errors import Conflict
from haven.domain.ids import NotificationId
from haven.domain.incidents import (
    EXTERNAL_STEP,
    UNFINISHED_STATUSES,
    Notification,
    NotificationStatus,
    SegmentMode,
    Step,
    StepState,
)
from haven.store import bulk
from haven.store.notifications import get, step_values
from haven.store.tables import notifications, steps

_OPEN = [status.value for status in UNFINISHED_STATUSES]


def claim(
    conn: Connection, notification_id: NotificationId, owner: str, entry: Mapping[str, Any], now: float
) -> Notification:
    current = get(conn, notification_id)
    _refuse_unless_awaiting(current)
    if current.claimed_by == owner:
        return current  # claiming again is harmless: a retried request
    if current.claimed_by is not None:
        raise Conflict(f"notification {current.id} is already claimed by {current.claimed_by!r}")
    where = (
        notifications.c.id == notification_id,
        notifications.c.claimed_by.is_(None),
        notifications.c.status.in_(_OPEN),
    )
    values = {
        "claimed_by": owner,
        "claimed_at": now,
        "status": NotificationStatus.RUNNING.value,
        "updated_at": now,
    }
    if conn.execute(update(notifications).where(*where).values(values)).rowcount != 1:
        raise Conflict(f"notification {current.id} was claimed or closed meanwhile; read it again")
    _append(conn, notification_id, owner, entry, now)
    return get(conn, notification_id)


def report(
    conn: Connection,
    notification_id: NotificationId,
    owner: str,
    entry: Mapping[str, Any],
    status: NotificationStatus | None,
    payload: Mapping[str, Any] | None,
    now: float,
) -> Notification:
    """Append ``entry`` to the audit trail; ``status`` and ``payload`` are set when given."""
    current = get(conn, notification_id)
    _refuse_unless_awaiting(current)
    if current.claimed_by is None:
        raise Conflict(f"notification {current.id} is not claimed: claim it first")
    if current.claimed_by != owner:
        raise Conflict(f"notification {current.id} is claimed by {current.claimed_by!r}, not by {owner!r}")
    values: dict[str, object] = {"updated_at": now}
    if status is not None:
        values["status"] = status.value
    if payload is not None:
        values["payload"] = payload
    where = (
        notifications.c.id == notification_id,
        notifications.c.claimed_by == owner,
        notifications.c.status.in_(_OPEN),
    )
    if conn.execute(update(notifications).where(*where).values(values)).rowcount != 1:
        raise Conflict(f"notification {current.id} was closed meanwhile; read it again")
    _append(conn, notification_id, owner, entry, now)
    return get(conn, notification_id)


def _refuse_unless_awaiting(notification: Notification) -> None:
    if notification.mode is not SegmentMode.NOTIFY:
        raise Conflict(
            f"notification {notification.id} is recovered by haven (mode {notification.mode.value}), "
            "not left to an external system; only notifications of notify-mode segments, or of VMs "
            "with HA_Mode=notify, can be claimed"
        )
    if notification.status not in UNFINISHED_STATUSES:
        raise Conflict(f"notification {notification.id} is already {notification.status.value}")


def _append(
    conn: Connection, notification_id: NotificationId, owner: str, entry: Mapping[str, Any], now: float
) -> None:
    # The notification row was updated first: on PostgreSQL it is locked, so seq numbers cannot collide.
    last = conn.scalar(select(func.max(steps.c.seq)).where(steps.c.notification_id == notification_id))
    seq = 0 if last is None else last + 1
    step = Step(notification_id, seq, EXTERNAL_STEP, owner, StepState.DONE, dict(entry), 0, now, now)
    bulk.insert_rows(conn, steps, [step_values(step)])
