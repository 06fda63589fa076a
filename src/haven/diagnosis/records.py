"""A symptom haven owes an explanation, and the explanation once given: the record haven.explain persists.

Opened (``pending``) when the symptom is seen, before any evidence is gathered, and finished (``done``)
with the Diagnosis: an engine that stops in between finds the pending record and explains it on start.
The JSON form here is what haven.store keeps and what ``haven explain --json`` prints.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from haven.diagnosis.model import Diagnosis, Evidence, EvidenceKind, Explanation, Symptom


class ExplanationState(StrEnum):
    PENDING = "pending"  # the symptom is recorded; its evidence is not yet ranked
    DONE = "done"


@dataclass(frozen=True, slots=True)
class ExplanationRecord:
    id: str  # the symptom's key: "instance.create.error:<message id>", "alert:<alert id>"
    source: str  # what raised the symptom: "instance.create.error", "alert:recovery_failed"
    subject: str  # what it is about: a server's uuid, a host
    symptom: Symptom
    created_at: float
    state: ExplanationState = ExplanationState.PENDING
    explained_at: float | None = None
    diagnosis: Diagnosis | None = None
    notes: tuple[str, ...] = ()  # what was missing: "metrics unavailable: ..."


def evidence_json(evidence: Evidence) -> dict[str, Any]:
    return {
        "kind": evidence.kind.value,
        "node": evidence.node,
        "at": evidence.at,
        "text": evidence.text,
        "z": evidence.z,
        "value": evidence.value,
        "baseline": evidence.baseline,
    }


def explanation_json(explanation: Explanation) -> dict[str, Any]:
    return {
        "node": explanation.node,
        "label": explanation.label,
        "score": explanation.score,
        "onset": explanation.onset,
        "text": explanation.text,
        "in_phase": explanation.in_phase,
        "explained_by": list(explanation.explained_by),
        "evidence": [evidence_json(e) for e in explanation.evidence],
    }


def explanation_from_json(data: Mapping[str, Any]) -> Explanation:
    return Explanation(
        node=data["node"],
        label=data["label"],
        score=float(data["score"]),
        onset=float(data["onset"]),
        evidence=tuple(
            Evidence(
                kind=EvidenceKind(e["kind"]),
                node=e["node"],
                at=float(e["at"]),
                text=e["text"],
                z=e.get("z"),
                value=e.get("value"),
                baseline=e.get("baseline"),
            )
            for e in data["evidence"]
        ),
        text=data["text"],
        in_phase=bool(data["in_phase"]),
        explained_by=tuple(data["explained_by"]),
    )


def record_json(record: ExplanationRecord) -> dict[str, Any]:
    """The record as one JSON document (``haven explain ID --json``)."""
    diagnosis = record.diagnosis
    return {
        "id": record.id,
        "source": record.source,
        "subject": record.subject,
        "state": record.state.value,
        "symptom": {
            "node": record.symptom.node,
            "at": record.symptom.at,
            "what": record.symptom.what,
            "phase": record.symptom.phase,
        },
        "created_at": record.created_at,
        "explained_at": record.explained_at,
        "summary": None if diagnosis is None else diagnosis.summary,
        "explanations": [] if diagnosis is None else [explanation_json(e) for e in diagnosis.explanations],
        "notes": list(record.notes),
    }
