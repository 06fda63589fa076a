"""The store's diagnosis records: evidence kept once per message; explanations opened, then finished, once."""

from __future__ import annotations

import pytest

from haven.diagnosis import Diagnosis, Evidence, EvidenceKind, Explanation, NodeEvent, Symptom
from haven.diagnosis.records import ExplanationRecord, ExplanationState, record_json
from haven.domain.errors import NotFound
from haven.store import Store

T = 1_800_000_000.0
SYMPTOM = Symptom("server-boot", T, "boot of vm-1 failed (NoValidHost)", "scheduling")


def test_evidence_is_kept_once_per_key_and_read_by_time(store: Store) -> None:
    down = NodeEvent("nova-compute", EvidenceKind.DOWN, T - 60, "nova-compute on c1 forced down")
    error = NodeEvent("nova-api", EvidenceKind.ERROR, T - 30, "Timeout")
    assert store.keep_evidence({"m1": down, "m2": error}, T) == 2
    assert store.keep_evidence({"m1": down, "m3": error}, T) == 1  # m1 redelivered
    assert store.evidence_between(T - 60, T) == [down, error, error]
    assert store.evidence_between(T - 59, T) == [error, error]
    assert store.prune_evidence(T - 30) == 1
    assert store.evidence_between(0, T) == [error, error]


def test_an_explanation_is_opened_once_then_finished_once(store: Store) -> None:
    record = ExplanationRecord("instance.create.error:m9", "instance.create.error", "vm-1", SYMPTOM, T)
    assert store.open_explanation(record)
    assert not store.open_explanation(record)
    assert store.known_explanations(["instance.create.error:m9", "other"]) == {"instance.create.error:m9"}
    pending = store.get_explanation(record.id)
    assert pending == record and pending.state is ExplanationState.PENDING
    assert store.list_explanations(state=ExplanationState.PENDING) == [record]

    evidence = Evidence(EvidenceKind.METRIC, "placement-api", T - 120, "Placement p95 rose", 9.5, 0.9, 0.05)
    top = Explanation("placement-api", "Placement", 4.75, T - 120, (evidence,), "Placement p95 rose")
    diagnosis = Diagnosis(SYMPTOM, (top,), "boot failed because Placement p95 rose")
    store.finish_explanation(record.id, diagnosis, ("no metrics for glance-api",), T + 2)
    done = store.get_explanation(record.id)
    assert done.state is ExplanationState.DONE and done.explained_at == T + 2
    assert done.diagnosis == diagnosis and done.notes == ("no metrics for glance-api",)
    assert record_json(done)["explanations"][0]["evidence"][0]["z"] == 9.5
    with pytest.raises(NotFound):
        store.finish_explanation(record.id, diagnosis, (), T + 3)  # finished once
    with pytest.raises(NotFound):
        store.get_explanation("nothing")
    assert store.list_explanations(state=ExplanationState.PENDING) == []
    assert [r.id for r in store.list_explanations()] == [record.id]
