"""The list of notifications, filtered, ordered and cut in SQL (Masakari's ``GET /v1/notifications``).

Called by Store.list_notifications_page for the API's list route. Like segments and hosts
(haven.store.listing) the order is the page query's keys then the uuid ascending, a marker is found
by keyset comparison, and every statement carries its LIMIT; two of the sort keys are not columns:

- ``number``, the API's integer ``id`` (haven.domain.ids.public_number of the uuid), is computed in
  the query: SHA-256 is built into PostgreSQL, and SQLite gets it as a function registered on the
  connection (``haven_public_number``). Notifications keep no ``number`` column (segments and hosts
  do), so sorting by it, or resuming after an integer marker, reads every matching row's id.
- ``source_host_uuid`` is the uuid of the host that now holds the notification's hostname (joined
  from hosts), or, for a name no segment holds any more, the uuid the caller's ``unheld_uuid`` gives
  (the API shows uuid5 of the name). Those names are read first, with one DISTINCT statement, only
  when sorting by it or when a filter could name one (a version-5 uuid).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    case,
    false,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from haven.domain.ids import HostName, public_number
from haven.domain.incidents import Notification, NotificationStatus, NotificationType
from haven.domain.listing import ASC, MarkerNotFound, PageQuery
from haven.store import listing
from haven.store.notifications import notification_of
from haven.store.tables import hosts, notifications

# What a list may be ordered by: the domain's field names (number: the API's integer id).
SORTABLE = frozenset(
    {"id", "number", "type", "hostname", "source_host_uuid", "generated_at", "status", "created_at",
     "updated_at"}
)  # fmt: skip
_SQLITE_NUMBER = "haven_public_number"
_HOST_UUID = "haven_host_uuid"


class PublicNumber(FunctionElement[int]):
    """public_number(id) in SQL: the first 52 bits of the SHA-256 of the uuid text."""

    type = BigInteger()
    inherit_cache = True


@compiles(PublicNumber)
def _number_sqlite(element: PublicNumber, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{_SQLITE_NUMBER}({compiler.process(element.clauses, **kw)})"


@compiles(PublicNumber, "postgresql")
def _number_postgresql(element: PublicNumber, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.clauses, **kw)
    digest = f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"
    return f"CAST(CAST('x' || substr({digest}, 1, 13) AS BIT(52)) AS BIGINT)"


def _number_of(text: str | None) -> int | None:
    return None if text is None else public_number(text)


def _register_functions(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    driver.create_function(_SQLITE_NUMBER, 1, _number_of, deterministic=True)


def list_page(
    conn: Connection,
    query: PageQuery,
    *,
    statuses: Collection[NotificationStatus] | None,
    type_: NotificationType | None,
    generated_since: float | None,
    source_host_uuids: Collection[str] | None,
    unheld_uuid: Callable[[str], str],
) -> list[tuple[Notification, str | None]]:
    """One page of the matching notifications, each with the uuid of the host now holding its name."""
    unknown = sorted({name for name, _ in query.order} - SORTABLE)
    if unknown:
        raise ValueError(
            f"cannot sort notifications by {unknown[0]!r}; can sort by {', '.join(sorted(SORTABLE))}"
        )
    _register_functions(conn)
    wants_source = any(name == "source_host_uuid" for name, _ in query.order)
    unheld = _unheld_names(conn) if wants_source or _may_be_unheld(source_host_uuids) else ()
    keys = _keys(unheld, unheld_uuid)
    filters = _filters(statuses, type_, generated_since, source_host_uuids, unheld, unheld_uuid)
    order = [(keys[name], direction) for name, direction in query.order]
    order.append((notifications.c.id, ASC))
    joined = notifications.outerjoin(hosts, hosts.c.name == notifications.c.hostname)
    statement: Select[Any] = (
        select(notifications, hosts.c.uuid.label(_HOST_UUID)).select_from(joined).where(*filters)
    )
    if query.marker is not None:
        values = _marker_values(conn, joined, filters, order, query)
        statement = statement.where(
            listing.after([(k, d, v) for (k, d), v in zip(order, values, strict=True)])
        )
    statement = statement.order_by(*listing.order_by(order))
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return [(notification_of(row), row._mapping[_HOST_UUID]) for row in conn.execute(statement)]


def _may_be_unheld(source_host_uuids: Collection[str] | None) -> bool:
    """Whether a filter value could be the uuid shown for a name no segment holds (a uuid5)."""
    for text in source_host_uuids or ():
        try:
            if uuid.UUID(text).version == 5:
                return True
        except ValueError:
            continue
    return False


def _unheld_names(conn: Connection) -> list[str]:
    """The names notifications are about that no segment holds now (hosts removed or renamed)."""
    held = select(hosts.c.name).where(hosts.c.name == notifications.c.hostname).exists()
    return list(conn.scalars(select(notifications.c.hostname).where(~held).distinct()))


def _source_uuid(unheld: Sequence[str], unheld_uuid: Callable[[str], str]) -> ColumnElement[Any]:
    if not unheld:
        return hosts.c.uuid
    shown = case({name: unheld_uuid(name) for name in unheld}, value=notifications.c.hostname)
    return func.coalesce(hosts.c.uuid, shown)


def _keys(unheld: Sequence[str], unheld_uuid: Callable[[str], str]) -> dict[str, ColumnElement[Any]]:
    columns = {name: notifications.c[name] for name in SORTABLE & set(notifications.c.keys())}
    return {
        **columns,
        "number": PublicNumber(notifications.c.id),
        "source_host_uuid": _source_uuid(unheld, unheld_uuid),
    }


def _filters(
    statuses: Collection[NotificationStatus] | None,
    type_: NotificationType | None,
    generated_since: float | None,
    source_host_uuids: Collection[str] | None,
    unheld: Sequence[str],
    unheld_uuid: Callable[[str], str],
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if statuses is not None:
        where.append(notifications.c.status.in_([NotificationStatus(s).value for s in statuses]))
    if type_ is not None:
        where.append(notifications.c.type == NotificationType(type_).value)
    if generated_since is not None:
        where.append(notifications.c.generated_at >= generated_since)
    if source_host_uuids is not None:
        wanted = set(source_host_uuids)
        named = [HostName(name) for name in unheld if unheld_uuid(name) in wanted]
        held = select(hosts.c.name).where(hosts.c.uuid.in_(wanted))
        where.append(
            or_(
                notifications.c.hostname.in_(held),
                notifications.c.hostname.in_(named) if named else false(),
            )
        )
    return where


def _marker_values(
    conn: Connection,
    joined: Any,
    filters: Sequence[ColumnElement[bool]],
    order: Sequence[tuple[ColumnElement[Any], str]],
    query: PageQuery,
) -> Sequence[object]:
    """The marker row's value of each key; MarkerNotFound when it names no matching notification."""
    marker = query.marker
    assert marker is not None
    matches: list[ColumnElement[bool]] = [notifications.c.id.in_(marker.ids)]
    if marker.number is not None:
        matches.append(PublicNumber(notifications.c.id) == literal(marker.number, BigInteger()))
    labelled = [key.label(f"k{i}") for i, (key, _) in enumerate(order)]
    statement = select(*labelled).select_from(joined).where(*filters, or_(*matches)).limit(1)
    row = conn.execute(statement).first()
    if row is None:
        raise MarkerNotFound(f"Marker {marker.ids[0]} could not be found.")
    return tuple(row)
