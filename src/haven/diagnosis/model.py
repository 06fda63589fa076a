"""The ranker's vocabulary: a dependency graph, per-node series and events, a symptom; ranked explanations.

Built by callers of haven.diagnosis.rank (haven.explain from the store, Prometheus and OpenStack's
notifications; tests from synthetic cases; later, public RCA datasets), read back by the CLI. Generic on
purpose: a node is any name (a service, a host, a queue), a phase any word the graph knows. Times are
epoch seconds. Frozen dataclasses only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class EvidenceKind(StrEnum):
    """What a piece of evidence is. The first three are hard evidence, in decreasing weight.

    HEALTHY is no evidence of a cause: the node was seen working by one check (a probe of it passed),
    which ends its earlier hard evidence from that same check (a service that failed it and passed it
    again before the symptom did not cause it): see ``NodeEvent.scope``.
    """

    DOWN = "down"  # a service reported down, forced down, or its process gone
    RESTART = "restart"  # a process or broker started again
    ERROR = "error"  # an error the node itself reported (an exception notification)
    METRIC = "metric"  # a metric far from its own baseline
    HEALTHY = "healthy"  # seen working: ends the node's earlier hard evidence of the same scope


HARD_WEIGHT: Mapping[EvidenceKind, float] = MappingProxyType(
    {EvidenceKind.DOWN: 10.0, EvidenceKind.RESTART: 8.0, EvidenceKind.ERROR: 4.0}
)
"""Points for each distinct kind of hard evidence on one node (a metric's points are at most 10)."""


def _frozen(mapping: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
    return MappingProxyType({key: tuple(value) for key, value in mapping.items()})


@dataclass(frozen=True, slots=True)
class Graph:
    """Who depends on whom, how nodes are named in words, and which nodes each failure phase involves.

    ``depends_on[a]`` lists the nodes ``a`` needs; a node absent from it needs nothing. ``phases`` maps a
    phase ("scheduling", "image download") to the nodes doing that work; their own dependencies are
    candidates too. ``leaves`` adds nodes to a phase without their dependencies: a failure of theirs
    fails that phase, what they need does not (the scheduler's NoValidHost when every nova-compute is
    down: the computes are its cause, their image service is not); only for a symptom whose node needs
    the leaf (an operation that uses it), or one on a node the graph does not know.
    """

    depends_on: Mapping[str, tuple[str, ...]]
    labels: Mapping[str, str] = field(default_factory=dict)
    phases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    leaves: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "depends_on", _frozen(self.depends_on))
        object.__setattr__(self, "phases", _frozen(self.phases))
        object.__setattr__(self, "leaves", _frozen(self.leaves))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def label(self, node: str) -> str:
        return self.labels.get(node, node)

    def below(self, node: str) -> frozenset[str]:
        """Every node ``node`` depends on, directly or not (itself excluded, cycles tolerated)."""
        seen: set[str] = set()
        todo = list(self.depends_on.get(node, ()))
        while todo:
            current = todo.pop()
            if current in seen or current == node:
                continue
            seen.add(current)
            todo.extend(self.depends_on.get(current, ()))
        return frozenset(seen)

    def nodes(self) -> frozenset[str]:
        found = set(self.depends_on)
        for needs in self.depends_on.values():
            found.update(needs)
        for members in self.phases.values():
            found.update(members)
        return frozenset(found)


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something that happened to a node at a time: hard evidence (kind is not METRIC)."""

    node: str
    kind: EvidenceKind
    at: float
    detail: str = ""  # in words, e.g. "nova-compute on compute-3 forced down"
    # What saw it ("endpoint", "probe:token", "nova-services"; "" for notifications and haven's own
    # events). A HEALTHY event ends only the node's earlier evidence of its own scope, and never
    # evidence of the empty scope: an endpoint answering its version document proves nothing about a
    # token issue that failed, nor about a service Nova lists down.
    scope: str = ""

    def __post_init__(self) -> None:
        if self.kind is EvidenceKind.METRIC:
            raise ValueError("a NodeEvent is hard evidence; metrics arrive as Series")


@dataclass(frozen=True, slots=True)
class Series:
    """One metric of one node over time: ``points`` are (time, value), in any order."""

    node: str
    metric: str  # in words: "p95 latency", "unacked messages"
    points: tuple[tuple[float, float], ...]
    unit: str = ""  # "s", "%", "" (a count)


@dataclass(frozen=True, slots=True)
class Symptom:
    """What failed, where and when, and (when known) in which phase of the operation."""

    node: str  # the node the symptom was seen on: an operation ("server-boot") or a service
    at: float
    what: str = "failed"  # in words: "boot failed", "evacuation of vm-7 failed"
    phase: str | None = None  # one of Graph.phases, or None when unknown


@dataclass(frozen=True, slots=True)
class RankSettings:
    """How far back to look and what counts as anomalous (BARO / N-sigma: robust z-scores)."""

    window_s: float = 600.0  # the incident window before the symptom, where onsets are looked for
    baseline_s: float = 3600.0  # the baseline just before the window: each metric's own normal
    z_threshold: float = 3.0  # |robust z| at or above this is anomalous
    z_cap: float = 20.0  # a z-score this large earns a metric's full 10 points
    min_baseline_points: int = 5  # fewer: that metric has no baseline and is not judged
    # MAD of a flat baseline is 0: the scale is at least this share of the baseline's median (or
    # scale_floor when the median is 0), so a constant series does not make every wiggle infinite.
    mad_floor_share: float = 0.05
    scale_floor: float = 1e-6
    # A dependency counts as the earlier cause when its onset is no later than this after the node's; a
    # node seen working no later than this after its dependency's onset may still be its victim.
    onset_tolerance_s: float = 30.0
    top: int = 5
    # Evidence in these scopes is an answer about the node's own state (an image missing, no room, every
    # compute disabled), which no dependency's failure causes: a node with such evidence is never ranked
    # as a dependency's victim (rule 2).
    own_scopes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.baseline_s <= 0:
            raise ValueError("window_s and baseline_s must be positive")
        if self.z_threshold <= 0 or self.z_cap < self.z_threshold:
            raise ValueError("z_threshold must be positive and z_cap at least z_threshold")
        if self.min_baseline_points < 2 or self.top < 1:
            raise ValueError("min_baseline_points must be at least 2 and top at least 1")

    @property
    def lookback_s(self) -> float:
        """How much history before the symptom the ranker reads (baseline and window)."""
        return self.window_s + self.baseline_s


@dataclass(frozen=True, slots=True)
class Evidence:
    kind: EvidenceKind
    node: str
    at: float  # the event's time, or the metric's onset
    text: str  # "Glance p95 latency rose to 8.2 s (baseline 0.4 s) at 10:02:00"
    z: float | None = None  # metrics: the peak robust z-score in the window
    value: float | None = None  # metrics: the value at that peak
    baseline: float | None = None  # metrics: the baseline's median


@dataclass(frozen=True, slots=True)
class Explanation:
    """One candidate cause, its evidence (strongest first) and why it ranks where it does."""

    node: str
    label: str
    score: float  # hard evidence points plus metric points
    onset: float  # its earliest evidence
    evidence: tuple[Evidence, ...]
    text: str  # "Glance p95 latency rose to 8.2 s (baseline 0.4 s) at 10:02:00"
    in_phase: bool = True  # False: outside the failure phase's nodes (ranked after those)
    # Anomalous dependencies that began no later than this node did: it is likely their victim.
    explained_by: tuple[str, ...] = ()
    own_state: bool = (
        False  # evidence about its own state (RankSettings.own_scopes): ranked first in its tier
    )


@dataclass(frozen=True, slots=True)
class Diagnosis:
    symptom: Symptom
    explanations: tuple[Explanation, ...]  # best first
    summary: str  # "boot failed at 10:04:00 because ..."
