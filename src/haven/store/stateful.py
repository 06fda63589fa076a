"""Queries for Galera's recovery steps (haven.stateful.galera_recovery), run by Store inside its transactions.

A step is inserted ``issued`` (its intent) before the loop starts or bootstraps a node, and finished
(``done`` or ``failed``) after. The partial unique index ``uq_galera_actions_unfinished`` refuses a second
unfinished step in one cluster (Conflict): an engine that stopped between intent and outcome leaves its
step ``issued``, and the next engine must finish that one (re-reading the node: done if made, else
failed, never made late) before issuing another, so a restart mid-recovery never bootstraps a second
node. Store passes the leader's epoch: a deposed engine can neither issue nor finish a step.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.errors import Conflict, NotFound
from haven.domain.galera import DONE, FAILED, ISSUED, GaleraAction
from haven.store.tables import galera_actions as actions


def _action(row: Row[Any]) -> GaleraAction:
    return GaleraAction(
        id=row.id, cluster=row.cluster, kind=row.kind, node=row.node, reason=row.reason,
        position=row.position, created_at=row.created_at, state=row.state, error=row.error,
        finished_at=row.finished_at,
    )  # fmt: skip


def issue(conn: Connection, action: GaleraAction) -> None:
    values = {
        "id": action.id, "cluster": action.cluster, "kind": action.kind, "node": action.node,
        "reason": action.reason, "position": action.position, "created_at": action.created_at,
        "state": ISSUED, "error": "", "finished_at": None,
    }  # fmt: skip
    try:
        with conn.begin_nested():
            conn.execute(insert(actions), [values])
    except IntegrityError as exc:
        raise Conflict(
            f"Galera cluster {action.cluster!r} already has an unfinished step (or id {action.id!r} exists)"
        ) from exc


def finish(
    conn: Connection, action_id: str, state: str, now: float, error: str, position: str | None
) -> None:
    if state not in (DONE, FAILED):
        raise ValueError(f"a Galera step finishes done or failed, not {state!r}")
    values: dict[str, Any] = {"state": state, "finished_at": now, "error": error}
    if position is not None:  # a --wsrep-recover step's outcome: the positions it read
        values["position"] = position
    done = conn.execute(
        update(actions).where(actions.c.id == action_id, actions.c.state == ISSUED).values(values)
    )
    if done.rowcount != 1:
        raise NotFound(f"no unfinished Galera step {action_id!r}")


def unfinished(conn: Connection, cluster: str) -> list[GaleraAction]:
    query = select(actions).where(actions.c.cluster == cluster, actions.c.state == ISSUED)
    return [_action(row) for row in conn.execute(query.order_by(actions.c.created_at, actions.c.id))]


def since(conn: Connection, cluster: str, after: float) -> list[GaleraAction]:
    query = select(actions).where(actions.c.cluster == cluster, actions.c.created_at >= after)
    return [_action(row) for row in conn.execute(query.order_by(actions.c.created_at, actions.c.id))]
