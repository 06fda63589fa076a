"""Diagnosis (pure): symptoms → candidate causes on a dependency graph → ranked explanations with evidence.

A library with a generic input (a graph of named nodes, per-node time series and events, a symptom), so
the same ranker explains an OpenStack failure (haven.topology gives the graph, haven.explain the
evidence) or runs on a public RCA dataset. No I/O, no clock: everything arrives as arguments.
"""

from haven.diagnosis.baseline import Deviation, deviation, robust_scale
from haven.diagnosis.model import (
    Diagnosis,
    Evidence,
    EvidenceKind,
    Explanation,
    Graph,
    NodeEvent,
    RankSettings,
    Series,
    Symptom,
)
from haven.diagnosis.ranker import rank, summary

__all__ = [
    "Deviation",
    "Diagnosis",
    "Evidence",
    "EvidenceKind",
    "Explanation",
    "Graph",
    "NodeEvent",
    "RankSettings",
    "Series",
    "Symptom",
    "deviation",
    "rank",
    "robust_scale",
    "summary",
]
