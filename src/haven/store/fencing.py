"""Epoch fencing of recoveries: a step may be committed only by the newest leader that touched it.

Run by Store inside its transactions: ``claim`` inside ``save_progress`` (the executor's intent,
outcome and closing commits), ``claim_unfinished`` by ``Store.claim_unfinished`` when an engine
becomes leader. The epoch is the leader's fencing token (haven.coordination: the etcd leader
key's create_revision, growing with every term). The test-and-set
``owner_epoch IS NULL OR owner_epoch <= :epoch`` runs in the same transaction as the step's
intent, so a deposed leader that wakes up late (its epoch is lower than the one now stored)
cannot commit an intent, and since every effect follows its committed intent, cannot act.
On PostgreSQL the UPDATE locks the row until the transaction ends, so two leaders queue.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, or_, select, update

from haven.domain.errors import Deposed, NotFound
from haven.domain.ids import NotificationId
from haven.domain.incidents import UNFINISHED_STATUSES
from haven.store.tables import notifications

_OPEN = [status.value for status in UNFINISHED_STATUSES]


def _may_take(epoch: int) -> ColumnElement[bool]:
    column = notifications.c.owner_epoch
    return or_(column.is_(None), column <= epoch)


def claim(conn: Connection, notification_id: NotificationId, epoch: int) -> None:
    """Mark the notification as worked on under ``epoch``; ``Deposed`` if a newer epoch holds it."""
    statement = (
        update(notifications)
        .where(notifications.c.id == notification_id, _may_take(epoch))
        .values(owner_epoch=epoch)
    )
    if conn.execute(statement).rowcount == 1:
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
    statement = (
        update(notifications)
        .where(notifications.c.status.in_(_OPEN), _may_take(epoch))
        .values(owner_epoch=epoch)
    )
    return conn.execute(statement).rowcount


def owner_epoch(conn: Connection, notification_id: NotificationId) -> int | None:
    value: int | None = conn.scalar(
        select(notifications.c.owner_epoch).where(notifications.c.id == notification_id)
    )
    return value
