"""Baseline rankers: what haven's ranker (haven.diagnosis.rank) is compared with on the same evidence.

Used by bench/explain.py (its per-fault table and its ``--replay`` of recorded evidence). Each takes the
ranker's own input and returns node names, best first; each drops one of the ranker's rules, so a
catalogue run shows what each rule is worth:

- ``zscore``: metrics only, the strongest robust z-score against the node's own baseline first (BARO /
  N-sigma alone, as on the public RCA benchmarks); events are ignored.
- ``score``: every node with evidence by its points alone (hard evidence plus metric points), then the
  earlier onset: no phase narrowing, no preference for the node whose dependencies are healthy.
- ``onset``: the earliest anomaly first (hard evidence or metric), whatever it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from haven.diagnosis.model import EvidenceKind, Graph, NodeEvent, RankSettings, Series, Symptom
from haven.diagnosis.ranker import candidates, rank

Ranker = Callable[[Graph, Symptom, Iterable[Series], Iterable[NodeEvent], RankSettings], list[str]]


def haven(
    graph: Graph, symptom: Symptom, series: Iterable[Series], events: Iterable[NodeEvent], s: RankSettings
) -> list[str]:
    return [e.node for e in rank(graph, symptom, series, events, s).explanations]


def zscore(
    graph: Graph, symptom: Symptom, series: Iterable[Series], events: Iterable[NodeEvent], s: RankSettings
) -> list[str]:
    found = candidates(graph, symptom, series, (), s)
    peak = {e.node: max(abs(v.z or 0.0) for v in e.evidence if v.kind is EvidenceKind.METRIC) for e in found}
    return sorted(peak, key=lambda node: (-peak[node], node))[: s.top]


def score(
    graph: Graph, symptom: Symptom, series: Iterable[Series], events: Iterable[NodeEvent], s: RankSettings
) -> list[str]:
    found = candidates(graph, symptom, series, events, s)
    return [e.node for e in sorted(found, key=lambda e: (-e.score, e.onset, e.node))][: s.top]


def onset(
    graph: Graph, symptom: Symptom, series: Iterable[Series], events: Iterable[NodeEvent], s: RankSettings
) -> list[str]:
    found = candidates(graph, symptom, series, events, s)
    return [e.node for e in sorted(found, key=lambda e: (e.onset, -e.score, e.node))][: s.top]


METHODS: Mapping[str, Ranker] = MappingProxyType(
    {"haven": haven, "zscore": zscore, "score": score, "onset": onset}
)
"""Every method by name, haven's ranker first."""
