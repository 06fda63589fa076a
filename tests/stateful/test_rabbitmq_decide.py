"""RabbitMQ recovery decisions (haven.stateful.rabbitmq.decide): a table of node states, pure, no server.

Every case names the cluster's nodes' states and what haven must do: start, restart one node's app,
wait, hold (with an alert naming each node's state and the operator's command), or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from haven.stateful.rabbitmq import (
    ClusterStatus,
    DecisionKind,
    NodeObservation,
    PastStep,
    RabbitSettings,
    decide,
    hold_if_stuck,
    keep_side,
    partition_handling_of,
    partition_handling_of_erlang,
    partition_handling_of_files,
)
from haven.stateful.rabbitmq_node import parse_atoms

A, B, C, D, E = (f"rabbit-{i}@h" for i in range(1, 6))
NOW = 1000.0
SETTINGS = RabbitSettings(partition_grace_s=10.0, unreadable_hold_s=60.0)


def up(name: str, sees: Sequence[str], **partitions: Sequence[str]) -> NodeObservation:
    """A running node that sees ``sees`` running; ``partitions``: reporter (a/b/c...) -> partitioned from."""
    names = {"a": A, "b": B, "c": C, "d": D, "e": E}
    parts = {names[k]: tuple(names[v] for v in others) for k, others in partitions.items()}
    return NodeObservation(name, True, ClusterStatus(tuple(names[s] for s in sees), parts))


def down(name: str) -> NodeObservation:
    return NodeObservation(name, False)


def mute(name: str, since: float) -> NodeObservation:
    return NodeObservation(name, True, error="rabbitmqctl: nodedown", unreadable_since=since)


def unknown(name: str) -> NodeObservation:
    return NodeObservation(name, None, error="ssh: no route to host")


@dataclass(frozen=True)
class Case:
    id: str
    nodes: list[NodeObservation]
    kind: DecisionKind
    targets: tuple[str, ...] = ()
    partitioned_since: float | None = None
    kept: tuple[str, ...] | None = None


WHOLE = "abc"
CASES = [
    Case("whole cluster: nothing", [up(A, WHOLE), up(B, WHOLE), up(C, WHOLE)], DecisionKind.NOTHING),
    Case("one node down: start it", [up(A, "ab"), up(B, "ab"), down(C)], DecisionKind.START, (C,)),
    Case("two down: both started", [down(A), up(B, "b"), down(C)], DecisionKind.START, (A, C)),
    Case("all down (full outage): all started", [down(A), down(B), down(C)], DecisionKind.START, (A, B, C)),
    Case(
        "down beside a partition: the start comes first",
        [up(A, "a", a="b"), up(B, "b", b="a"), down(C)],
        DecisionKind.START,
        (C,),
        NOW - 100,
    ),
    Case(
        "a node booting (mute, young): wait", [up(A, "ab"), up(B, "ab"), mute(C, NOW - 5)], DecisionKind.WAIT
    ),
    Case("a node mute past the hold: hold", [up(A, "ab"), up(B, "ab"), mute(C, NOW - 61)], DecisionKind.HOLD),
    Case("a node unreadable: hold at once", [up(A, WHOLE), up(B, WHOLE), unknown(C)], DecisionKind.HOLD),
    Case(
        "unreadable beats a stopped node: hold, nothing started",
        [down(A), up(B, "bc"), unknown(C)],
        DecisionKind.HOLD,
    ),
    Case(
        "a node not seen by the others yet: wait", [up(A, "ab"), up(B, "ab"), up(C, WHOLE)], DecisionKind.WAIT
    ),
    Case(
        "a partition inside its grace: wait",
        [up(A, "ab", a="c", b="c"), up(B, "ab", a="c", b="c"), up(C, "c", c="ab")],
        DecisionKind.WAIT,
        (),
        NOW - 9,
    ),
    Case(
        "a partition first seen now: wait",
        [up(A, "ab", a="c", b="c"), up(B, "ab", a="c", b="c"), up(C, "c", c="ab")],
        DecisionKind.WAIT,
    ),
    Case(
        "two against one past the grace: restart the one",
        [up(A, "ab", a="c", b="c"), up(B, "ab", a="c", b="c"), up(C, "c", c="ab")],
        DecisionKind.RESTART,
        (C,),
        NOW - 10,
        (A, B),
    ),
    Case(
        "the first node alone against two: the first node restarted (the larger side wins)",
        [up(A, "a", a="bc"), up(B, "bc", b="a", c="a"), up(C, "bc", b="a", c="a")],
        DecisionKind.RESTART,
        (A,),
        NOW - 60,
        (B, C),
    ),
    Case(
        "only one side reports (the other forgot): the same split",
        [up(A, "ab"), up(B, "ab"), up(C, "c", c="ab")],
        DecisionKind.RESTART,
        (C,),
        NOW - 60,
        (A, B),
    ),
    Case(
        "every node alone: keep the first, restart the next by name",
        [up(A, "a", a="bc"), up(B, "b", b="ac"), up(C, "c", c="ab")],
        DecisionKind.RESTART,
        (B,),
        NOW - 60,
        (A,),
    ),
    Case(
        "after B restarted, A and C still warn: keep A and B (tie, first node), restart C",
        [up(A, "abc", a="bc", c="ab"), up(B, "abc", a="bc", c="ab"), up(C, "abc", a="bc", c="ab")],
        DecisionKind.RESTART,
        (C,),
        NOW - 60,
        (A, B),
    ),
    Case(
        "only the kept node still warns of the restarted ones: it is restarted to clear it",
        [up(A, "abc", a="bc"), up(B, "abc", a="bc"), up(C, "abc", a="bc")],
        DecisionKind.RESTART,
        (A,),
        NOW - 60,
        (B, C),
    ),
    Case(
        "a partition and a mute node: wait (nothing restarted while a node is not known)",
        [up(A, "ab", a="c"), up(B, "ab"), mute(C, NOW - 5)],
        DecisionKind.WAIT,
        (),
        NOW - 60,
    ),
    Case(
        "two against two (4 nodes): the side holding the first node kept",
        [up(A, "ab", a="cd"), up(B, "ab", b="cd"), up(C, "cd", c="ab"), up(D, "cd", d="ab")],
        DecisionKind.RESTART,
        (C,),
        NOW - 60,
        (A, B),
    ),
    Case(
        "three against two (5 nodes): a node of the two restarted",
        [
            up(A, "ab", a="cde"),
            up(B, "ab", b="cde"),
            up(C, "cde", c="ab"),
            up(D, "cde", d="ab"),
            up(E, "cde", e="ab"),
        ],
        DecisionKind.RESTART,
        (A,),
        NOW - 60,
        (C, D, E),
    ),
    Case(
        "a report naming a node outside the cluster is ignored",
        [up(A, WHOLE, a=()), up(B, WHOLE), up(C, WHOLE, c=("d",))],
        DecisionKind.NOTHING,
    ),
    Case("a node listed twice: hold", [up(A, "ab"), up(A, "ab")], DecisionKind.HOLD),
    Case("no node: hold", [], DecisionKind.HOLD),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decide(case: Case) -> None:
    decision = decide(case.nodes, NOW, case.partitioned_since, SETTINGS)
    assert decision.kind is case.kind, decision.reason
    assert decision.nodes == case.targets
    if case.kept is not None:
        assert decision.kept == case.kept
    if decision.kind is DecisionKind.RESTART:
        assert len(decision.nodes) == 1  # one node at a time, never a majority
        assert 2 * len(decision.nodes) < len(case.nodes)


def test_a_hold_names_each_nodes_state_and_the_operators_commands() -> None:
    nodes = [up(A, "ab", a="c"), down(B), unknown(C)]
    decision = decide(nodes, NOW, NOW - 60, SETTINGS)
    assert decision.kind is DecisionKind.HOLD
    assert f"{A}: running, sees {A}, {B}; partitioned from {C}" in decision.alert
    assert f"{B}: stopped" in decision.alert
    assert f"{C}: unreadable (ssh: no route to host)" in decision.alert
    assert "rabbitmqctl -n NODE stop_app" in decision.alert and "start_app" in decision.alert
    assert "Nothing was started or restarted" in decision.alert


def test_alarms_are_reported_not_acted_on() -> None:
    status = ClusterStatus((A, B), {}, ("memory@rabbit-1@h",))
    nodes = [NodeObservation(A, True, status), NodeObservation(B, True, ClusterStatus((A, B)))]
    decision = decide(nodes, NOW, None, SETTINGS)
    assert decision.kind is DecisionKind.NOTHING
    assert "alarms memory@rabbit-1@h" in dict(decision.states)[A]


def test_the_same_observations_give_the_same_decision() -> None:
    nodes = [up(A, "a", a="bc"), up(B, "b", b="ac"), up(C, "c", c="ab")]
    decisions = [decide(list(order), NOW, 0.0, SETTINGS) for order in (nodes, nodes[::-1])]
    assert len({(d.kind, d.nodes, d.kept) for d in decisions}) == 1


def test_a_stale_warning_waits_until_every_node_sees_every_other() -> None:
    nodes = [up(A, "abc", a="b"), up(B, "abc"), up(C, "bc")]  # A's claim is stale; C does not see A
    assert decide(nodes, NOW, NOW - 60, SETTINGS).kind is DecisionKind.WAIT


def test_a_restart_of_the_same_node_is_not_decided_twice_in_the_3_way_sequence() -> None:
    """The whole sequence after every node split apart: B, then C, then A's stale warning: 3 restarts."""
    first = [up(A, "a", a="bc"), up(B, "b", b="ac"), up(C, "c", c="ab")]
    second = [up(A, "abc", a="bc", c="ab"), up(B, "abc", a="bc", c="ab"), up(C, "abc", a="bc", c="ab")]
    third = [up(A, "abc", a="bc"), up(B, "abc", a="bc"), up(C, "abc", a="bc")]
    done = [up(A, "abc"), up(B, "abc"), up(C, "abc")]
    made = [decide(step, NOW, NOW - 60, SETTINGS) for step in (first, second, third, done)]
    assert [(d.kind, d.nodes) for d in made] == [
        (DecisionKind.RESTART, (B,)), (DecisionKind.RESTART, (C,)), (DecisionKind.RESTART, (A,)),
        (DecisionKind.NOTHING, ()),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("edges", "kept"),
    [
        (set(), (A, B, C)),
        ({(A, C)}, (A, B)),  # a partial partition: B sees both; the side with A and B kept
        ({(A, B), (A, C), (B, C)}, (A,)),
        ({(A, B), (A, C)}, (B, C)),
    ],
)
def test_keep_side(edges: set[tuple[str, str]], kept: tuple[str, ...]) -> None:
    assert keep_side([C, B, A], edges) == kept


# ---- caps and partition handling modes (issue 12, correctness) --------------------------------------

PAUSE = RabbitSettings(partition_grace_s=10.0, unreadable_hold_s=60.0, partition_handling="pause_minority")
SPLIT = [up(A, "ab", a="c"), up(B, "ab", b="c"), up(C, "c", c="ab")]


def test_a_live_partition_under_pause_minority_holds_where_ignore_restarts() -> None:
    assert decide(SPLIT, NOW, NOW - 11, SETTINGS).kind is DecisionKind.RESTART
    held = decide(SPLIT, NOW, NOW - 11, PAUSE)
    assert held.kind is DecisionKind.HOLD and held.nodes == ()
    assert "pause_minority" in held.alert and "rabbitmqctl -n NODE stop_app" in held.alert
    assert decide(SPLIT, NOW, NOW - 5, PAUSE).kind is DecisionKind.WAIT  # inside its grace: wait


def test_a_stale_warning_under_pause_minority_is_still_cleared() -> None:
    """C paused and resumed (its app restarted: it forgot); A still names it: nothing to discard."""
    nodes = [up(A, WHOLE, a="c"), up(B, WHOLE), up(C, WHOLE)]
    decision = decide(nodes, NOW, NOW - 11, PAUSE)
    assert decision.kind is DecisionKind.RESTART and decision.nodes == (A,)


def test_a_paused_node_is_held_with_the_reason_and_never_restarted() -> None:
    nodes = [up(A, "ab"), up(B, "ab"), mute(C, NOW - 61)]
    held = decide(nodes, NOW, None, PAUSE)
    assert held.kind is DecisionKind.HOLD and "pauses" in held.alert and "resumes by itself" in held.alert
    assert decide([up(A, "ab"), up(B, "ab"), mute(C, NOW - 5)], NOW, None, PAUSE).kind is DecisionKind.WAIT


def test_a_restart_is_capped_per_node_over_the_window() -> None:
    restart = decide(SPLIT, NOW, NOW - 11, SETTINGS)
    steps = [PastStep("restart", C, "done", "", NOW - t) for t in (500, 300, 100)]
    held = hold_if_stuck(restart, SPLIT, steps, NOW, SETTINGS)
    assert held.kind is DecisionKind.HOLD and f"{C}'s app was restarted 3 times" in held.alert
    assert f"rabbitmqctl -n {C} stop_app" in held.alert
    assert hold_if_stuck(restart, SPLIT, steps[1:], NOW, SETTINGS) is restart  # two: restarted again
    old = [PastStep("restart", C, "done", "", NOW - 700), *steps[1:]]  # one of them out of the window
    assert hold_if_stuck(restart, SPLIT, old, NOW, SETTINGS) is restart
    others = [PastStep("restart", B, "done", "", NOW - t) for t in (500, 300, 100)]
    assert hold_if_stuck(restart, SPLIT, others, NOW, SETTINGS) is restart  # another node's restarts


@pytest.mark.parametrize(
    ("conf", "mode"),
    [
        ("", "ignore"),
        ("cluster_partition_handling = pause_minority\n", "pause_minority"),
        ("listeners.tcp.default = 5672\ncluster_partition_handling=autoheal # healed\n", "autoheal"),
        ("# cluster_partition_handling = pause_minority\n", "ignore"),
    ],
)
def test_the_partition_handling_is_read_from_rabbitmq_conf(conf: str, mode: str) -> None:
    assert partition_handling_of(conf) == mode


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("['rabbit-1@localhost','rabbit-2@localhost']\n", ("rabbit-1@localhost", "rabbit-2@localhost")),
        ("[rabbit@h2]\n", ("rabbit@h2",)),
        ("[]\n", ()),
    ],
)
def test_the_nodes_an_eval_names_are_read(text: str, found: tuple[str, ...]) -> None:
    peers = ["rabbit-1@localhost", "rabbit-2@localhost", "rabbit@h2"]
    assert parse_atoms(text, peers) == found


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("[{rabbit, [{cluster_partition_handling, pause_minority}]}].\n", "pause_minority"),
        (
            "%% classic\n[{rabbit, [{tcp_listeners, [5672]},\n  {cluster_partition_handling,\n"
            "   {pause_if_all_down, ['rabbit@a', 'rabbit@b'], ignore}}]},\n {kernel, []}].\n",
            "pause_if_all_down",
        ),
        (
            "[{rabbit, [{cluster_partition_handling, autoheal}]}]. % {cluster_partition_handling, x}\n",
            "autoheal",
        ),
        ('[{rabbit, [{loopback_users, [<<"guest">>]}]}].\n', None),
        ("%% {cluster_partition_handling, pause_minority}\n[].\n", None),
        ("", None),
    ],
)
def test_the_partition_handling_is_read_from_an_erlang_term_config(text: str, mode: str | None) -> None:
    assert partition_handling_of_erlang(text) == mode


@pytest.mark.parametrize(
    "text",
    [
        "[{rabbit, [{cluster_partition_handling, pause_minority}]}]\n",  # no final dot
        "[{rabbit, [{cluster_partition_handling, pause_minority}]].\n",  # unbalanced
        "[{rabbit, [{cluster_partition_handling, 'pause_minority}]}].\n",  # unclosed quote
        '[{rabbit, [{cluster_partition_handling, "pause_minority"}]}].\n',  # a string, not an atom
    ],
)
def test_an_erlang_term_config_that_cannot_be_parsed_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        partition_handling_of_erlang(text)


def test_advanced_config_overrides_rabbitmq_conf() -> None:
    conf = "cluster_partition_handling = ignore\n"
    advanced = ("advanced.config", "[{rabbit, [{cluster_partition_handling, pause_minority}]}].")
    assert partition_handling_of_files(conf, [advanced]) == "pause_minority"
    assert partition_handling_of_files(conf, [("advanced.config", "[].")]) == "ignore"
    with pytest.raises(ValueError, match=r"advanced\.config"):
        partition_handling_of_files(conf, [("advanced.config", "[{rabbit, [")])
