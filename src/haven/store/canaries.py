"""Queries for synthetic checks (haven.canary), run by Store inside its transactions.

A run is kept as the JSON document haven.canary gives (its own typed form is built there); saving a run
again replaces its row, so each commit of a run's progress is one upsert.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from haven.store.tables import canary_runs


def save(conn: Connection, kind: str, doc: Mapping[str, Any]) -> None:
    values = {
        "kind": kind,
        "zone": str(doc.get("zone") or ""),
        "state": str(doc.get("state") or "done"),
        "started_at": float(doc.get("started_at") or doc.get("at") or 0.0),
        "detail": dict(doc),
    }
    key = str(doc["id"])
    changed = conn.execute(update(canary_runs).where(canary_runs.c.id == key).values(values)).rowcount
    if not changed:
        conn.execute(insert(canary_runs), [{"id": key, **values}])


def list_some(
    conn: Connection, kind: str, states: Collection[str] | None, limit: int
) -> list[dict[str, Any]]:
    query = select(canary_runs.c.detail).where(canary_runs.c.kind == kind)
    if states is not None:
        query = query.where(canary_runs.c.state.in_(list(states)))
    query = query.order_by(canary_runs.c.started_at.desc(), canary_runs.c.id.desc()).limit(limit)
    return [dict(row.detail) for row in conn.execute(query)]


def prune(conn: Connection, before: float) -> int:
    return conn.execute(
        delete(canary_runs).where(
            canary_runs.c.started_at < before, canary_runs.c.state.in_(["done", "abandoned"])
        )
    ).rowcount
