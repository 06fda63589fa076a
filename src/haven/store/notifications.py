"""Queries for notifications (incidents) and their ordered steps, run by Store inside its transactions.

``save_progress`` is the recovery engine's write path: before each effect
the engine commits what it is about to do, so it updates many steps, adds new
ones and moves the notification's status in one transaction, with one
set-based statement per kind of change (see bulk). The ``for_*`` and ``unfinished_for`` helpers
let segments and hosts refuse deletion while a recovery still needs them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    UNFINISHED_STATUSES,
    Notification,
    NotificationStatus,
    NotificationType,
    Step,
    StepState,
)
from haven.store import bulk
from haven.store.tables import hosts, notifications, steps

# Masakari's "in progress": ERROR counts, because an errored recovery is retried.
UNFINISHED = UNFINISHED_STATUSES


def _notification_values(notification: Notification) -> dict[str, object]:
    return {
        "id": notification.id,
        "type": NotificationType(notification.type).value,
        "hostname": notification.hostname,
        "status": NotificationStatus(notification.status).value,
        "payload": notification.payload,
        "generated_at": notification.generated_at,
        "created_at": notification.created_at,
        "updated_at": notification.updated_at,
        "segment_id": notification.segment_id,
        "claimed_by": notification.claimed_by,
        "claimed_at": notification.claimed_at,
    }


def notification_of(row: Row[Any]) -> Notification:
    return Notification(
        id=NotificationId(row.id),
        type=NotificationType(row.type),
        hostname=HostName(row.hostname),
        status=NotificationStatus(row.status),
        payload=row.payload,
        generated_at=row.generated_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        segment_id=None if row.segment_id is None else SegmentId(row.segment_id),
        claimed_by=row.claimed_by,
        claimed_at=row.claimed_at,
    )


def step_values(step: Step) -> dict[str, object]:
    return {
        "notification_id": step.notification_id,
        "seq": step.seq,
        "kind": step.kind,
        "subject": step.subject,
        "state": StepState(step.state).value,
        "detail": step.detail,
        "attempts": step.attempts,
        "started_at": step.started_at,
        "finished_at": step.finished_at,
    }


def _step(row: Row[Any]) -> Step:
    return Step(
        notification_id=NotificationId(row.notification_id),
        seq=row.seq,
        kind=row.kind,
        subject=row.subject,
        state=StepState(row.state),
        detail=row.detail,
        attempts=row.attempts,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _check_steps(notification_id: str, given: Sequence[Step]) -> None:
    """ValueError for what only a bug in the caller produces: another notification's steps, a seq twice."""
    strays = sorted({step.notification_id for step in given} - {notification_id})
    if strays:
        raise ValueError(f"steps of notification(s) {strays} passed for notification {notification_id!r}")
    seqs = [step.seq for step in given]
    if len(set(seqs)) != len(seqs):
        twice = sorted({seq for seq in seqs if seqs.count(seq) > 1})
        raise ValueError(f"steps with seq {twice} passed twice for notification {notification_id!r}")


def create(conn: Connection, notification: Notification, new_steps: Sequence[Step]) -> Notification:
    _check_steps(notification.id, new_steps)
    try:
        conn.execute(insert(notifications), [_notification_values(notification)])
    except IntegrityError as exc:
        raise Conflict(f"notification {notification.id!r} already exists") from exc
    _insert_steps(conn, notification.id, new_steps)
    return get(conn, notification.id)


def _insert_steps(conn: Connection, notification_id: str, new_steps: Sequence[Step]) -> None:
    if not new_steps:
        return
    try:
        bulk.insert_rows(conn, steps, [step_values(step) for step in new_steps])
    except IntegrityError as exc:
        seqs = sorted(step.seq for step in new_steps)
        raise Conflict(
            f"notification {notification_id!r} already has a step with one of the seq numbers "
            f"{seqs[0]}..{seqs[-1]}; nothing was saved"
        ) from exc


def get(conn: Connection, notification_id: str) -> Notification:
    row = conn.execute(select(notifications).where(notifications.c.id == notification_id)).one_or_none()
    if row is None:
        raise NotFound(f"no notification with id {notification_id!r}")
    return notification_of(row)


def list_some(
    conn: Connection,
    statuses: Collection[NotificationStatus] | None,
    type_: NotificationType | None,
    hostname: HostName | None,
    limit: int | None,
    created_after: float | None = None,
) -> list[Notification]:
    query = select(notifications).order_by(notifications.c.created_at.desc(), notifications.c.id.desc())
    if created_after is not None:
        query = query.where(notifications.c.created_at >= created_after)
    if statuses is not None:
        query = query.where(notifications.c.status.in_([NotificationStatus(s).value for s in statuses]))
    if type_ is not None:
        query = query.where(notifications.c.type == NotificationType(type_).value)
    if hostname is not None:
        query = query.where(notifications.c.hostname == hostname)
    if limit is not None:
        query = query.limit(limit)
    return [notification_of(row) for row in conn.execute(query)]


def save_progress(
    conn: Connection,
    notification_id: NotificationId,
    changed: Sequence[Step],
    new: Sequence[Step],
    status: NotificationStatus | None,
    payload: Mapping[str, Any] | None,
    now: float,
) -> None:
    _check_steps(notification_id, changed)
    _check_steps(notification_id, new)
    # The notification row first: on PostgreSQL this locks it, so two writers
    # of the same recovery queue here instead of interleaving their steps.
    values: dict[str, object] = {"updated_at": now}
    if status is not None:
        values["status"] = NotificationStatus(status).value
    if payload is not None:
        values["payload"] = payload
    found = conn.execute(update(notifications).where(notifications.c.id == notification_id).values(values))
    if found.rowcount != 1:
        raise NotFound(f"no notification with id {notification_id!r}")
    if changed:
        rows = [step_values(step) for step in changed]
        if bulk.update_rows(conn, steps, ["notification_id", "seq"], rows) != len(changed):
            raise NotFound(_missing_steps(conn, notification_id, changed))
    _insert_steps(conn, notification_id, new)


def _missing_steps(conn: Connection, notification_id: str, changed: Sequence[Step]) -> str:
    present = set(conn.scalars(select(steps.c.seq).where(steps.c.notification_id == notification_id)))
    missing = sorted({step.seq for step in changed} - present)
    if not missing:
        return f"the steps of notification {notification_id!r} changed meanwhile; nothing was saved"
    return f"notification {notification_id!r} has no steps with seq {missing[:10]}; nothing was saved"


def list_steps(conn: Connection, notification_id: str) -> list[Step]:
    rows = conn.execute(
        select(steps).where(steps.c.notification_id == notification_id).order_by(steps.c.seq)
    ).all()
    if not rows:
        get(conn, notification_id)  # NotFound for an unknown notification, [] for one without steps
    return [_step(row) for row in rows]


def for_host(name: str) -> ColumnElement[bool]:
    return notifications.c.hostname == name


def for_segment(segment_id: str) -> ColumnElement[bool]:
    """About the segment itself, or about one of its current member hosts."""
    members = select(hosts.c.name).where(hosts.c.segment_id == segment_id)
    return or_(notifications.c.segment_id == segment_id, notifications.c.hostname.in_(members))


def unfinished_for(conn: Connection, condition: ColumnElement[bool], shown: int = 5) -> list[str]:
    """Ids of up to ``shown`` unfinished notifications matching ``condition``."""
    query = (
        select(notifications.c.id)
        .where(condition, notifications.c.status.in_([status.value for status in UNFINISHED]))
        .order_by(notifications.c.created_at)
        .limit(shown)
    )
    return list(conn.scalars(query))
