"""RabbitMQ's recovery loop with fake nodes and a real store; [stateful.rabbitmq] in haven.toml.

The loop's own contract, without servers (test_rabbitmq_real.py runs the same RabbitRecovery on a real
cluster): intent committed before the effect and outcome after, a step a stopped engine left
``issued`` finished from the node's state now (a restart cut between stop_app and start_app is
completed, nothing else is made twice), one rabbitmq_hold alert per hold, cleared when it ends, and a
deposed leader makes no effect. The config's mistakes are named (key and fix) before anything opens.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.domain.clock import RealClock
from haven.domain.errors import ConfigError, Deposed, TemporaryError
from haven.domain.galera import GaleraAction
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.service.config import load_config
from haven.stateful.rabbitmq import ClusterStatus, DecisionKind, RabbitSettings
from haven.stateful.rabbitmq_queues import QueueRead, QueueSettings
from haven.stateful.rabbitmq_recovery import APP_STOPPED, RabbitRecovery, journal_key
from haven.stateful.serving import RabbitService
from haven.store import Store

A, B, C = "rabbit-1@h", "rabbit-2@h", "rabbit-3@h"


class FakeNode:
    """A node whose VM, app and view of the cluster the test sets; it records what haven did to it."""

    def __init__(self, name: str, cluster: list[FakeNode]) -> None:
        self.name, self.cluster = name, cluster
        self.vm, self.app, self.readable = True, True, True
        self.partitioned_from: tuple[str, ...] = ()
        self.calls: list[str] = []
        self.queues_take_s = 0.0

    async def running(self) -> bool:
        if not self.readable:
            raise TemporaryError("ssh: no route to host")
        return self.vm

    async def status(self) -> ClusterStatus:
        if not self.app:
            raise TemporaryError(f"rabbitmqctl cluster_status: this command {APP_STOPPED} on the node")
        sees = tuple(n.name for n in self.cluster if n.vm and n.app and n.name not in self.partitioned_from)
        return ClusterStatus(sees, {self.name: self.partitioned_from} if self.partitioned_from else {})

    async def start(self) -> None:
        self.calls.append("start")
        self.vm = True

    async def restart_app(self) -> None:
        self.calls.append("restart_app")
        self.partitioned_from = ()
        for other in self.cluster:
            other.partitioned_from = tuple(n for n in other.partitioned_from if n != self.name)

    async def start_app(self) -> None:
        self.calls.append("start_app")
        self.app = True

    async def queues(self, timeout_s: float | None = None) -> QueueRead:
        self.calls.append("queues")
        await asyncio.sleep(self.queues_take_s)  # a hung queue, a stopped peer: ignores timeout_s
        return QueueRead(3, 0, 0)

    async def reachable(self, peers: list[str]) -> tuple[str, ...]:  # Erlang distribution, app or not
        return tuple(
            n.name for n in self.cluster
            if n.name in peers and n.vm and n.name not in self.partitioned_from
            and self.name not in n.partitioned_from
        )  # fmt: skip


def _cluster() -> list[FakeNode]:
    nodes: list[FakeNode] = []
    nodes.extend(FakeNode(name, nodes) for name in (A, B, C))
    return nodes


def _loop(nodes: list[FakeNode], store: Store, epoch: int | None = None) -> RabbitRecovery:
    settings = RabbitSettings(partition_grace_s=0.0, unreadable_hold_s=60.0)
    return RabbitRecovery.on_store(nodes, store, "mq", RealClock(), epoch=epoch, settings=settings)


def test_a_stopped_node_is_started_with_its_step_journaled() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[2].vm = False
    decision = asyncio.run(_loop(nodes, store).run_pass())
    assert decision.kind is DecisionKind.START and nodes[2].calls == ["start"]
    steps = store.galera_actions_since(journal_key("mq"))
    assert [(s.kind, s.node, s.state) for s in steps] == [("start", C, "done")]
    assert store.galera_actions_since("mq") == []  # a Galera cluster named mq has its own steps
    assert asyncio.run(_loop(nodes, store).run_pass()).kind is DecisionKind.NOTHING


def test_a_partition_is_healed_by_restarting_the_isolated_node_only() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[0].partitioned_from = nodes[1].partitioned_from = (C,)
    nodes[2].partitioned_from = (A, B)
    loop = _loop(nodes, store)
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.RESTART
    assert [n.calls for n in nodes] == [[], [], ["restart_app"]]
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING


def test_the_queues_are_read_once_the_cluster_is_whole_never_across_a_partition() -> None:
    """A read asks every node's queues through RabbitMQ's delegates: across a partition its
    connections would mend the split under the decision (a real heal took three restarts, not one)."""
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[1].partitioned_from = nodes[2].partitioned_from = (A,)
    nodes[0].partitioned_from = (B, C)  # A, the first by name, is cut off: its app is restarted
    settings = RabbitSettings(partition_grace_s=0.0)
    loop = RabbitRecovery.on_store(nodes, store, "mq", RealClock(), settings=settings, queues=QueueSettings())
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.RESTART
    assert [n.calls for n in nodes] == [["restart_app"], [], []]
    assert loop.queue_error is not None and "whole" in loop.queue_error
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING
    assert nodes[0].calls == ["restart_app", "queues"] and loop.queue_health is not None


def test_a_queues_read_past_its_deadline_fails_fast_and_keeps_the_alerts() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    queues = QueueSettings(unacked_min=1, unacked_window_s=0, read_timeout_s=0.3)
    loop = RabbitRecovery.on_store(nodes, store, "mq", RealClock(), queues=queues)
    store.raise_alert(
        Alert("b1", AlertKind.RABBITMQ_BACKLOG, "backlog", 1.0, host=HostName("mq:unacked:/:q"))
    )
    for node in nodes:
        node.queues_take_s = 30.0
    began = time.monotonic()
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING  # only a whole cluster is read
    took = time.monotonic() - began
    assert nodes[0].calls == ["queues"]
    assert took < 5 and "no answer in 0.3 s" in loop.queue_error  # not erl_call's 30 s
    backlogs = [str(x.host) for x in store.list_alerts() if x.kind is AlertKind.RABBITMQ_BACKLOG]
    assert backlogs == ["mq:unacked:/:q"]  # a failed read says nothing drained


def test_an_unfinished_restart_cut_after_stop_app_is_completed_by_start_app_once() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[2].app = False  # haven stopped between stop_app and start_app
    store.issue_galera_action(GaleraAction("x1", journal_key("mq"), "restart", C, "partitioned", "", 1.0))
    decision = asyncio.run(_loop(nodes, store).run_pass())
    assert nodes[2].calls == ["start_app"] and decision.kind is DecisionKind.NOTHING
    assert [(s.id, s.state) for s in store.galera_actions_since(journal_key("mq"))] == [("x1", "done")]


def test_an_unfinished_start_whose_node_runs_is_done_and_not_made_again() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    store.issue_galera_action(GaleraAction("x2", journal_key("mq"), "start", B, "down", "", 1.0))
    asyncio.run(_loop(nodes, store).run_pass())
    assert all(n.calls == [] for n in nodes)
    assert [(s.id, s.state) for s in store.galera_actions_since(journal_key("mq"))] == [("x2", "done")]


def test_a_restart_whose_start_app_fails_is_completed_by_the_next_pass() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[0].partitioned_from = nodes[1].partitioned_from = (C,)
    nodes[2].partitioned_from = (A, B)
    victim = nodes[2]

    async def restart_app() -> None:  # stop_app made, start_app timed out
        victim.calls.append("restart_app")
        victim.app, victim.partitioned_from = False, ()
        nodes[0].partitioned_from = nodes[1].partitioned_from = ()
        raise TemporaryError("rabbitmqctl start_app on rabbit-3: no answer in 120 s")

    victim.restart_app = restart_app  # type: ignore[method-assign]
    loop = _loop(nodes, store)
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.RESTART
    steps = store.galera_actions_since(journal_key("mq"))
    assert [(s.kind, s.state) for s in steps] == [("restart", "issued")]  # left for the resume
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING
    assert victim.calls == ["restart_app", "start_app"] and victim.app
    assert [s.state for s in store.galera_actions_since(journal_key("mq"))] == ["done"]


def test_a_restart_whose_start_app_keeps_failing_holds_naming_the_node() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[2].app = False  # haven stopped between stop_app and start_app; start_app now fails each time

    async def start_app() -> None:
        nodes[2].calls.append("start_app")
        raise TemporaryError("rabbitmqctl start_app on rabbit-3: eaddrinuse")

    nodes[2].start_app = start_app  # type: ignore[method-assign]
    store.issue_galera_action(
        GaleraAction("x3", journal_key("mq"), "restart", C, "partitioned", "", time.time())
    )
    loop = _loop(nodes, store)
    kinds = [asyncio.run(loop.run_pass()).kind for _ in range(5)]
    assert nodes[2].calls == ["start_app"] * 3  # RabbitSettings.start_attempts
    assert kinds == [DecisionKind.WAIT, DecisionKind.WAIT] + [DecisionKind.HOLD] * 3
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and f"rabbitmqctl -n {C} start_app" in held[0].message
    assert "eaddrinuse" in held[0].message


def test_a_node_that_stops_after_each_start_holds_after_three_starts() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[2].vm = False

    async def start() -> None:  # rabbitmq-server spawned, exits at once
        nodes[2].calls.append("start")

    nodes[2].start = start  # type: ignore[method-assign]
    loop = _loop(nodes, store)
    kinds = [asyncio.run(loop.run_pass()).kind for _ in range(10)]
    assert kinds == [DecisionKind.START] * 3 + [DecisionKind.HOLD] * 7
    assert nodes[2].calls == ["start"] * 3
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and f"{C} was started 3 times" in held[0].message
    assert f"rabbitmqctl -n {C} cluster_status" in held[0].message
    nodes[2].vm = True  # the operator fixed it and started it
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING
    assert not [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]


def test_a_node_whose_restarts_do_not_end_the_partition_holds_after_three_restarts() -> None:
    """Each restart returns, and rabbit-3 is partitioned again at once (a link that keeps failing)."""
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[0].partitioned_from = nodes[1].partitioned_from = (C,)
    nodes[2].partitioned_from = (A, B)

    async def restart_app() -> None:  # stop_app, start_app: the partition comes back with the app
        nodes[2].calls.append("restart_app")

    nodes[2].restart_app = restart_app  # type: ignore[method-assign]
    loop = _loop(nodes, store)
    kinds = [asyncio.run(loop.run_pass()).kind for _ in range(8)]
    assert kinds == [DecisionKind.RESTART] * 3 + [DecisionKind.HOLD] * 5
    assert nodes[2].calls == ["restart_app"] * 3 and nodes[0].calls == nodes[1].calls == []
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and f"{C}'s app was restarted 3 times" in held[0].message
    assert "a partition was reported again" in held[0].message  # its last error: none, each returned
    assert f"rabbitmqctl -n {C} stop_app" in held[0].message and f"{A}, {B}" in held[0].message
    for node in nodes:  # the link mended: RabbitMQ's own view is whole again
        node.partitioned_from = ()
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING
    assert not [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]


@pytest.mark.parametrize("mode", ["pause_minority", "pause_if_all_down"])
def test_a_partition_that_persists_under_pause_minority_holds_and_restarts_nothing(mode: str) -> None:
    """Every node runs its app and Mnesia stays partitioned: the mode will not end it; haven holds."""
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[0].partitioned_from = nodes[1].partitioned_from = (C,)
    nodes[2].partitioned_from = (A, B)
    settings = RabbitSettings(partition_grace_s=0.0, partition_handling=mode)
    loop = RabbitRecovery.on_store(nodes, store, "mq", RealClock(), settings=settings)
    assert [asyncio.run(loop.run_pass()).kind for _ in range(3)] == [DecisionKind.HOLD] * 3
    assert all(n.calls == [] for n in nodes)
    assert store.galera_actions_since(journal_key("mq")) == []
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and f"under {mode}" in held[0].message
    assert (
        "Recovering From a Split-Brain" in held[0].message
        and f"the largest here: {A}, {B}" in held[0].message
    )
    assert f"others ({C})" in held[0].message


def test_an_unreadable_node_holds_with_one_alert_then_clears_it() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[1].readable = False
    nodes[2].vm = False
    loop = _loop(nodes, store)
    for _ in range(3):
        assert asyncio.run(loop.run_pass()).kind is DecisionKind.HOLD
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and held[0].host == "mq"
    assert (
        f"{B}: unreadable (ssh: no route to host)" in held[0].message and f"{C}: stopped" in held[0].message
    )
    assert nodes[2].calls == []  # a hold starts nothing, not even the stopped node
    nodes[1].readable = True
    assert asyncio.run(loop.run_pass()).kind is DecisionKind.START
    assert not [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]


def test_a_deposed_loop_makes_no_effect() -> None:
    nodes = _cluster()
    nodes[2].vm = False

    class DeposedJournal:
        def issue(self, action: GaleraAction) -> None:
            raise Deposed("epoch 1 < 2", 1, 2)

        def finish(self, action_id: str, state: str, error: str, position: str | None = None) -> None:
            raise AssertionError("nothing to finish")

        def unfinished(self) -> list[GaleraAction]:
            return []

        def actions(self, after: float = 0.0) -> list[GaleraAction]:
            return []

    class Alerts:
        def hold(self, text: str) -> None: ...

        def clear(self) -> None: ...

    loop = RabbitRecovery(nodes, DeposedJournal(), Alerts(), RealClock(), "mq")
    asyncio.run(loop.run_pass())
    assert nodes[2].calls == []
    assert "deposed" in asyncio.run(loop.run_pass()).reason


# ---- [stateful.rabbitmq] -----------------------------------------------------------------------


def _nodes(tmp_path: Path) -> str:
    out = ""
    for i in (1, 2, 3):
        (tmp_path / f"n{i}").mkdir(exist_ok=True)
        (tmp_path / f"n{i}" / "rabbitmq.conf").write_text("cluster_partition_handling = ignore\n")
        out += (
            f'[[stateful.rabbitmq.nodes]]\nname = "rabbit-{i}@localhost"\nfolder = "{tmp_path}/n{i}"\n'
            f"amqp_port = {5670 + i}\ndist_port = {25670 + i}\n"
        )
    return out


def test_the_section_resolves_each_nodes_config_from_its_folder(tmp_path: Path) -> None:
    (tmp_path / "haven.toml").write_text(
        f'[stateful.rabbitmq]\ncluster = "os"\nhome = "{tmp_path}"\npartition_grace_s = 5\n'
        + _nodes(tmp_path)
    )
    rabbit = load_config(tmp_path, tmp_path / "haven.toml").stateful.rabbitmq
    assert rabbit is not None and rabbit.cluster == "os" and rabbit.partition_grace_s == 5
    assert [n.config for n in rabbit.nodes] == [tmp_path / f"n{i}" / "rabbitmq.conf" for i in (1, 2, 3)]
    assert rabbit.epmd_port == 4369 and rabbit.nodes[0].dist_port == 25671


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('[stateful.rabbitmq]\nhome = "/x"\nnodes = []\n', "nodes: List should have at least 2 items"),
        ("[stateful.rabbitmq]\nnodes = []\n", "home: Field required"),
        (
            '[stateful.rabbitmq]\nhome = "/x"\nnodes = [{name = "rabbit", folder = "/a", amqp_port = 1, '
            'dist_port = 2}, {name = "r@h", folder = "/b", amqp_port = 3, dist_port = 4}]\n',
            "nodes.0.name",
        ),
        (
            '[stateful.rabbitmq]\nhome = "/x"\nnodes = [{name = "r@h", folder = "/a", amqp_port = 1, '
            'dist_port = 2}, {name = "r@h", folder = "/b", amqp_port = 3, dist_port = 4}]\n',
            "r@h given twice",
        ),
        (
            '[stateful.rabbitmq]\nhome = "/x"\nnodes = [{name = "a@h", folder = "/a", amqp_port = 5672, '
            'dist_port = 25672}, {name = "b@h", folder = "/b", amqp_port = 5672, dist_port = 25673}]\n',
            "port(s) 5672 given twice",
        ),
        (
            '[stateful.rabbitmq]\nhome = "/x"\nnodes = [{name = "a@h", folder = "/a", amqp_port = 5672, '
            'dist_port = 25672}, {name = "b@h", folder = "/b", amqp_port = 5673, dist_port = 25672}]\n',
            "port(s) 25672 given twice",
        ),
        (
            '[stateful.rabbitmq]\nhome = "/x"\npartition_grace_s = 0\nnodes = [{name = "a@h", folder = "/a", '
            'amqp_port = 1, dist_port = 2}, {name = "b@h", folder = "/b", amqp_port = 3, dist_port = 4}]\n',
            "partition_grace_s: Input should be greater than 0",
        ),
    ],
)
def test_a_bad_section_is_named(tmp_path: Path, body: str, named: str) -> None:
    (tmp_path / "haven.toml").write_text(body)
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path, tmp_path / "haven.toml")
    assert "[stateful]" in error.value.message and named in error.value.message, error.value.message
    assert "[stateful.rabbitmq]" in error.value.hint


def test_serve_names_a_missing_cookie_and_opens_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "haven.toml").write_text(f'[stateful.rabbitmq]\nhome = "{tmp_path}"\n' + _nodes(tmp_path))
    assert main(["--home", str(home), "serve", "--bind", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert f"no .erlang.cookie in home {tmp_path}" in err
    assert "Traceback" not in err and not (home / "haven.db").exists()


def test_serve_reads_the_partition_handling_from_the_nodes_config_files(tmp_path: Path) -> None:
    """pause_minority in every node's rabbitmq.conf reaches the loop's settings; two modes are named."""
    (tmp_path / ".erlang.cookie").write_text("cookie")
    (tmp_path / "haven.toml").write_text(f'[stateful.rabbitmq]\nhome = "{tmp_path}"\n' + _nodes(tmp_path))
    for i in (1, 2, 3):
        (tmp_path / f"n{i}" / "rabbitmq.conf").write_text("cluster_partition_handling = pause_minority\n")
    config = load_config(tmp_path, tmp_path / "haven.toml").stateful.rabbitmq
    assert config is not None
    assert RabbitService(config, RealClock()).settings.partition_handling == "pause_minority"
    (tmp_path / "n2" / "rabbitmq.conf").write_text("cluster_partition_handling = autoheal\n")
    with pytest.raises(ConfigError) as error:
        RabbitService(config, RealClock())
    assert "different cluster_partition_handling (autoheal, pause_minority)" in error.value.message


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("advanced.config", "[{rabbit, [{cluster_partition_handling, pause_minority}]}].\n"),
        ("rabbitmq.config", "[{rabbit, [{cluster_partition_handling, pause_minority}]}].\n"),
    ],
)
def test_serve_reads_the_partition_handling_from_an_erlang_term_config_beside_rabbitmq_conf(
    tmp_path: Path, name: str, text: str
) -> None:
    (tmp_path / ".erlang.cookie").write_text("cookie")
    (tmp_path / "haven.toml").write_text(f'[stateful.rabbitmq]\nhome = "{tmp_path}"\n' + _nodes(tmp_path))
    for i in (1, 2, 3):
        (tmp_path / f"n{i}" / "rabbitmq.conf").write_text("listeners.tcp.default = 5672\n")
        (tmp_path / f"n{i}" / name).write_text(text)
    config = load_config(tmp_path, tmp_path / "haven.toml").stateful.rabbitmq
    assert config is not None
    assert RabbitService(config, RealClock()).settings.partition_handling == "pause_minority"


def test_serve_refuses_an_erlang_term_config_it_cannot_parse(tmp_path: Path) -> None:
    (tmp_path / ".erlang.cookie").write_text("cookie")
    (tmp_path / "haven.toml").write_text(f'[stateful.rabbitmq]\nhome = "{tmp_path}"\n' + _nodes(tmp_path))
    for i in (1, 2, 3):
        (tmp_path / f"n{i}" / "rabbitmq.conf").write_text("")
    (tmp_path / "n2" / "advanced.config").write_text(
        "[{rabbit, [{cluster_partition_handling, pause_minority}]}]\n"
    )
    config = load_config(tmp_path, tmp_path / "haven.toml").stateful.rabbitmq
    assert config is not None
    with pytest.raises(ConfigError) as error:
        RabbitService(config, RealClock())
    assert f"{tmp_path / 'n2' / 'advanced.config'}: the term does not end with '.'" in error.value.message
    assert "never assumes a mode" in str(error.value)


def test_a_stuck_node_does_not_block_starting_its_healthy_peer() -> None:
    """START (rabbit-2, rabbit-3) with rabbit-3 started 3 times already: rabbit-2 is started, not rabbit-3."""
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[1].vm = nodes[2].vm = False
    now = time.time()
    for i in range(3):  # rabbit-3 started three times in the window, each time it stopped again
        step = GaleraAction(f"s{i}", journal_key("mq"), "start", C, "down", "", now - 10 * (i + 1))
        store.issue_galera_action(step)
        store.finish_galera_action(f"s{i}", "done", now)
    decision = asyncio.run(_loop(nodes, store).run_pass())
    assert decision.kind is DecisionKind.START and decision.nodes == (B,)
    assert nodes[1].calls == ["start"] and nodes[1].vm and nodes[2].calls == [] and not nodes[2].vm
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and f"{C} was started 3 times" in held[0].message
    assert f"{C} is not started again; {B} is started." in held[0].message
    assert "Nothing was started" not in held[0].message


@pytest.mark.parametrize("mode", ["pause_minority", "pause_if_all_down"])
def test_a_cut_restart_of_a_node_that_reaches_no_majority_is_not_completed_under_a_pausing_mode(
    mode: str,
) -> None:
    """rabbit-3's app is stopped and it reaches neither other node: pause_minority would pause it the same
    way, so haven's open restart of it is not completed by start_app; one true alert; once it reaches a
    majority again, the restart is completed."""
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[2].app, nodes[2].partitioned_from = False, (A, B)
    store.issue_galera_action(GaleraAction("x1", journal_key("mq"), "restart", C, "stale warning", "", 1.0))
    settings = RabbitSettings(partition_grace_s=0.0, unreadable_hold_s=60.0, partition_handling=mode)
    loop = RabbitRecovery.on_store(nodes, store, "mq", RealClock(), settings=settings)
    decision = asyncio.run(loop.run_pass())
    assert decision.kind is DecisionKind.HOLD and [n.calls for n in nodes] == [[], [], []]
    assert [(s.id, s.state) for s in store.galera_actions_since(journal_key("mq"))] == [("x1", "issued")]
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and f"under {mode} it does not reach a majority" in held[0].message
    assert f"{C} reaches no other node" in held[0].message and "Nothing was started" in held[0].message
    nodes[2].partitioned_from = (A,)  # it reaches rabbit-2: two of three, a majority
    asyncio.run(loop.run_pass())
    assert nodes[2].calls == ["start_app"] and nodes[2].app
    assert [(s.id, s.state) for s in store.galera_actions_since(journal_key("mq"))] == [("x1", "done")]


def test_a_hold_in_the_pass_that_completed_a_cut_restart_says_so() -> None:
    nodes, store = _cluster(), Store.open("sqlite://")
    nodes[2].app = False  # haven stopped between stop_app and start_app
    nodes[0].readable = False  # and rabbit-1's host cannot be read: the pass holds
    store.issue_galera_action(GaleraAction("x1", journal_key("mq"), "restart", C, "partitioned", "", 1.0))
    assert asyncio.run(_loop(nodes, store).run_pass()).kind is DecisionKind.HOLD
    assert nodes[2].calls == ["start_app"]
    held = [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_HOLD]
    assert len(held) == 1 and "Nothing was started" not in held[0].message
    assert f"This pass completed haven's cut restart of {C} (start_app)" in held[0].message
