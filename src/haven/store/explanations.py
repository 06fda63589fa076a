"""Queries for diagnosis's evidence and explanations, run by Store inside its transactions.

Evidence rows are keyed by the notification's message id: keeping one twice (a redelivery) is a no-op.
An explanation row is opened once per symptom key (opening it again returns False) and finished once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from haven.diagnosis import Diagnosis, EvidenceKind, NodeEvent, Symptom
from haven.diagnosis.records import (
    ExplanationRecord,
    ExplanationState,
    explanation_from_json,
    explanation_json,
)
from haven.domain.errors import NotFound
from haven.store.tables import evidence_events, explanations


def keep_evidence(conn: Connection, events: Mapping[str, NodeEvent], received_at: float) -> int:
    kept = 0
    for key, event in sorted(events.items()):
        values = {
            "id": key,
            "node": event.node,
            "kind": event.kind.value,
            "at": event.at,
            "detail": event.detail,
            "received_at": received_at,
            "scope": event.scope,
        }
        try:
            with conn.begin_nested():
                conn.execute(insert(evidence_events), [values])
        except IntegrityError:
            continue  # already kept: a redelivered notification
        kept += 1
    return kept


def evidence_between(
    conn: Connection, start: float, end: float, received_after: float | None = None
) -> list[NodeEvent]:
    query = (
        select(evidence_events)
        .where(evidence_events.c.at >= start, evidence_events.c.at <= end)
        .order_by(evidence_events.c.at, evidence_events.c.id)
    )
    if received_after is not None:
        query = query.where(evidence_events.c.received_at > received_after)
    return [NodeEvent(r.node, EvidenceKind(r.kind), r.at, r.detail, r.scope) for r in conn.execute(query)]


def prune_evidence(conn: Connection, before: float) -> int:
    return conn.execute(delete(evidence_events).where(evidence_events.c.at < before)).rowcount


def _record(row: Row[Any]) -> ExplanationRecord:
    symptom = Symptom(row.symptom_node, row.symptom_at, row.what, row.phase)
    detail = dict(row.detail)
    diagnosis = None
    if row.state == ExplanationState.DONE.value:
        found = tuple(explanation_from_json(e) for e in detail.get("explanations", []))
        diagnosis = Diagnosis(symptom, found, row.summary)
    return ExplanationRecord(
        id=row.id,
        source=row.source,
        subject=row.subject,
        symptom=symptom,
        created_at=row.created_at,
        state=ExplanationState(row.state),
        explained_at=row.explained_at,
        diagnosis=diagnosis,
        notes=tuple(detail.get("notes", [])),
    )


def open_one(conn: Connection, record: ExplanationRecord) -> bool:
    values = {
        "id": record.id,
        "source": record.source,
        "subject": record.subject,
        "symptom_node": record.symptom.node,
        "symptom_at": record.symptom.at,
        "what": record.symptom.what,
        "phase": record.symptom.phase,
        "state": ExplanationState.PENDING.value,
        "created_at": record.created_at,
        "explained_at": None,
        "summary": "",
        "detail": {},
    }
    try:
        with conn.begin_nested():
            conn.execute(insert(explanations), [values])
    except IntegrityError:
        return False
    return True


def finish(conn: Connection, key: str, diagnosis: Diagnosis, notes: tuple[str, ...], now: float) -> None:
    detail = {"explanations": [explanation_json(e) for e in diagnosis.explanations], "notes": list(notes)}
    done = conn.execute(
        update(explanations)
        .where(explanations.c.id == key, explanations.c.state == ExplanationState.PENDING.value)
        .values(state=ExplanationState.DONE.value, explained_at=now, summary=diagnosis.summary, detail=detail)
    )
    if done.rowcount != 1:
        raise NotFound(f"no pending explanation {key!r}")


def refine(conn: Connection, key: str, diagnosis: Diagnosis, notes: tuple[str, ...], now: float) -> None:
    detail = {"explanations": [explanation_json(e) for e in diagnosis.explanations], "notes": list(notes)}
    done = conn.execute(
        update(explanations)
        .where(explanations.c.id == key, explanations.c.state == ExplanationState.DONE.value)
        .values(explained_at=now, summary=diagnosis.summary, detail=detail)
    )
    if done.rowcount != 1:
        raise NotFound(f"no explained record {key!r}")


def get(conn: Connection, key: str) -> ExplanationRecord:
    row = conn.execute(select(explanations).where(explanations.c.id == key)).first()
    if row is None:
        raise NotFound(f"no explanation {key!r}")
    return _record(row)


def list_some(conn: Connection, state: ExplanationState | None, limit: int) -> list[ExplanationRecord]:
    query = select(explanations).order_by(explanations.c.created_at.desc(), explanations.c.id).limit(limit)
    if state is not None:
        query = query.where(explanations.c.state == state.value)
    return [_record(row) for row in conn.execute(query)]


def known(conn: Connection, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    return set(conn.execute(select(explanations.c.id).where(explanations.c.id.in_(keys))).scalars())
