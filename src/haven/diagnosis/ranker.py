"""The ranker: for one symptom, the graph's candidate causes, scored on their evidence and ranked.

Called by haven.explain (a failed recovery, an ``instance.create.error``) and by tests on synthetic
cases; pure and deterministic: the same case gives the same ranking, ties broken by node name.

The rules, in the order they rank (each a tier of the sort key):

1. **Phase.** When the symptom's phase is known, the phase's nodes and what they depend on rank first
   ("No valid host" → scheduler and Placement; image download → Glance; port binding → Neutron), and
   the phase's leaves (``Graph.leaves``: nodes without their dependencies; only for a symptom whose node
   needs the leaf), and what an in-phase node is likely the victim of (rule 2). Other implicated nodes
   still appear, after them. With no phase, the symptom's node and what it needs rank first (a token
   probe failing: Keystone and its own dependencies, never a compute).
2. **Deepest cause.** A node with an implicated dependency (directly or not) that began no later than
   it did is likely that dependency's victim: it ranks after the nodes whose own dependencies are healthy.
   Not a node seen working after that dependency's evidence began (it worked without it; seen within
   the onset tolerance after it, its failure may still be on its way: a backlog delays the reports
   queued behind it only as it grows), nor one
   with evidence about its own state (``RankSettings.own_scopes``: an image missing is no
   victim of a slow Keystone); among the nodes whose dependencies are healthy, such a node ranks first:
   a definite answer (the image is missing, no room) says why the operation was refused.
3. **Score.** Hard evidence first (down 10, restart 8, error 4 points, each kind once), then the metric
   points: the strongest robust z-score against the node's own baseline, 10 points at ``z_cap``.
4. **Onset.** Earlier first; then the node's name.

Only evidence between the window's start and the symptom counts: what began after the symptom did not
cause it. A node seen working by a check (a HEALTHY event: that probe passed again) after hard evidence
from the same check (its ``scope``) and before the symptom had recovered from it: that earlier evidence
ended and does not count; evidence of another scope, or of none, stands. A node with no evidence is not
a candidate.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from haven.diagnosis.baseline import deviation
from haven.diagnosis.model import (
    HARD_WEIGHT,
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
from haven.diagnosis.words import clock, event_text, metric_text

METRIC_POINTS = 10.0


@dataclass(frozen=True, slots=True)
class _Found:
    node: str
    evidence: tuple[Evidence, ...]
    hard: float
    metric: float
    own: bool = False  # it has evidence in one of RankSettings.own_scopes: no dependency's victim
    worked: tuple[float, ...] = ()  # when a check saw it working (its HEALTHY events in the window)

    @property
    def onset(self) -> float:
        return min(e.at for e in self.evidence)


def rank(
    graph: Graph,
    symptom: Symptom,
    series: Iterable[Series] = (),
    events: Iterable[NodeEvent] = (),
    settings: RankSettings | None = None,
) -> Diagnosis:
    """Ranked explanations of ``symptom`` from the evidence on the graph's nodes (best first)."""
    settings = settings or RankSettings()
    ranked = sorted(
        candidates(graph, symptom, series, events, settings),
        key=lambda e: (not e.in_phase, bool(e.explained_by), not e.own_state, -e.score, e.onset, e.node),
    )
    kept = tuple(ranked[: settings.top])
    return Diagnosis(symptom, kept, summary(graph, symptom, kept))


def candidates(
    graph: Graph,
    symptom: Symptom,
    series: Iterable[Series] = (),
    events: Iterable[NodeEvent] = (),
    settings: RankSettings | None = None,
) -> list[Explanation]:
    """Every node with evidence in the window, scored, unranked (by node name): what ``rank`` sorts, and
    what the baseline rankers (haven.diagnosis.baselines) sort their own way."""
    settings = settings or RankSettings()
    found = _evidence(graph, symptom, series, events, settings)
    scope = _scope(graph, symptom)
    explained = [_explain(graph, item, found, scope, settings.onset_tolerance_s) for item in found.values()]
    # What a node of the phase is likely the victim of is in the phase too (a leaf's own dependencies:
    # every compute down because the conductor they report through died).
    behind = {node for e in explained if e.in_phase for node in e.explained_by}
    return [replace(e, in_phase=True) if e.node in behind else e for e in explained]


def summary(graph: Graph, symptom: Symptom, explanations: Sequence[Explanation]) -> str:
    """One sentence: the symptom, and the leading evidence of the best one or two root causes."""
    head = f"{symptom.what} at {clock(symptom.at)}"
    roots = [e for e in explanations if e.in_phase and not e.explained_by][:2] or list(explanations[:1])
    if not roots:
        return f"{head}; no evidence of a cause was found"
    return f"{head} because " + " and ".join(e.evidence[0].text for e in roots)


def _scope(graph: Graph, symptom: Symptom) -> frozenset[str] | None:
    """The phase's nodes and their dependencies, and its leaves; with no phase known, the symptom's node
    and what it needs; None (no narrowing) when the graph knows no dependency of that node either.

    A leaf is in the scope only for a symptom whose node needs it (or whose node the graph does not
    know): a leaf fails the phase of an operation that uses it. Glance is a leaf of the api phase because
    Nova's API asks it for the image before it accepts a boot; Nova's API failing to list servers, a
    symptom on nova-api itself, never asked Glance (bench/explain.py, nova-api-hung, 2026-12-07: a
    Glance error from a check 33 s before the fault outranked nova-api on its onset)."""
    if symptom.phase is None or symptom.phase not in graph.phases:
        if not graph.depends_on.get(symptom.node):
            return None
        # No phase, but a service the graph knows (an API probe: the token on Keystone): what it needs
        # first. A token that timed out on a stalled Keystone was blamed on nova-compute, down in Nova's
        # list since the fault before (10 points against Keystone's 4; bench/explain.py, keystone-slow,
        # 2026-12-07 night): nothing a token needs reaches a compute.
        return frozenset(graph.below(symptom.node) | {symptom.node})
    members = graph.phases[symptom.phase]
    known = symptom.node in graph.nodes()
    needed = graph.below(symptom.node) | {symptom.node}
    scope = set(members) | {n for n in graph.leaves.get(symptom.phase, ()) if not known or n in needed}
    for node in members:
        scope |= graph.below(node)
    return frozenset(scope)


def _evidence(
    graph: Graph,
    symptom: Symptom,
    series: Iterable[Series],
    events: Iterable[NodeEvent],
    settings: RankSettings,
) -> dict[str, _Found]:
    start = symptom.at - settings.window_s
    hard: dict[str, dict[EvidenceKind, Evidence]] = {}
    own: set[str] = set()
    in_window = [e for e in events if start <= e.at <= symptom.at]
    seen_well: dict[tuple[str, str], float] = {}  # (node, scope): its last HEALTHY event before the symptom
    for event in in_window:
        if event.kind is EvidenceKind.HEALTHY and event.scope:
            key = (event.node, event.scope)
            seen_well[key] = max(event.at, seen_well.get(key, event.at))
    for event in sorted(in_window, key=lambda e: (e.at, e.node, e.kind.value, e.detail)):
        if event.kind is EvidenceKind.HEALTHY or event.at < seen_well.get(
            (event.node, event.scope), event.at
        ):
            continue  # not a cause, or ended: the same check saw the node working after it
        kinds = hard.setdefault(event.node, {})
        if event.scope in settings.own_scopes:
            own.add(event.node)
        if event.kind not in kinds:  # each kind once per node: its first occurrence, the earliest onset
            text = event_text(graph.label(event.node), event)
            kinds[event.kind] = Evidence(event.kind, event.node, event.at, text)
    metrics: dict[str, list[Evidence]] = {}
    for one in series:
        found = deviation(one, symptom.at, settings)
        if found is None:
            continue
        text = metric_text(graph.label(one.node), one, found)
        metrics.setdefault(one.node, []).append(
            Evidence(
                EvidenceKind.METRIC,
                one.node,
                found.onset,
                text,
                z=found.peak_z,
                value=found.peak_value,
                baseline=found.baseline,
            )
        )
    result: dict[str, _Found] = {}
    for node in sorted(set(hard) | set(metrics)):
        kinds = hard.get(node, {})
        strongest = sorted(metrics.get(node, []), key=lambda e: (-abs(e.z or 0.0), e.at, e.text))
        ordered = sorted(kinds.values(), key=lambda e: (-HARD_WEIGHT[e.kind], e.at)) + strongest
        metric_points = 0.0
        if strongest:
            metric_points = METRIC_POINTS * min(abs(strongest[0].z or 0.0), settings.z_cap) / settings.z_cap
        hard_points = sum(HARD_WEIGHT[kind] for kind in kinds)
        worked = tuple(sorted(e.at for e in in_window if e.node == node and e.kind is EvidenceKind.HEALTHY))
        result[node] = _Found(node, tuple(ordered), hard_points, metric_points, node in own, worked)
    return result


def _explain(
    graph: Graph, item: _Found, found: dict[str, _Found], scope: frozenset[str] | None, tolerance_s: float
) -> Explanation:
    earlier = sorted(
        other
        for other in graph.below(item.node)
        if other in found
        and found[other].onset <= item.onset + tolerance_s
        and not item.own
        and not any(found[other].onset + tolerance_s < at < item.onset for at in item.worked)
    )
    return Explanation(
        node=item.node,
        label=graph.label(item.node),
        score=round(item.hard + item.metric, 3),
        onset=item.onset,
        evidence=item.evidence,
        text="; ".join(e.text for e in item.evidence),
        in_phase=scope is None or item.node in scope,
        explained_by=tuple(earlier),
        own_state=item.own,
    )
