"""The baseline rankers bench/explain.py compares haven's ranker with (pure): each drops one rule, and a
case where that rule decides shows the difference."""

from __future__ import annotations

from haven.diagnosis import EvidenceKind, NodeEvent, RankSettings, Symptom
from haven.diagnosis.baselines import METHODS, onset, score, zscore
from haven.diagnosis.baselines import haven as haven_method

from .test_ranker import BOOT_FAILED, GRAPH, metric

SETTINGS = RankSettings()


def test_the_victim_with_more_evidence_wins_on_points_only() -> None:
    # The database failed first; nova-api then went down and errored: more points on the victim.
    events = [
        NodeEvent("mariadb", EvidenceKind.ERROR, BOOT_FAILED - 60, "sql probe failed", "cp:sql:ctl"),
        NodeEvent("nova-api", EvidenceKind.DOWN, BOOT_FAILED - 50, "nova-api down"),
        NodeEvent("nova-api", EvidenceKind.ERROR, BOOT_FAILED - 40, "server list failed", "probe:list"),
    ]
    symptom = Symptom("server-boot", BOOT_FAILED, "boot failed", None)
    assert haven_method(GRAPH, symptom, (), events, SETTINGS)[:2] == ["mariadb", "nova-api"]
    assert score(GRAPH, symptom, (), events, SETTINGS)[:2] == ["nova-api", "mariadb"]
    assert onset(GRAPH, symptom, (), events, SETTINGS)[:2] == ["mariadb", "nova-api"]
    assert zscore(GRAPH, symptom, (), events, SETTINGS) == []  # no metric: nothing to rank


def test_zscore_ranks_metrics_only_and_onset_the_earliest() -> None:
    glance = metric("glance", base=0.4, noise=0.05, onset=BOOT_FAILED - 120, level=8.0)
    rabbit = metric("rabbitmq", base=10, noise=2, onset=BOOT_FAILED - 300, level=16, seed=2)
    events = [NodeEvent("nova-scheduler", EvidenceKind.DOWN, BOOT_FAILED - 400, "scheduler down")]
    symptom = Symptom("server-boot", BOOT_FAILED, "boot failed", "image download")
    assert zscore(GRAPH, symptom, (glance, rabbit), events, SETTINGS)[0] == "glance"
    assert onset(GRAPH, symptom, (glance, rabbit), events, SETTINGS)[0] == "nova-scheduler"
    assert haven_method(GRAPH, symptom, (glance, rabbit), events, SETTINGS)[0] == "glance"
    assert list(METHODS) == ["haven", "zscore", "score", "onset"]
