"""Queries for the hosts of failover segments, run by Store inside its transactions.

A host name belongs to at most one segment (it is the primary key). The bulk
functions (``add_many``, ``set_conditions``) are what the detector and
imports use for thousands of hosts at once: one statement each (see bulk).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import SegmentHost
from haven.store import bulk, notifications, segments
from haven.store.changes import apply_changes
from haven.store.tables import hosts
from haven.store.translate import reason

# Bound parameters per IN (...) query; far below SQLite's and PostgreSQL's limits.
_CHUNK = 1000


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
    }


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
    )


def add(conn: Connection, host: SegmentHost) -> SegmentHost:
    segments.require(conn, {host.segment_id})
    try:
        conn.execute(insert(hosts), [_values(host)])
    except IntegrityError as exc:
        raise Conflict(f"host {host.name!r} is already a member of a segment") from exc
    return get(conn, host.name)


def add_many(conn: Connection, new: Sequence[SegmentHost]) -> None:
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
            bulk.insert_rows(conn, hosts, [_values(host) for host in new])
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


def list_some(conn: Connection, segment_id: SegmentId | None) -> list[SegmentHost]:
    query = select(hosts).order_by(hosts.c.name)
    if segment_id is not None:
        query = query.where(hosts.c.segment_id == segment_id)
    return [_host(row) for row in conn.execute(query)]


def update_one(conn: Connection, name: HostName, changes: Mapping[str, object]) -> SegmentHost:
    changed = apply_changes(get(conn, name), changes, fixed=frozenset())
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
