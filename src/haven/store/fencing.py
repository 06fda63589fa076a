"""Epoch fencing: only the newest leader may write what a leader writes, steps and everything else.

Run by Store inside its transactions. Two fences, one conditional update (``_raise_to``):
- the store's leader fence (the ``leader_fence`` row, migration 0006): every write an engine makes as
  leader carries its epoch (a step's commit, an alert raised or cleared, a notification the detector
  opens, host conditions, a host returned to service); ``fence`` raises the row to that epoch in the
  same transaction, or refuses with ``Deposed`` when a newer leader already raised it higher;
- the notification's ``owner_epoch`` (migration 0005): ``claim`` inside ``save_progress`` (the
  executor's intent, outcome and closing commits), ``claim_unfinished`` when an engine becomes leader.
The epoch is the leader's fencing token (haven.coordination: the etcd leader key's create_revision,
growing with every term). The test-and-set ``column IS NULL OR column <= :epoch`` runs in the same
transaction as the write it guards, so a deposed leader that wakes up late (its epoch is lower than
the one now stored) cannot write, and since every effect follows a committed intent, cannot act.
On PostgreSQL the UPDATE locks the row until the transaction ends, so two leaders queue.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, or_, select, update

from haven.domain.errors import Deposed, NotFound
from haven.domain.ids import NotificationId
from haven.domain.incidents import UNFINISHED_STATUSES
from haven.store.tables import FENCE_ROW, leader_fence, notifications

_OPEN = [status.value for status in UNFINISHED_STATUSES]


def _raise_to(conn: Connection, column: Column[Any], epoch: int, *where: ColumnElement[bool]) -> int:
    """The one conditional update: set ``column`` to ``epoch`` in the rows ``where`` selects, unless
    a row holds a newer epoch already; how many rows it set."""
    statement = (
        update(column.table)
        .where(*where, or_(column.is_(None), column <= epoch))
        .values({column.name: epoch})
    )
    return conn.execute(statement).rowcount


def fence(conn: Connection, epoch: int) -> None:
    """Raise the store's leader fence to ``epoch``; ``Deposed`` (write nothing) if a newer leader did."""
    if _raise_to(conn, leader_fence.c.epoch, epoch, leader_fence.c.id == FENCE_ROW) == 1:
        return
    newest = conn.scalar(select(leader_fence.c.epoch).where(leader_fence.c.id == FENCE_ROW))
    raise Deposed(
        f"leader epoch {newest} took over, newer than this engine's epoch {epoch}: this engine is "
        "deposed and writes nothing more as leader",
        epoch,
        newest,
    )


def claim(conn: Connection, notification_id: NotificationId, epoch: int) -> None:
    """Mark the notification as worked on under ``epoch``; ``Deposed`` if a newer epoch holds it."""
    if _raise_to(conn, notifications.c.owner_epoch, epoch, notifications.c.id == notification_id) == 1:
        return
    owner = conn.execute(
        select(notifications.c.owner_epoch).where(notifications.c.id == notification_id)
    ).one_or_none()
    if owner is None:
        raise NotFound(f"no notification with id {notification_id!r}")
    raise Deposed(
        f"notification {notification_id} belongs to leader epoch {owner.owner_epoch}, newer than "
        f"this engine's epoch {epoch}: a newer leader took over, so this engine does nothing more to it",
        epoch,
        owner.owner_epoch,
    )


def claim_unfinished(conn: Connection, epoch: int) -> int:
    """A new leader's claim on every unfinished notification; returns how many it took.

    After it, a previous leader's next commit on any of them is refused, even one it was about to
    make for a step this leader has not reached yet.
    """
    return _raise_to(conn, notifications.c.owner_epoch, epoch, notifications.c.status.in_(_OPEN))


def owner_epoch(conn: Connection, notification_id: NotificationId) -> int | None:
    value: int | None = conn.scalar(
        select(notifications.c.owner_epoch).where(notifications.c.id == notification_id)
    )
    return value


def leader_epoch(conn: Connection) -> int:
    """The newest leader epoch that wrote to the store (0: no coordinated leader ever did)."""
    value: int = conn.scalar(select(leader_fence.c.epoch).where(leader_fence.c.id == FENCE_ROW)) or 0
    return value
