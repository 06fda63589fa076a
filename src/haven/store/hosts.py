"""Queries for the hosts of failover segments, run by Store inside its transactions.

A host name belongs to at most one segment (it is the primary key). The bulk
functions (``add_many``, ``set_conditions``) are what the detector and
imports use for thousands of hosts at once: one statement each (see bulk).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName, SegmentId, public_number
from haven.domain.incidents import SegmentHost
from haven.domain.listing import PageQuery
from haven.store import bulk, listing, notifications, segments
from haven.store.changes import apply_changes
from haven.store.tables import hosts
from haven.store.translate import reason

# Bound parameters per IN (...) query; far below SQLite's and PostgreSQL's limits.
_CHUNK = 1000
_FIXED = frozenset({"uuid", "created_at", "updated_at"})
# What a list may be ordered by: the domain's field names (number: the API's integer id).
SORTABLE = {
    name: name
    for name in ("uuid", "number", "name", "type", "control_attributes", "reserved", "on_maintenance",
                 "created_at", "updated_at")
}  # fmt: skip
_FILTERABLE = frozenset({"name", "type", "control_attributes", "reserved", "on_maintenance"})


def _values(host: SegmentHost) -> dict[str, object]:
    return {
        "name": host.name,
        "segment_id": host.segment_id,
        "type": host.type,
        "control_attributes": host.control_attributes,
        "reserved": host.reserved,
        "on_maintenance": host.on_maintenance,
        "condition": str(host.condition),
        "disabled_by_haven": host.disabled_by_haven,
        "uuid": host.uuid,
        "number": public_number(host.uuid),
        "created_at": host.created_at,
        "updated_at": host.updated_at,
    }


def _new(host: SegmentHost, now: float) -> SegmentHost:
    """A host as inserted: its own uuid (a new one unless given), created now, never updated."""
    return replace(host, uuid=host.uuid or str(uuid.uuid4()), created_at=now, updated_at=None)


def _host(row: Row[Any]) -> SegmentHost:
    return SegmentHost(
        name=HostName(row.name),
        segment_id=SegmentId(row.segment_id),
        type=row.type,
        control_attributes=row.control_attributes,
        reserved=row.reserved,
        on_maintenance=row.on_maintenance,
        condition=row.condition,
        disabled_by_haven=row.disabled_by_haven,
        uuid=row.uuid,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def add(conn: Connection, host: SegmentHost, now: float) -> SegmentHost:
    segments.require(conn, {host.segment_id})
    try:
        with conn.begin_nested():  # so that, on PostgreSQL, the transaction can still say why
            conn.execute(insert(hosts), [_values(_new(host, now))])
    except IntegrityError as exc:
        if host.uuid and conn.scalar(select(hosts.c.name).where(hosts.c.uuid == host.uuid)) is not None:
            raise Conflict(f"a host with uuid {host.uuid!r} already exists") from exc
        raise Conflict(f"host {host.name!r} is already a member of a segment") from exc
    return get(conn, host.name)


def add_many(conn: Connection, new: Sequence[SegmentHost], now: float) -> None:
    if not new:
        return
    segments.require(conn, {host.segment_id for host in new})
    names = [host.name for host in new]
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise Conflict(f"hosts listed more than once: {_some(twice)}")
    try:
        # In a savepoint so that, on PostgreSQL, the transaction can still say which names were taken.
        with conn.begin_nested():
            bulk.insert_rows(conn, hosts, [_values(_new(host, now)) for host in new])
    except IntegrityError as exc:
        taken = _existing(conn, names)
        if not taken:  # not a name: the segment went away since require() above
            raise Conflict(f"the database refused the hosts ({reason(exc)}); none was added") from exc
        raise Conflict(f"hosts already members of a segment: {_some(taken)}; none was added") from exc


def _existing(conn: Connection, names: Sequence[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        found.extend(conn.scalars(select(hosts.c.name).where(hosts.c.name.in_(chunk))))
    return sorted(found)


def _some(names: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(map(repr, names[:shown])) + more


def get(conn: Connection, name: str) -> SegmentHost:
    row = conn.execute(select(hosts).where(hosts.c.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no host named {name!r} in any segment")
    return _host(row)


def by_uuid(conn: Connection, segment_id: SegmentId, uuids: Collection[str]) -> SegmentHost:
    """The host of the segment whose uuid is one of ``uuids`` (the forms of one uuid)."""
    row = conn.execute(
        select(hosts).where(hosts.c.segment_id == segment_id, hosts.c.uuid.in_(list(uuids))).limit(1)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no host with uuid {next(iter(uuids), '')!r} in segment {segment_id!r}")
    return _host(row)


def list_some(conn: Connection, segment_id: SegmentId | None) -> list[SegmentHost]:
    query = select(hosts).order_by(hosts.c.name)
    if segment_id is not None:
        query = query.where(hosts.c.segment_id == segment_id)
    return [_host(row) for row in conn.execute(query)]


def list_page(
    conn: Connection, segment_id: SegmentId, filters: Mapping[str, object], query: PageQuery
) -> list[SegmentHost]:
    """The segment's hosts whose columns equal ``filters``, one page of them."""
    unknown = sorted(set(filters) - _FILTERABLE)
    if unknown:
        raise ValueError(f"hosts cannot be filtered by {', '.join(unknown)}")
    where = [hosts.c.segment_id == segment_id, *(hosts.c[name] == value for name, value in filters.items())]
    return [_host(row) for row in listing.page(conn, hosts, SORTABLE, "uuid", where, query)]


def update_one(conn: Connection, name: HostName, changes: Mapping[str, object], now: float) -> SegmentHost:
    changed = replace(apply_changes(get(conn, name), changes, fixed=_FIXED), updated_at=now)
    if "segment_id" in changes:
        segments.require(conn, {changed.segment_id})
    try:
        conn.execute(update(hosts).where(hosts.c.name == name).values(_values(changed)))
    except IntegrityError as exc:
        raise Conflict(f"cannot rename host {name!r} to {changed.name!r}: that name is taken") from exc
    return changed


def set_conditions(conn: Connection, conditions: Mapping[HostName, str]) -> None:
    if not conditions:
        return
    # A host removed from its segment while the detector judged it has nowhere to keep a
    # verdict: its row is simply not matched, and the other verdicts are still recorded.
    rows = [{"name": name, "condition": str(condition)} for name, condition in conditions.items()]
    bulk.update_rows(conn, hosts, ["name"], rows)


def delete_one(conn: Connection, name: HostName) -> None:
    get(conn, name)
    busy = notifications.unfinished_for(conn, notifications.for_host(name))
    if busy:
        raise Conflict(
            f"host {name!r} has unfinished notifications ({', '.join(busy)}); "
            "wait for them to finish or mark them ignored first"
        )
    conn.execute(delete(hosts).where(hosts.c.name == name))
