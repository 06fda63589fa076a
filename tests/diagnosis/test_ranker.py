"""haven.diagnosis's ranker on synthetic cases (pure): each rule, and cases where the most anomalous node is
not the cause."""

from __future__ import annotations

import calendar
import dataclasses
import random

import pytest

from haven.diagnosis import (
    EvidenceKind,
    Graph,
    NodeEvent,
    RankSettings,
    Series,
    Symptom,
    deviation,
    rank,
    robust_scale,
)

T0 = calendar.timegm((2026, 12, 5, 10, 0, 0))  # 10:00:00 UTC
BOOT_FAILED = T0 + 240  # 10:04:00

GRAPH = Graph(
    depends_on={
        "server-boot": ("nova-api", "nova-compute", "nova-scheduler"),
        "nova-api": ("keystone", "mariadb", "rabbitmq"),
        "nova-scheduler": ("placement", "rabbitmq", "mariadb"),
        "nova-compute": ("glance", "neutron", "rabbitmq"),
        "placement": ("mariadb", "keystone"),
        "glance": ("mariadb", "keystone"),
        "neutron": ("mariadb", "keystone"),
        "keystone": ("mariadb",),
    },
    labels={"glance": "Glance", "rabbitmq": "RabbitMQ", "mariadb": "MariaDB", "placement": "Placement"},
    phases={"scheduling": ("nova-scheduler", "placement"), "image download": ("glance",)},
)


def metric(
    node: str,
    *,
    base: float,
    noise: float,
    onset: float | None = None,
    level: float = 0.0,
    name: str = "p95 latency",
    unit: str = "s",
    seed: int = 1,
    until: float = BOOT_FAILED + 300,
) -> Series:
    """Every 15 s from 1.5 h before the symptom: ``base`` ± ``noise``, then ``level`` from ``onset``."""
    rnd = random.Random(seed)
    points = []
    t = BOOT_FAILED - 5400.0
    while t <= until:
        value = base + rnd.uniform(-noise, noise)
        if onset is not None and t >= onset:
            value = level + rnd.uniform(-noise, noise)
        points.append((t, value))
        t += 15.0
    return Series(node, name, tuple(points), unit)


def boot(phase: str | None = None) -> Symptom:
    return Symptom("server-boot", BOOT_FAILED, "boot failed", phase)


def test_the_issue_example_reads_as_one_sentence() -> None:
    glance = metric("glance", base=0.4, noise=0.02, onset=T0 + 120, level=8.2)
    restart = NodeEvent("rabbitmq", EvidenceKind.RESTART, T0 + 180)
    found = rank(GRAPH, boot(), [glance], [restart])
    assert [e.node for e in found.explanations] == ["glance", "rabbitmq"]
    assert found.summary.startswith("boot failed at 10:04:00 because Glance p95 latency rose to ")
    assert "(baseline 0.4 s) at 10:02:00 and RabbitMQ restarted at 10:03:00" in found.summary
    top = found.explanations[0].evidence[0]
    assert top.kind is EvidenceKind.METRIC and top.at == T0 + 120
    assert top.value == pytest.approx(8.2, abs=0.02) and top.baseline == pytest.approx(0.4, abs=0.02)


def test_the_deepest_anomalous_node_wins_over_the_most_anomalous() -> None:
    # nova-api's latency explodes (z in the hundreds); the database it needs degraded 30 s earlier, mildly.
    api = metric("nova-api", base=0.2, noise=0.01, onset=T0 + 150, level=6.0, seed=2)
    db = metric("mariadb", base=0.010, noise=0.001, onset=T0 + 120, level=0.016, name="query time", seed=3)
    found = rank(GRAPH, boot(), [api, db])
    naive = max(found.explanations, key=lambda e: abs(e.evidence[0].z or 0.0))
    assert naive.node == "nova-api"  # what a "most anomalous" pick would blame
    assert [e.node for e in found.explanations] == ["mariadb", "nova-api"]
    assert found.explanations[1].explained_by == ("mariadb",)
    assert found.explanations[0].explained_by == ()


def test_a_dependency_that_degraded_later_does_not_take_the_blame() -> None:
    glance = metric("glance", base=0.4, noise=0.02, onset=T0 + 60, level=5.0)
    db = metric("mariadb", base=0.010, noise=0.001, onset=T0 + 200, level=0.016, name="query time", seed=3)
    found = rank(GRAPH, boot(), [glance, db])
    assert found.explanations[0].node == "glance"
    assert found.explanations[0].explained_by == ()


def test_hard_evidence_ranks_before_a_larger_metric_deviation() -> None:
    graph = Graph(depends_on={"server-boot": ("rabbitmq", "neutron")})
    neutron = metric("neutron", base=1.0, noise=0.05, onset=T0 + 100, level=1.6)  # z ≈ 8
    restart = NodeEvent("rabbitmq", EvidenceKind.RESTART, T0 + 200)
    found = rank(graph, boot(), [neutron], [restart])
    assert [e.node for e in found.explanations] == ["rabbitmq", "neutron"]
    assert found.explanations[0].score == 8.0
    assert 0 < found.explanations[1].score < 8.0


def test_down_outweighs_restart_outweighs_error() -> None:
    graph = Graph(depends_on={"x": ("a", "b", "c")})
    events = [
        NodeEvent("a", EvidenceKind.ERROR, T0 + 10),
        NodeEvent("b", EvidenceKind.RESTART, T0 + 20),
        NodeEvent("c", EvidenceKind.DOWN, T0 + 30),
    ]
    found = rank(graph, Symptom("x", BOOT_FAILED), events=events)
    assert [e.node for e in found.explanations] == ["c", "b", "a"]
    assert [e.score for e in found.explanations] == [10.0, 8.0, 4.0]


def test_the_phase_narrows_no_valid_host_to_the_scheduler_and_placement() -> None:
    glance = metric("glance", base=0.4, noise=0.02, onset=T0 + 60, level=9.0)  # far more anomalous
    placement = metric("placement", base=0.05, noise=0.005, onset=T0 + 90, level=0.09, seed=4)
    found = rank(GRAPH, boot("scheduling"), [glance, placement])
    assert [(e.node, e.in_phase) for e in found.explanations] == [("placement", True), ("glance", False)]
    assert "because Placement p95 latency rose" in found.summary
    assert "Glance" not in found.summary
    # The same evidence in the image-download phase blames Glance.
    found = rank(GRAPH, boot("image download"), [glance, placement])
    assert [(e.node, e.in_phase) for e in found.explanations] == [("glance", True), ("placement", False)]


def test_the_phase_keeps_the_dependencies_of_its_nodes() -> None:
    db_down = NodeEvent("mariadb", EvidenceKind.DOWN, T0 + 100)
    found = rank(GRAPH, boot("image download"), events=[db_down])
    assert found.explanations[0].node == "mariadb" and found.explanations[0].in_phase


def test_an_unknown_phase_does_not_narrow() -> None:
    restart = NodeEvent("rabbitmq", EvidenceKind.RESTART, T0 + 180)
    found = rank(GRAPH, boot("port binding"), events=[restart])  # GRAPH has no such phase
    assert found.explanations[0].in_phase


def test_a_phase_s_leaf_counts_only_for_a_symptom_whose_node_needs_it() -> None:
    # Glance a leaf of the api phase (Nova's API asks it for the image before it accepts a boot): in phase
    # for a boot, not for Nova's API failing to list servers, which never asks Glance.
    graph = dataclasses.replace(GRAPH, phases={"api": ("nova-api",)}, leaves={"api": ("glance",)})
    events = [
        NodeEvent("glance", EvidenceKind.ERROR, BOOT_FAILED - 33, "Nova's API could not get the image"),
        NodeEvent("nova-api", EvidenceKind.ERROR, BOOT_FAILED, "its server list timed out"),
    ]
    listed = rank(graph, Symptom("nova-api", BOOT_FAILED, "server list failed", "api"), events=events)
    assert [(e.node, e.in_phase) for e in listed.explanations] == [("nova-api", True), ("glance", False)]
    booted = rank(graph, boot("api"), events=events)
    assert [(e.node, e.in_phase) for e in booted.explanations] == [("glance", True), ("nova-api", True)]
    # a symptom on a node the graph does not know: no narrowing of the leaves
    foreign = rank(graph, Symptom("alert:x", BOOT_FAILED, "failed", "api"), events=events)
    assert [e.node for e in foreign.explanations if e.in_phase] == ["glance", "nova-api"]


def test_what_began_after_the_symptom_or_before_the_window_is_not_a_cause() -> None:
    late = metric("glance", base=0.4, noise=0.02, onset=BOOT_FAILED + 15, level=50.0)
    early_restart = NodeEvent("rabbitmq", EvidenceKind.RESTART, BOOT_FAILED - 601)
    late_down = NodeEvent("mariadb", EvidenceKind.DOWN, BOOT_FAILED + 1)
    placement = metric("placement", base=0.05, noise=0.005, onset=T0 + 90, level=0.09, seed=4)
    found = rank(GRAPH, boot(), [late, placement], [early_restart, late_down])
    assert [e.node for e in found.explanations] == ["placement"]


def test_evidence_of_a_node_seen_working_afterwards_by_the_same_check_has_ended() -> None:
    # The lab's benchmark: keystone's endpoint timed out at 10:00:30 and answered again at 10:02;
    # the scheduler went down at 10:03 and a boot failed at 10:04. Keystone, a dependency of both,
    # would outrank the scheduler ("deepest cause") if its old evidence still counted.
    keystone_error = NodeEvent(
        "keystone", EvidenceKind.ERROR, T0 + 30, "its endpoint did not answer", "endpoint"
    )
    keystone_well = NodeEvent("keystone", EvidenceKind.HEALTHY, T0 + 120, "its endpoint answered", "endpoint")
    scheduler_down = NodeEvent("nova-scheduler", EvidenceKind.DOWN, T0 + 180)
    stale = rank(GRAPH, boot(), [], [keystone_error, scheduler_down])
    assert stale.explanations[0].node == "keystone"  # without the HEALTHY event: the old behaviour
    found = rank(GRAPH, boot(), [], [keystone_error, keystone_well, scheduler_down])
    assert [e.node for e in found.explanations] == ["nova-scheduler"]
    assert "Keystone" not in found.summary and "keystone" not in found.summary
    # Evidence after the node was seen working counts again (it failed once more), in any input order.
    again = NodeEvent("keystone", EvidenceKind.ERROR, T0 + 200, "its endpoint did not answer", "endpoint")
    found = rank(GRAPH, boot(), [], [again, scheduler_down, keystone_well, keystone_error])
    assert found.explanations[0].node == "keystone"
    assert found.explanations[0].onset == T0 + 200
    # A HEALTHY event alone is no candidate; one after the symptom ends nothing.
    assert rank(GRAPH, boot(), [], [keystone_well]).explanations == ()
    after = NodeEvent("keystone", EvidenceKind.HEALTHY, BOOT_FAILED + 5, "", "endpoint")
    assert rank(GRAPH, boot(), [], [keystone_error, after]).explanations[0].node == "keystone"


def test_seen_working_by_one_check_does_not_end_what_another_check_saw() -> None:
    # Keystone's database hangs: its version document still answers (endpoint HEALTHY) while a token
    # issue fails; Glance is listed down by another source. Neither is ended by a version document.
    token_failed = NodeEvent("keystone", EvidenceKind.ERROR, T0 + 30, "its token failed", "probe:token")
    version_ok = NodeEvent("keystone", EvidenceKind.HEALTHY, T0 + 120, "its endpoint answered", "endpoint")
    glance_down = NodeEvent("glance", EvidenceKind.DOWN, T0 + 40, "a notification")  # no scope
    glance_ok = NodeEvent("glance", EvidenceKind.HEALTHY, T0 + 130, "its endpoint answered", "endpoint")
    found = rank(GRAPH, boot(), [], [token_failed, version_ok, glance_down, glance_ok])
    assert {e.node for e in found.explanations} == {"keystone", "glance"}
    # The token issue passing again does end it; an unscoped HEALTHY ends nothing.
    token_ok = NodeEvent("keystone", EvidenceKind.HEALTHY, T0 + 150, "it answered token", "probe:token")
    unscoped = NodeEvent("glance", EvidenceKind.HEALTHY, T0 + 150)
    found = rank(GRAPH, boot(), [], [token_failed, token_ok, glance_down, unscoped])
    assert [e.node for e in found.explanations] == ["glance"]


def test_each_metric_is_judged_against_its_own_baseline_not_its_size() -> None:
    # keystone is always noisy (1 s ± 0.5 s) and stays so; neutron is quiet and moves a little.
    keystone = metric("keystone", base=1.0, noise=0.5, onset=T0, level=1.2, seed=5)
    neutron = metric("neutron", base=0.10, noise=0.002, onset=T0 + 30, level=0.13, seed=6)
    found = rank(GRAPH, boot(), [keystone, neutron])
    assert [e.node for e in found.explanations] == ["neutron"]


def test_a_metric_that_fell_says_so() -> None:
    rate = metric("rabbitmq", base=500.0, noise=10.0, onset=T0 + 60, level=20.0, name="deliveries/s", unit="")
    found = rank(GRAPH, boot(), [rate])
    evidence = found.explanations[0].evidence[0]
    assert evidence.z is not None and evidence.z < 0
    assert evidence.text.startswith("RabbitMQ deliveries/s fell to ")
    assert "(baseline 500) at 10:01:00" in evidence.text


def test_a_series_without_enough_baseline_is_not_judged() -> None:
    short = Series("glance", "p95 latency", tuple((T0 + 15.0 * i, 0.4 if i < 4 else 9.0) for i in range(16)))
    assert deviation(short, BOOT_FAILED, RankSettings()) is None
    assert rank(GRAPH, boot(), [short]).explanations == ()


def test_a_lone_spike_before_the_rise_does_not_set_its_onset() -> None:
    rise = metric("glance", base=0.4, noise=0.02, onset=T0 + 120, level=8.2)
    spiked = tuple((t, 1.5 if t == T0 else v) for t, v in rise.points)  # z about 40, once, 2 min earlier
    found = deviation(dataclasses.replace(rise, points=spiked), BOOT_FAILED, RankSettings())
    assert found is not None and found.onset == T0 + 120 and found.peak_value > 8
    lone = tuple((t, 1.5 if t == T0 else 0.4) for t, _ in rise.points)  # the spike is all there is
    found = deviation(dataclasses.replace(rise, points=lone), BOOT_FAILED, RankSettings())
    assert found is not None and found.onset == T0 and found.peak_value == 1.5


def test_a_flat_baseline_uses_a_floor_not_zero() -> None:
    median, scale = robust_scale([2.0] * 10, RankSettings())
    assert (median, scale) == (2.0, pytest.approx(0.1))
    median, scale = robust_scale([0.0] * 10, RankSettings())
    assert scale == RankSettings().scale_floor
    median, scale = robust_scale([1.0, 2.0, 3.0, 4.0, 100.0], RankSettings())
    assert median == 3.0 and scale == pytest.approx(1.4826)


def test_no_evidence_says_so() -> None:
    quiet = metric("glance", base=0.4, noise=0.02)
    found = rank(GRAPH, boot(), [quiet])
    assert found.explanations == ()
    assert found.summary == "boot failed at 10:04:00; no evidence of a cause was found"


def test_each_kind_of_event_counts_once_from_its_first_occurrence() -> None:
    events = [NodeEvent("rabbitmq", EvidenceKind.RESTART, T0 + t) for t in (200, 100, 150)]
    events.append(NodeEvent("rabbitmq", EvidenceKind.DOWN, T0 + 90, "node rabbit@ctl1 down"))
    found = rank(GRAPH, boot(), events=events)
    (only,) = found.explanations
    assert only.score == 18.0 and only.onset == T0 + 90
    assert [(e.kind, e.at) for e in only.evidence] == [
        (EvidenceKind.DOWN, T0 + 90),
        (EvidenceKind.RESTART, T0 + 100),
    ]
    assert only.evidence[0].text == "RabbitMQ went down at 10:01:30 (node rabbit@ctl1 down)"


def test_the_ranking_is_deterministic_whatever_the_input_order() -> None:
    series = [
        metric("glance", base=0.4, noise=0.02, onset=T0 + 60, level=5.0),
        metric("neutron", base=0.1, noise=0.002, onset=T0 + 60, level=0.13, seed=6),
        metric("placement", base=0.05, noise=0.005, onset=T0 + 60, level=0.09, seed=4),
    ]
    events = [
        NodeEvent("rabbitmq", EvidenceKind.RESTART, T0 + 60),
        NodeEvent("keystone", EvidenceKind.RESTART, T0 + 60),
    ]
    first = rank(GRAPH, boot(), series, events)
    for seed in range(5):
        rnd = random.Random(seed)
        shuffled_series = [
            dataclasses.replace(s, points=tuple(rnd.sample(s.points, len(s.points)))) for s in series
        ]
        rnd.shuffle(shuffled_series)
        shuffled_events = rnd.sample(events, len(events))
        assert rank(GRAPH, boot(), shuffled_series, shuffled_events) == first
    # Equal scores and onsets: ties go by name (keystone before rabbitmq).
    assert [e.node for e in first.explanations][:2] == ["keystone", "rabbitmq"]


def test_top_limits_the_list() -> None:
    events = [NodeEvent(n, EvidenceKind.ERROR, T0) for n in ("glance", "neutron", "placement", "keystone")]
    assert len(rank(GRAPH, boot(), events=events, settings=RankSettings(top=2)).explanations) == 2


def test_the_graph_walks_dependencies_through_cycles() -> None:
    graph = Graph(depends_on={"a": ("b",), "b": ("c",), "c": ("a", "d")})
    assert graph.below("a") == {"b", "c", "d"}
    assert graph.below("d") == frozenset()
    assert graph.nodes() == {"a", "b", "c", "d"}


@pytest.mark.parametrize(
    "bad",
    [{"window_s": 0}, {"z_threshold": 0}, {"z_cap": 2.0}, {"min_baseline_points": 1}, {"top": 0}],
)
def test_settings_refuse_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RankSettings(**bad)  # type: ignore[arg-type]


def test_a_node_event_is_never_a_metric() -> None:
    with pytest.raises(ValueError):
        NodeEvent("glance", EvidenceKind.METRIC, T0)
