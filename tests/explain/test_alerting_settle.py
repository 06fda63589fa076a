"""An explanation is sent to Alertmanager only once it has held ``settle_s``: the canary hands a symptom
over when its check fails and the explainer ranks it again after the round's look (refine), so an
interim cause is never paged (haven.explain.alerting)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Symptom, rank
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.clock import VirtualClock
from haven.explain.alerting import AlertingSettings, AlertmanagerNotifier
from haven.explain.incidents import IncidentSettings
from haven.topology import openstack_topology

NOW = 1_800_000_000.0


def record(key: str, symptom: Symptom, events: list[NodeEvent]) -> ExplanationRecord:
    topology = openstack_topology(CATALOGUE.values())
    graph = Graph(topology.depends_on, topology.labels, topology.phases)
    return ExplanationRecord(key, "canary", "az1", symptom, symptom.at, ExplanationState.DONE, NOW,
                             rank(graph, symptom, events=events))  # fmt: skip


class _Store:
    def __init__(self, records: list[ExplanationRecord]) -> None:
        self.records = records

    def list_explanations(self, limit: int) -> list[ExplanationRecord]:
        return self.records[:limit]

    def list_alerts(self, active_only: bool, cleared_since: float | None = None) -> list[Any]:
        return []


class _Alertmanager:
    def __init__(self) -> None:
        self.posts: list[list[Any]] = []

    async def post(self, batch: list[Any]) -> None:
        self.posts.append(list(batch))


def _causes(batch: list[Any]) -> set[str]:
    return {a.labels["cause"] for a in batch if a.labels.get("haven_role") == "cause"}


async def test_an_interim_cause_refined_within_the_settle_time_is_never_sent() -> None:
    symptom = Symptom("nova-api", NOW - 1, "server list failed", "api")
    api = [NodeEvent("nova-api", EvidenceKind.ERROR, NOW - 2, "its server list failed", "probe:server-list")]
    first = dataclasses.replace(record("probe:server-list:1", symptom, api), explained_at=NOW)
    store = _Store([first])
    clock = VirtualClock(NOW)
    am = _Alertmanager()
    settings = AlertingSettings(
        "http://am", 60.0, IncidentSettings(active_s=600, ends_after_s=180), settle_s=20.0
    )
    notifier = AlertmanagerNotifier(store, clock, settings, am)  # type: ignore[arg-type]
    assert await notifier.tick() is not None  # an empty set: nothing held long enough yet
    assert _causes(am.posts[-1]) == set()
    # The look finds the database behind the list 8 s later: the record is ranked again, explained_at moves.
    db = [
        *api,
        NodeEvent("mariadb", EvidenceKind.ERROR, NOW - 3, "no answer to what the list needs", "unseen"),
    ]
    clock.advance_to(clock.now() + 8.0)
    store.records = [
        dataclasses.replace(record("probe:server-list:1", symptom, db), explained_at=clock.now())
    ]
    clock.advance_to(clock.now() + 15.0)  # 23 s after the first ranking, 15 s after the refined one
    await notifier.tick()
    assert all(_causes(batch) == set() for batch in am.posts)
    clock.advance_to(clock.now() + 6.0)  # the refined one has held 21 s
    batch = await notifier.tick()
    assert batch is not None and _causes(batch) == {"mariadb"}
    assert not any("nova-api" in _causes(b) for b in am.posts)  # the interim cause was never paged


async def test_a_sent_explanation_refined_later_is_not_resolved_and_paged_again() -> None:
    # Review (2026-12-07 evening): a refine after the send moved explained_at into the settle again, the
    # record dropped out of the batch, its HavenRootCause and HavenSymptom were sent resolved and fired
    # anew once the settle passed: a second page for one incident, on every refine.
    symptom = Symptom("nova-api", NOW - 1, "server list failed", "api")
    db = [NodeEvent("mariadb", EvidenceKind.ERROR, NOW - 3, "no answer to what the list needs", "unseen")]
    store = _Store([dataclasses.replace(record("probe:server-list:1", symptom, db), explained_at=NOW)])
    clock = VirtualClock(NOW + 21.0)
    am = _Alertmanager()
    settings = AlertingSettings(
        "http://am", 60.0, IncidentSettings(active_s=600, ends_after_s=180), settle_s=20.0
    )
    notifier = AlertmanagerNotifier(store, clock, settings, am)  # type: ignore[arg-type]
    first = await notifier.tick()
    assert first is not None and _causes(first) == {"mariadb"}
    # Ranked again 10 s later (new evidence), the same root: explained_at moves to then.
    more = [*db, NodeEvent("mariadb", EvidenceKind.DOWN, NOW + 25, "its unit is failed", "unit")]
    clock.advance_to(NOW + 31.0)
    store.records = [dataclasses.replace(record("probe:server-list:1", symptom, more), explained_at=NOW + 31)]
    wanted = await notifier.wanted(clock.now())
    assert {a.labels["alertname"] for a in wanted} == {"HavenRootCause", "HavenSymptom"}  # before: none
    batch = await notifier.tick()
    assert batch is None or all(a.ends_at > clock.now() for a in batch)  # before: both sent resolved
    assert all(a.ends_at > clock.now() for b in am.posts for a in b)  # nothing ever resolved


async def test_a_record_still_pending_at_a_send_still_settles_once_ranked() -> None:
    # Review (R2 of f0a42cc): a record seen pending by a send was remembered as sent, so its first,
    # interim ranking skipped settle_s and was paged at once.
    symptom = Symptom("nova-api", NOW - 1, "server list failed", "api")
    api = [NodeEvent("nova-api", EvidenceKind.ERROR, NOW - 2, "its server list failed", "probe:server-list")]
    done = record("probe:server-list:1", symptom, api)
    store = _Store(
        [dataclasses.replace(done, state=ExplanationState.PENDING, explained_at=None, diagnosis=None)]
    )
    clock = VirtualClock(NOW)
    am = _Alertmanager()
    settings = AlertingSettings(
        "http://am", 60.0, IncidentSettings(active_s=600, ends_after_s=180), settle_s=20.0
    )
    notifier = AlertmanagerNotifier(store, clock, settings, am)  # type: ignore[arg-type]
    assert await notifier.tick() is not None  # an empty set sent while the record is pending
    clock.advance_to(NOW + 1.0)
    store.records = [dataclasses.replace(done, explained_at=clock.now())]  # its interim ranking
    clock.advance_to(NOW + 2.0)
    await notifier.tick()
    assert all(_causes(b) == set() for b in am.posts)  # before: [set(), {'nova-api'}]


def test_a_negative_settle_time_is_refused() -> None:
    with pytest.raises(ValueError, match="settle_s"):
        AlertingSettings("http://am", 60.0, IncidentSettings(active_s=600, ends_after_s=180), settle_s=-1.0)
