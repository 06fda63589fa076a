"""Writing many rows in one statement: the store's bulk paths (hosts, host conditions, steps).

Called by the hosts and notifications query modules. SQLite gets
executemany, which loops in C over one prepared statement and is fast enough.
PostgreSQL gets one set-based statement over ``unnest`` of one array per
column: executemany there is one statement per row (pipelined), about four
times slower for 800 step updates, which is the recovery engine's hot path.

Both functions return the number of rows the database says it wrote, so the
caller can tell a missing row from a written one.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Connection, Table, TextClause, bindparam, insert, text, update
from sqlalchemy.engine import Dialect

from haven.store.engine import json_dumps

Row = Mapping[str, Any]


def insert_rows(conn: Connection, table: Table, rows: Sequence[Row]) -> int:
    """Insert ``rows`` (dicts keyed by column name, all with the same keys)."""
    if not rows:
        return 0
    if conn.dialect.name != "postgresql":
        return conn.execute(insert(table), list(rows)).rowcount
    columns = tuple(rows[0])
    statement = _pg_insert(table, columns, conn.dialect)
    return conn.execute(statement, _as_arrays(table, columns, rows)).rowcount


def update_rows(conn: Connection, table: Table, keys: Sequence[str], rows: Sequence[Row]) -> int:
    """Update the row matching each row's ``keys`` columns, setting its other columns."""
    if not rows:
        return 0
    columns = tuple(rows[0])
    if conn.dialect.name != "postgresql":
        statement = _update_by_key(table, tuple(keys), columns)
        params = [{f"b_{name}": row[name] for name in columns} for row in rows]
        return conn.execute(statement, params).rowcount
    statement = _pg_update(table, tuple(keys), columns, conn.dialect)
    return conn.execute(statement, _as_arrays(table, columns, rows)).rowcount


@functools.cache
def _update_by_key(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> Any:
    # Bound names get a prefix: in UPDATE ... SET a bindparam may not share its column's name.
    values = {name: bindparam(f"b_{name}", type_=table.c[name].type) for name in columns if name not in keys}
    return update(table).where(*(table.c[key] == bindparam(f"b_{key}") for key in keys)).values(values)


def _as_arrays(table: Table, columns: tuple[str, ...], rows: Sequence[Row]) -> dict[str, list[Any]]:
    arrays: dict[str, list[Any]] = {}
    for name in columns:
        values = [row[name] for row in rows]
        if isinstance(table.c[name].type, JSON):  # sent as text, cast to jsonb[] by the statement
            values = [json_dumps(value) for value in values]
        arrays[name] = values
    return arrays


def _unnest(table: Table, columns: tuple[str, ...], dialect: Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    arrays = ", ".join(
        f"CAST(:{name} AS {table.c[name].type.compile(dialect=dialect)}[])" for name in columns
    )
    return f"unnest({arrays}) AS v({', '.join(quote(name) for name in columns)})"


def _pg_insert(table: Table, columns: tuple[str, ...], dialect: Dialect) -> TextClause:
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(name) for name in columns)
    source = _unnest(table, columns, dialect)
    return text(f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM {source}")


def _pg_update(table: Table, keys: tuple[str, ...], columns: tuple[str, ...], dialect: Dialect) -> TextClause:
    quote = dialect.identifier_preparer.quote
    target = quote(table.name)
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in columns if name not in keys)
    matches = " AND ".join(f"{target}.{quote(key)} = v.{quote(key)}" for key in keys)
    return text(f"UPDATE {target} SET {assignments} FROM {_unnest(table, columns, dialect)} WHERE {matches}")
