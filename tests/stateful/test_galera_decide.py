"""haven.stateful.galera.decide: every rule, every ordering of which node was last, and properties.

Pure: no server. The positions fed in are what Galera writes: a node killed (-9, power cut) leaves
seqno -1 and safe_to_bootstrap 0 (its position is then only known from --wsrep-recover); a clean stop
writes its seqno, and the last node of the primary component to stop cleanly gets safe_to_bootstrap 1.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.stateful.galera import (
    ZERO_UUID,
    DecisionKind,
    GaleraSettings,
    GraState,
    LiveStatus,
    NodeObservation,
    Position,
    decide,
)

UUID = "e19d009d-f108-11f1-a79d-42e31ea8518c"
OTHER = "5a0c6a3e-f10a-11f1-8f3e-0242ac120002"
NOW = 1_000.0
NAMES = ("g1", "g2", "g3")


def synced(name: str, seqno: int = 40, size: int = 3) -> NodeObservation:
    return NodeObservation(name, True, LiveStatus(True, "Primary", size, "Synced", UUID, seqno))


def killed(name: str, seqno: int | None, uuid: str = UUID) -> NodeObservation:
    """Stopped uncleanly; ``seqno`` is what --wsrep-recover found (None: not read yet)."""
    recovered = None if seqno is None else Position(uuid, seqno)
    return NodeObservation(name, False, grastate=GraState(uuid, -1, False), recovered=recovered)


def clean(name: str, seqno: int, safe: bool = False, uuid: str = UUID) -> NodeObservation:
    return NodeObservation(name, False, grastate=GraState(uuid, seqno, safe))


# ---- a primary component exists ------------------------------------------------------------------


def test_a_healthy_cluster_needs_nothing() -> None:
    assert decide([synced(n) for n in NAMES], NOW).kind is DecisionKind.NOTHING


def test_a_lost_node_is_started_to_rejoin_without_a_bootstrap() -> None:
    nodes = [synced("g1", size=2), synced("g2", size=2), killed("g3", None)]
    decision = decide(nodes, NOW)
    assert decision.kind is DecisionKind.START
    assert decision.nodes == ("g3",)


def test_two_lost_nodes_beside_a_primary_are_both_started() -> None:
    nodes = [synced("g1", size=1), killed("g2", None), clean("g3", 12)]
    assert decide(nodes, NOW).nodes == ("g2", "g3")


def test_a_joining_node_is_waited_for() -> None:
    joining = NodeObservation("g3", True, LiveStatus(False, "Primary", 3, "Joining", UUID, 0))
    assert decide([synced("g1"), synced("g2"), joining], NOW).kind is DecisionKind.WAIT


def test_two_primary_components_of_different_clusters_hold() -> None:
    other = NodeObservation("g3", True, LiveStatus(True, "Primary", 1, "Synced", OTHER, 5))
    decision = decide([synced("g1", size=2), synced("g2", size=2), other], NOW)
    assert decision.kind is DecisionKind.HOLD
    assert OTHER in decision.alert and "g3: running: Primary" in decision.alert


# ---- full outage: every ordering of which node was last ------------------------------------------


def _outage(order: tuple[str, ...], clean_stop: bool, recovered: bool = True) -> list[NodeObservation]:
    """The three nodes after they went down one by one in ``order`` (the last one last).

    Writes went on while nodes went down: each node's last seqno is 100 + 10 * its rank in ``order``
    (the last down saw most). Killed: seqno -1 with the recovered position; a clean stop: the seqno, and
    safe_to_bootstrap on the last.
    """
    nodes = []
    for name in NAMES:
        rank = order.index(name)
        seqno = 100 + 10 * rank
        if clean_stop:
            nodes.append(clean(name, seqno, safe=rank == len(order) - 1))
        else:
            nodes.append(killed(name, seqno if recovered else None))
    return nodes


@pytest.mark.parametrize("order", list(itertools.permutations(NAMES)), ids="-".join)
@pytest.mark.parametrize("clean_stop", [False, True], ids=["killed", "clean-stop"])
def test_full_outage_bootstraps_exactly_the_last_node(order: tuple[str, ...], clean_stop: bool) -> None:
    decision = decide(_outage(order, clean_stop), NOW)
    assert decision.kind is DecisionKind.BOOTSTRAP, decision.alert
    assert decision.nodes == (order[-1],)
    assert decision.position == Position(UUID, 120)


@pytest.mark.parametrize("order", list(itertools.permutations(NAMES)), ids="-".join)
def test_killed_nodes_positions_are_read_before_anything_starts(order: tuple[str, ...]) -> None:
    decision = decide(_outage(order, clean_stop=False, recovered=False), NOW)
    assert decision.kind is DecisionKind.RECOVER
    assert decision.nodes == NAMES


@pytest.mark.parametrize("last", NAMES)
def test_two_last_nodes_killed_together_tie_and_either_is_the_same_data(last: str) -> None:
    first = next(n for n in NAMES if n != last)
    nodes = [killed(n, 50 if n == first else 80) for n in NAMES]
    decision = decide(nodes, NOW)
    assert decision.kind is DecisionKind.BOOTSTRAP
    assert decision.nodes[0] != first
    assert decision.nodes == (min(n for n in NAMES if n != first),)  # deterministic among equals
    assert "equal on" in decision.reason


def test_a_mix_of_clean_and_killed_nodes_picks_the_highest_position() -> None:
    nodes = [clean("g1", 90), killed("g2", 95), clean("g3", 93)]
    assert decide(nodes, NOW).nodes == ("g2",)


def test_safe_to_bootstrap_wins_over_names_on_a_tie() -> None:
    nodes = [clean("g1", 90), clean("g2", 90), clean("g3", 90, safe=True)]
    assert decide(nodes, NOW).nodes == ("g3",)


def test_safe_to_bootstrap_on_a_node_behind_another_holds() -> None:
    # An operator (or a broken agent) set the flag on the wrong node: an older seqno must never win.
    nodes = [clean("g1", 70, safe=True), killed("g2", 90), clean("g3", 80)]
    decision = decide(nodes, NOW)
    assert decision.kind is DecisionKind.HOLD
    assert "g1 is marked safe_to_bootstrap but another node is ahead" in decision.reason


def test_two_nodes_marked_safe_to_bootstrap_hold() -> None:
    nodes = [clean("g1", 90, safe=True), clean("g2", 90, safe=True), clean("g3", 80)]
    assert decide(nodes, NOW).kind is DecisionKind.HOLD


def test_nodes_of_different_clusters_hold() -> None:
    nodes = [killed("g1", 90), killed("g2", 95, uuid=OTHER), killed("g3", 80)]
    decision = decide(nodes, NOW)
    assert decision.kind is DecisionKind.HOLD
    assert UUID in decision.reason and OTHER in decision.reason


def test_a_node_with_no_state_does_not_vote_and_joins_later() -> None:
    empty = NodeObservation(
        "g3", False, grastate=GraState(ZERO_UUID, -1, False), recovered=Position(ZERO_UUID, -1)
    )
    decision = decide([killed("g1", 90), killed("g2", 95), empty], NOW)
    assert decision.nodes == ("g2",)


def test_no_node_with_state_holds() -> None:
    empty = [
        NodeObservation(n, False, grastate=GraState(ZERO_UUID, -1, False), recovered=Position(ZERO_UUID, -1))
        for n in NAMES
    ]
    assert decide(empty, NOW).kind is DecisionKind.HOLD


# ---- a node that cannot be read: hold, one alert, the operator's command -------------------------


def test_an_unreachable_node_holds_with_every_nodes_state_and_the_command() -> None:
    nodes = [killed("g1", 90), NodeObservation("g2", None, error="ssh: no route to host"), killed("g3", 95)]
    decision = decide(nodes, NOW)
    assert decision.kind is DecisionKind.HOLD
    assert decision.nodes == ()
    alert = decision.alert
    assert (
        "g1: stopped: grastate " + UUID + ":-1 safe_to_bootstrap 0, recovered position " + UUID + ":90"
        in alert
    )
    assert "g2: unreadable (ssh: no route to host)" in alert
    assert "g3: stopped" in alert and ":95" in alert
    assert "mariadbd --wsrep-recover" in alert and "galera_new_cluster" in alert


def test_an_unreadable_grastate_holds() -> None:
    nodes = [killed("g1", 90), NodeObservation("g2", False, error="Permission denied"), killed("g3", 95)]
    decision = decide(nodes, NOW)
    assert decision.kind is DecisionKind.HOLD
    assert "g2: stopped, grastate.dat unreadable (Permission denied)" in decision.alert


def test_a_failed_recovery_holds_instead_of_guessing() -> None:
    broken = NodeObservation("g2", False, grastate=GraState(UUID, -1, False), error="InnoDB: corrupt page")
    decision = decide([killed("g1", 90), broken, killed("g3", 95)], NOW)
    assert decision.kind is DecisionKind.HOLD
    assert "--wsrep-recover failed (InnoDB: corrupt page)" in decision.alert


def test_a_running_node_that_does_not_answer_is_waited_for_then_held() -> None:
    mute = NodeObservation("g3", True, unreadable_since=NOW - 10)
    nodes = [killed("g1", 90), killed("g2", 95), mute]
    assert decide(nodes, NOW).kind is DecisionKind.WAIT
    later = decide(nodes, NOW + 200, GaleraSettings(unreadable_hold_s=120))
    assert later.kind is DecisionKind.HOLD
    assert "g3: running, SQL not answering" in later.alert


def test_survivors_without_quorum_make_the_best_one_primary_in_place() -> None:
    nonprim = NodeObservation("g2", True, LiveStatus(False, "non-Primary", 1, "Initialized", UUID, 96))
    decision = decide([killed("g1", 90), nonprim, killed("g3", 95)], NOW)
    assert decision.kind is DecisionKind.BOOTSTRAP
    assert decision.nodes == ("g2",) and "in place" in decision.reason


def test_a_duplicate_node_name_holds() -> None:
    assert decide([killed("g1", 1), killed("g1", 2)], NOW).kind is DecisionKind.HOLD


# ---- properties ------------------------------------------------------------------------------------

_node_state = st.one_of(
    st.builds(lambda s: ("killed", s), st.integers(0, 50)),
    st.builds(lambda s, safe: ("clean", s, safe), st.integers(0, 50), st.booleans()),
    st.just(("unreachable",)),
    st.just(("unrecovered",)),
)


def _build(name: str, state: tuple[object, ...]) -> NodeObservation:
    if state[0] == "killed":
        return killed(name, int(state[1]))  # type: ignore[call-overload]
    if state[0] == "clean":
        return clean(name, int(state[1]), bool(state[2]))  # type: ignore[call-overload]
    if state[0] == "unreachable":
        return NodeObservation(name, None, error="down")
    return killed(name, None)


@given(st.lists(_node_state, min_size=1, max_size=5))
def test_a_bootstrap_is_only_ever_from_a_highest_position_with_every_node_read(
    states: list[tuple[object, ...]],
) -> None:
    nodes = [_build(f"g{i}", s) for i, s in enumerate(states)]
    decision = decide(nodes, NOW)
    if any(s[0] == "unreachable" for s in states):
        assert decision.kind is DecisionKind.HOLD
        return
    if any(s[0] == "unrecovered" for s in states):
        assert decision.kind is DecisionKind.RECOVER
        return
    if decision.kind is DecisionKind.BOOTSTRAP:
        assert decision.position is not None
        best = max(int(s[1]) for s in states)  # type: ignore[call-overload]
        assert decision.position.seqno == best
        assert sum(1 for s in states if s[0] == "clean" and s[2]) <= 1
    else:
        assert decision.kind is DecisionKind.HOLD
        assert "safe_to_bootstrap" in decision.reason
