"""Queries for failover segments, run by Store inside its transactions.

Each function takes an open Connection (the transaction belongs to Store) and
speaks in domain dataclasses. Deleting a segment removes its hosts, but is
refused while a recovery for one of them is unfinished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import SegmentId, public_number, public_uuid
from haven.domain.incidents import RecoveryMethod, Segment, SegmentMode
from haven.domain.listing import PageQuery
from haven.store import listing, notifications
from haven.store.changes import apply_changes
from haven.store.tables import hosts, segments

_FIXED = frozenset({"id", "created_at", "updated_at"})
# What a list may be ordered by: the domain's field names (number: the API's integer id).
SORTABLE = {
    name: name
    for name in ("id", "number", "name", "description", "recovery_method", "service_type", "enabled",
                 "created_at", "updated_at")
}  # fmt: skip


def _values(segment: Segment) -> dict[str, object]:
    return {
        "id": segment.id,
        "name": segment.name,
        "recovery_method": RecoveryMethod(segment.recovery_method).value,
        "service_type": segment.service_type,
        "enabled": segment.enabled,
        "description": segment.description,
        "mode": SegmentMode(segment.mode).value,
        "number": public_number(public_uuid(segment.id)),
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
    }


def _segment(row: Row[Any]) -> Segment:
    return Segment(
        id=SegmentId(row.id),
        name=row.name,
        recovery_method=RecoveryMethod(row.recovery_method),
        service_type=row.service_type,
        enabled=row.enabled,
        description=row.description,
        mode=SegmentMode(row.mode),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def create(conn: Connection, segment: Segment, now: float) -> Segment:
    segment = replace(segment, created_at=now, updated_at=None)
    try:
        conn.execute(insert(segments), [_values(segment)])
    except IntegrityError as exc:
        raise Conflict(
            f"a segment named {segment.name!r} (or with id {segment.id!r}) already exists"
        ) from exc
    return _segment_by_id(conn, segment.id)


def get(conn: Connection, id_or_name: str) -> Segment:
    rows = conn.execute(
        select(segments).where(or_(segments.c.id == id_or_name, segments.c.name == id_or_name))
    ).all()
    if not rows:
        raise NotFound(f"no segment with id or name {id_or_name!r}")
    # An id match wins over a name match: ids are what other records refer to.
    return _segment(min(rows, key=lambda row: row.id != id_or_name))


def _segment_by_id(conn: Connection, segment_id: str) -> Segment:
    row = conn.execute(select(segments).where(segments.c.id == segment_id)).one_or_none()
    if row is None:
        raise NotFound(f"no segment with id {segment_id!r}")
    return _segment(row)


def require(conn: Connection, segment_ids: set[str]) -> None:
    """NotFound unless every id in ``segment_ids`` names a segment."""
    found = set(conn.scalars(select(segments.c.id).where(segments.c.id.in_(segment_ids))))
    missing = sorted(segment_ids - found)
    if missing:
        raise NotFound(f"no segment with id {', '.join(map(repr, missing))}")


def list_all(conn: Connection) -> list[Segment]:
    return [_segment(row) for row in conn.execute(select(segments).order_by(segments.c.name))]


def list_page(conn: Connection, filters: Mapping[str, object], query: PageQuery) -> list[Segment]:
    """Segments whose columns equal ``filters`` (recovery_method, service_type, enabled), one page."""
    where = [segments.c[_filtered(name)] == value for name, value in filters.items()]
    return [_segment(row) for row in listing.page(conn, segments, SORTABLE, "id", where, query)]


def _filtered(name: str) -> str:
    if name not in ("recovery_method", "service_type", "enabled"):
        raise ValueError(f"segments cannot be filtered by {name!r}")
    return name


def update_one(conn: Connection, segment_id: SegmentId, changes: Mapping[str, object], now: float) -> Segment:
    changed = apply_changes(_segment_by_id(conn, segment_id), changes, fixed=_FIXED)
    changed = replace(changed, updated_at=now)
    try:
        conn.execute(update(segments).where(segments.c.id == segment_id).values(_values(changed)))
    except IntegrityError as exc:
        raise Conflict(f"a segment named {changed.name!r} already exists") from exc
    return changed


def delete_one(conn: Connection, segment_id: SegmentId) -> None:
    segment = _segment_by_id(conn, segment_id)
    busy = notifications.unfinished_for(conn, notifications.for_segment(segment_id))
    if busy:
        raise Conflict(
            f"segment {segment.name!r} has unfinished notifications ({', '.join(busy)}); "
            "wait for them to finish or mark them ignored first"
        )
    # Hosts go first explicitly rather than by ON DELETE CASCADE, which SQLite
    # honours only when foreign keys are switched on for the connection.
    conn.execute(delete(hosts).where(hosts.c.segment_id == segment_id))
    conn.execute(delete(segments).where(segments.c.id == segment_id))
