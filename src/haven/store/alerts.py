"""Queries for alerts (gate holds, isolated hosts, failed fences...), run by Store inside its transactions.

An alert is identified by what it is about (kind, segment, host): raising one
that is already active returns the active one, so the detector can raise on
every tick without piling up duplicates. The database enforces it too (the
partial unique index ``uq_alerts_active``) for two engines racing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.errors import Conflict
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Alert, AlertKind
from haven.store.tables import alerts


def _alert(row: Row[Any]) -> Alert:
    return Alert(
        id=row.id,
        kind=AlertKind(row.kind),
        message=row.message,
        raised_at=row.raised_at,
        segment_id=None if row.segment_id is None else SegmentId(row.segment_id),
        host=None if row.host is None else HostName(row.host),
        cleared_at=row.cleared_at,
    )


def _same_subject(kind: AlertKind, segment_id: str | None, host: str | None) -> list[ColumnElement[bool]]:
    return [
        alerts.c.kind == AlertKind(kind).value,
        alerts.c.segment_id.is_(None) if segment_id is None else alerts.c.segment_id == segment_id,
        alerts.c.host.is_(None) if host is None else alerts.c.host == host,
    ]


def _active(conn: Connection, alert: Alert) -> Alert | None:
    same = _same_subject(alert.kind, alert.segment_id, alert.host)
    row = conn.execute(select(alerts).where(alerts.c.cleared_at.is_(None), *same)).first()
    return None if row is None else _alert(row)


def raise_one(conn: Connection, alert: Alert) -> Alert:
    existing = _active(conn, alert)
    if existing is not None:
        return existing
    values = {
        "id": alert.id,
        "kind": AlertKind(alert.kind).value,
        "message": alert.message,
        "raised_at": alert.raised_at,
        "segment_id": alert.segment_id,
        "host": alert.host,
        "cleared_at": alert.cleared_at,
    }
    try:
        # A savepoint, so that losing a race to another engine leaves this
        # transaction usable (PostgreSQL aborts the whole transaction otherwise).
        with conn.begin_nested():
            conn.execute(insert(alerts), [values])
    except IntegrityError as exc:
        existing = _active(conn, alert)
        if existing is not None:
            return existing
        raise Conflict(f"an alert with id {alert.id!r} already exists") from exc
    return alert


def clear(
    conn: Connection, now: float, kind: AlertKind | None, segment_id: SegmentId | None, host: HostName | None
) -> int:
    query = update(alerts).where(alerts.c.cleared_at.is_(None)).values(cleared_at=now)
    if kind is not None:
        query = query.where(alerts.c.kind == AlertKind(kind).value)
    if segment_id is not None:
        query = query.where(alerts.c.segment_id == segment_id)
    if host is not None:
        query = query.where(alerts.c.host == host)
    return conn.execute(query).rowcount


def list_some(conn: Connection, active_only: bool, cleared_since: float | None = None) -> list[Alert]:
    query = select(alerts).order_by(alerts.c.raised_at.desc(), alerts.c.id.desc())
    if active_only and cleared_since is not None:
        query = query.where(or_(alerts.c.cleared_at.is_(None), alerts.c.cleared_at >= cleared_since))
    elif active_only:
        query = query.where(alerts.c.cleared_at.is_(None))
    return [_alert(row) for row in conn.execute(query)]
