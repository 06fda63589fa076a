"""Filtering, ordering and paging in SQL, for the lists of segments, hosts and notifications.

Called by haven.store.segments and haven.store.hosts (``page``); haven.store.notification_listing
orders by expressions over a join and uses ``after`` and ``order_by`` directly. The order is the
page query's keys, then the table's uuid column ascending, so two rows never tie and a marker
resumes exactly after the row it names. NULLs come last in ascending order and first in descending
order (the order the API always had). The rows after a marker are found by keyset comparison
against the marker row's values: no OFFSET, so a page deep in a large segment costs the same as
the first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Row,
    Select,
    Table,
    and_,
    false,
    literal,
    or_,
    select,
)

from haven.domain.listing import ASC, DESC, MarkerNotFound, PageQuery


def page(
    conn: Connection,
    table: Table,
    fields: Mapping[str, str],
    uuid_column: str,
    filters: Sequence[ColumnElement[bool]],
    query: PageQuery,
) -> Sequence[Row[Any]]:
    """The rows of ``table`` matching every filter, in the query's order, after its marker, cut.

    ``fields`` maps the domain field names a query may sort by to the table's columns.
    """
    order = [(table.c[_column(fields, name)], direction) for name, direction in query.order]
    order.append((table.c[uuid_column], ASC))
    statement: Select[Any] = select(table).where(*filters)
    if query.marker is not None:
        marker = _marker_row(conn, table, uuid_column, filters, query)
        statement = statement.where(_after(order, marker))
    statement = statement.order_by(*order_by(order))
    if query.limit is not None:
        statement = statement.limit(query.limit)
    return conn.execute(statement).all()


def _column(fields: Mapping[str, str], name: str) -> str:
    try:
        return fields[name]
    except KeyError:
        raise ValueError(f"cannot sort by {name!r}; can sort by {', '.join(sorted(fields))}") from None


def _marker_row(
    conn: Connection, table: Table, uuid_column: str, filters: Sequence[ColumnElement[bool]], query: PageQuery
) -> Row[Any]:
    marker = query.marker
    assert marker is not None
    matches: list[ColumnElement[bool]] = [table.c[uuid_column].in_(marker.ids)]
    if marker.number is not None:
        matches.append(table.c.number == marker.number)
    row = conn.execute(select(table).where(*filters, or_(*matches)).limit(1)).first()
    if row is None:
        raise MarkerNotFound(f"Marker {marker.ids[0]} could not be found.")
    return row


def _after(order: Sequence[tuple[Column[Any], str]], marker: Row[Any]) -> ColumnElement[bool]:
    return after([(column, direction, marker._mapping[column.name]) for column, direction in order])


def order_by(order: Sequence[tuple[ColumnElement[Any], str]]) -> list[ColumnElement[Any]]:
    """ORDER BY clauses for ``order``: NULLs last ascending, first descending."""
    return [key.asc().nulls_last() if d == ASC else key.desc().nulls_first() for key, d in order]


def after(keys: Sequence[tuple[ColumnElement[Any], str, object]]) -> ColumnElement[bool]:
    """Rows strictly after the marker row whose values of the ``keys`` (key, direction, value) are given:
    equal on every earlier key, after on this one."""
    alternatives: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for column, direction, value in keys:
        alternatives.append(and_(*equal_so_far, _beyond(column, direction, value)))
        equal_so_far.append(column.is_(None) if value is None else column == value)
    return or_(*alternatives)


def _beyond(column: ColumnElement[Any], direction: str, value: object) -> ColumnElement[bool]:
    """Values after ``value`` in one key's order (NULLs last ascending, first descending)."""
    if direction == DESC:
        return column.is_not(None) if value is None else column < literal(value, column.type)
    if value is None:
        return false()  # only NULLs follow a NULL ascending, and they are equal to it
    return or_(column > literal(value, column.type), column.is_(None))  # booleans compare too
