"""Queries for the control plane's actions, run by Store inside its transactions.

An action is inserted as ``issued`` (its intent) before the reconciler makes its effect, and finished
(``done`` or ``failed``) after; the partial unique index ``uq_controlplane_actions_unfinished`` refuses a
second unfinished action on one replica (Conflict), so a racing pass cannot issue the same effect twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.controlplane import (
    ActionDetail,
    ActionKind,
    ActionRecord,
    ActionState,
    DomainName,
    ReplicaHealth,
    ReplicaState,
    ServiceName,
)
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName
from haven.store.tables import controlplane_actions as actions
from haven.store.tables import controlplane_replicas as replicas

_DETAIL_KEYS = frozenset(f.name for f in dataclasses.fields(ActionDetail))


def _record(row: Row[Any]) -> ActionRecord:
    detail = {k: v for k, v in dict(row.detail).items() if k in _DETAIL_KEYS}
    return ActionRecord(
        id=row.id,
        kind=ActionKind(row.kind),
        service=ServiceName(row.service),
        host=HostName(row.host),
        state=ActionState(row.state),
        reason=row.reason,
        detail=ActionDetail(**detail),
        created_at=row.created_at,
        finished_at=row.finished_at,
        error=row.error,
    )


def issue(conn: Connection, record: ActionRecord) -> None:
    values = {
        "id": record.id,
        "service": record.service,
        "host": record.host,
        "kind": record.kind.value,
        "state": record.state.value,
        "reason": record.reason,
        "detail": dataclasses.asdict(record.detail),
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "error": record.error,
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(actions), [values])
    except IntegrityError as exc:
        raise Conflict(
            f"{record.service} on {record.host} already has an unfinished action (or id {record.id!r} exists)"
        ) from exc


def finish(conn: Connection, action_id: str, state: ActionState, now: float, error: str) -> None:
    done = conn.execute(
        update(actions)
        .where(actions.c.id == action_id, actions.c.state == ActionState.ISSUED.value)
        .values(state=ActionState(state).value, finished_at=now, error=error)
    )
    if done.rowcount != 1:
        raise NotFound(f"no unfinished control-plane action {action_id!r}")


def unfinished(conn: Connection) -> list[ActionRecord]:
    query = select(actions).where(actions.c.state == ActionState.ISSUED.value).order_by(actions.c.created_at)
    return [_record(row) for row in conn.execute(query)]


def since(conn: Connection, after: float) -> list[ActionRecord]:
    query = select(actions).where(actions.c.created_at >= after).order_by(actions.c.created_at, actions.c.id)
    return [_record(row) for row in conn.execute(query)]


def latest_per_replica(conn: Connection, kinds: tuple[ActionKind, ...]) -> list[ActionRecord]:
    """The newest action of one of ``kinds`` on each replica (load-balancer membership: who took it out)."""
    newest: dict[tuple[str, str], ActionRecord] = {}
    query = (
        select(actions)
        .where(actions.c.kind.in_([k.value for k in kinds]))
        .order_by(actions.c.created_at, actions.c.id)
    )
    for row in conn.execute(query):
        newest[(row.service, row.host)] = _record(row)
    return list(newest.values())


def replace_replicas(conn: Connection, states: Sequence[ReplicaState]) -> None:
    conn.execute(delete(replicas))
    if states:
        conn.execute(insert(replicas), [dataclasses.asdict(s) | {"health": s.health.value} for s in states])


def list_replicas(conn: Connection) -> list[ReplicaState]:
    query = select(replicas).order_by(replicas.c.service, replicas.c.host)
    return [
        ReplicaState(
            service=ServiceName(row.service),
            host=HostName(row.host),
            domain=DomainName(row.domain),
            health=ReplicaHealth(row.health),
            unit=row.unit,
            member=row.member,
            probe=row.probe,
            observed_at=row.observed_at,
        )
        for row in conn.execute(query)
    ]
