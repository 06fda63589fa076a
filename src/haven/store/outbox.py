"""Queries for the outbox of published events, run by Store inside its transactions.

haven.notify's Publisher appends an event (with one delivery row per sink) in
the moment the engine reports it, then delivers from here: due deliveries are
read, attempted, and their outcome written back, so an event survives a crash
of haven and an outage of its receiver. Delivered events are pruned, keeping
a bounded history; their unique ``key`` keeps a replayed event from being
published twice while that history lasts.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.publishing import Delivery, OutboxCounts, Priority, PublishedEvent
from haven.store.tables import deliveries, published_events

_PENDING = and_(deliveries.c.delivered_at.is_(None), deliveries.c.abandoned.is_(False))


def _event(row: Row[Any]) -> PublishedEvent:
    return PublishedEvent(
        id=row.id,
        key=row.key,
        event_type=row.event_type,
        priority=Priority(row.priority),
        payload=row.payload,
        created_at=row.created_at,
    )


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        event=_event(row),
        sink=row.sink,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
        abandoned=row.abandoned,
    )


def append(conn: Connection, event: PublishedEvent, sinks: Sequence[str]) -> bool:
    """Add the event and a pending delivery per sink; False (nothing added) when its key exists."""
    if conn.execute(select(published_events.c.id).where(published_events.c.key == event.key)).first():
        return False
    values = {
        "id": event.id,
        "key": event.key,
        "event_type": event.event_type,
        "priority": Priority(event.priority).value,
        "payload": event.payload,
        "created_at": event.created_at,
    }
    try:
        # A savepoint: losing a race on the key to another engine leaves the transaction usable.
        with conn.begin_nested():
            conn.execute(insert(published_events), [values])
    except IntegrityError:
        return False
    rows = [
        {
            "event_id": event.id,
            "sink": sink,
            "attempts": 0,
            "next_attempt_at": event.created_at,
            "delivered_at": None,
            "last_error": None,
            "abandoned": False,
        }
        for sink in sinks
    ]
    if rows:
        conn.execute(insert(deliveries), rows)
    return True


def _joined() -> Any:
    return select(published_events, deliveries).join(
        deliveries, deliveries.c.event_id == published_events.c.id
    )


def due(conn: Connection, now: float, sinks: Collection[str], limit: int) -> list[Delivery]:
    """Pending deliveries to ``sinks`` whose time has come, oldest event first."""
    query = (
        _joined()
        .where(_PENDING, deliveries.c.next_attempt_at <= now, deliveries.c.sink.in_(list(sinks)))
        .order_by(published_events.c.created_at, published_events.c.id, deliveries.c.sink)
        .limit(limit)
    )
    return [_delivery(row) for row in conn.execute(query)]


def next_due(conn: Connection, sinks: Collection[str]) -> float | None:
    query = select(func.min(deliveries.c.next_attempt_at)).where(_PENDING, deliveries.c.sink.in_(list(sinks)))
    value = conn.execute(query).scalar()
    return None if value is None else float(value)


def record(conn: Connection, delivery: Delivery) -> None:
    """Write an attempt's outcome (attempts, next time, delivered or abandoned, last error)."""
    conn.execute(
        update(deliveries)
        .where(deliveries.c.event_id == delivery.event.id, deliveries.c.sink == delivery.sink)
        .values(
            attempts=delivery.attempts,
            next_attempt_at=delivery.next_attempt_at,
            delivered_at=delivery.delivered_at,
            last_error=delivery.last_error,
            abandoned=delivery.abandoned,
        )
    )


def abandon_other_sinks(conn: Connection, sinks: Collection[str], reason: str) -> int:
    """Pending deliveries to sinks no longer configured will never happen: say so, so pruning can go on."""
    query = (
        update(deliveries)
        .where(_PENDING, deliveries.c.sink.not_in(list(sinks)))
        .values(abandoned=True, last_error=reason)
    )
    return conn.execute(query).rowcount


def prune(conn: Connection, keep: int) -> int:
    """Remove events every sink has (or has refused), except the newest ``keep`` of them."""
    pending = exists().where(deliveries.c.event_id == published_events.c.id, _PENDING)
    finished = (
        select(published_events.c.id)
        .where(~pending)
        .order_by(published_events.c.created_at.desc(), published_events.c.id.desc())
        .offset(keep)
    )
    ids = list(conn.execute(finished).scalars())
    if not ids:
        return 0
    conn.execute(delete(deliveries).where(deliveries.c.event_id.in_(ids)))
    return conn.execute(delete(published_events).where(published_events.c.id.in_(ids))).rowcount


def list_all(conn: Connection, event_type: str | None) -> list[Delivery]:
    """Every kept delivery (of one event type, when given), oldest event first."""
    query = _joined().order_by(published_events.c.created_at, published_events.c.id, deliveries.c.sink)
    if event_type is not None:
        query = query.where(published_events.c.event_type == event_type)
    return [_delivery(row) for row in conn.execute(query)]


def counts(conn: Connection) -> OutboxCounts:
    delivered = deliveries.c.delivered_at.is_not(None)
    total = conn.execute(
        select(
            func.count().filter(_PENDING),
            func.count().filter(delivered),
            func.count().filter(deliveries.c.abandoned.is_(True)),
        )
    ).one()
    by_sink = conn.execute(
        select(deliveries.c.sink, func.count()).where(_PENDING).group_by(deliveries.c.sink)
    ).all()
    return OutboxCounts(total[0], total[1], total[2], {sink: n for sink, n in by_sink})
