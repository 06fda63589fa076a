"""RabbitMQ recovery on a real 3-node RabbitMQ 3.10 cluster (Debian's rabbitmq-server) on loopback.

One cluster for the module (forming it cost 26-46 s on this 2-core machine under load 12-30).
Every test leaves it whole again; the last one runs `haven serve` with [stateful.rabbitmq] naming it.
Each verdict is read from every node's own ``cluster_status`` and from its Erlang VM's pid, never
from haven's journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.domain.clock import RealClock
from haven.domain.errors import TemporaryError
from haven.domain.galera import GaleraAction
from haven.domain.incidents import AlertKind
from haven.stateful.cluster import stable_port as free_port
from haven.stateful.rabbitmq import ClusterStatus, DecisionKind, RabbitSettings
from haven.stateful.rabbitmq_cluster import LoopbackRabbitCluster, healthy, missing_binaries
from haven.stateful.rabbitmq_node import ERL_CALL, LocalRabbitNode
from haven.stateful.rabbitmq_queues import QueueSettings
from haven.stateful.rabbitmq_recovery import RabbitRecovery, journal_key
from haven.store import Store

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_binaries()), reason="needs rabbitmq-server (make system-deps)"),
]

NAMES = {"rabbit-1@localhost", "rabbit-2@localhost", "rabbit-3@localhost"}
HAVEN = str(Path(sys.executable).with_name("haven"))


@pytest.fixture(scope="module")
def cluster() -> Iterator[LoopbackRabbitCluster]:
    made = LoopbackRabbitCluster.create(Path(tempfile.mkdtemp(prefix="haven-rabbitmq-")))
    try:
        yield made
    finally:
        made.remove()


def _recovery(
    cluster: LoopbackRabbitCluster, queues: QueueSettings | None = None
) -> tuple[RabbitRecovery, Store]:
    store = Store.open("sqlite://")
    settings = RabbitSettings(partition_grace_s=1.0, unreadable_hold_s=120.0)
    loop = RabbitRecovery.on_store(cluster.nodes, store, "t", RealClock(), settings=settings, queues=queues)
    return loop, store


def test_a_dist_port_that_is_another_nodes_reads_and_stops_nothing(cluster: LoopbackRabbitCluster) -> None:
    # erl_call reaches a node by address and port, not by name: rabbit-1 configured with rabbit-2's port
    # must not read rabbit-2's status as rabbit-1's, nor stop rabbit-2's app for rabbit-1.
    one, two = cluster.node("rabbit-1"), cluster.node("rabbit-2")
    if not ERL_CALL.exists():
        pytest.skip("erl_call is not installed: rabbitmqctl finds nodes by name")
    wrong = LocalRabbitNode(dataclasses.replace(one.layout, dist_port=two.layout.dist_port))
    with pytest.raises(TemporaryError, match="reached node 'rabbit-2@localhost' instead") as read:
        asyncio.run(wrong.status())
    assert "fix rabbit-1@localhost's dist_port" in str(read.value)
    with pytest.raises(TemporaryError, match="reached node 'rabbit-2@localhost'"):
        asyncio.run(wrong.restart_app())
    # Ground truth from the CLI: rabbit-2's app never stopped, and every node still sees the three.
    assert healthy(asyncio.run(two.cli_status()), NAMES)
    assert asyncio.run(one.status()).running_nodes  # the right port still answers through the guard


def test_the_queues_read_sees_a_consumers_unacked_messages_and_a_queue_nobody_reads(
    cluster: LoopbackRabbitCluster,
) -> None:
    # Ground truth: what a real AMQP client (py-amqp) did. Queues declared through rabbit-1, 30 messages
    # delivered to a consumer (through rabbit-2) that never acknowledges, 12 left in a queue with none;
    # read through rabbit-3 (neither queue's node: one node lists the cluster's queues), by erl_call
    # and by rabbitmqctl eval (a node object whose erl_call is missing).
    import amqp  # type: ignore[import-untyped]

    one, two, three = (cluster.node(n) for n in ("rabbit-1", "rabbit-2", "rabbit-3"))
    unacked, idle = f"haven-test-unacked-{os.getpid()}", f"haven-test-idle-{os.getpid()}"
    publisher = amqp.Connection(f"127.0.0.1:{one.layout.amqp_port}", connect_timeout=10)
    consumer = amqp.Connection(f"127.0.0.1:{two.layout.amqp_port}", connect_timeout=10)
    publisher.connect()
    consumer.connect()
    try:
        channel = publisher.channel()
        channel.confirm_select()  # each publish returns once the broker holds the message
        for queue, count in ((unacked, 30), (idle, 12)):
            channel.queue_declare(queue, durable=False, auto_delete=False)
            for i in range(count):
                channel.basic_publish(amqp.Message(f"m{i}"), routing_key=queue)
        got: list[object] = []
        consumer.channel().basic_consume(unacked, callback=got.append, no_ack=False)
        deadline = time.monotonic() + 20
        while len(got) < 30 and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                consumer.drain_events(timeout=0.5)
        assert len(got) == 30  # the client holds every message, none acknowledged
        by_cli = LocalRabbitNode(three.layout, erl_call=Path("/nonexistent/erl_call"))
        for reader in (three, by_cli):
            held = {q.name: q for q in asyncio.run(reader.queues()).held}
            assert (held[unacked].unacked, held[unacked].ready, held[unacked].consumers) == (30, 0, 1)
            assert (held[idle].ready, held[idle].unacked, held[idle].consumers) == (12, 0, 0)
            assert held[unacked].node == held[idle].node == one.name  # declared through rabbit-1
        # haven's loop on the real cluster: one backlog alert (window 0), nothing acted on; the
        # consumer gone (its messages back to ready), the next pass clears it.
        loop, store = _recovery(cluster, QueueSettings(unacked_min=30, unacked_window_s=0))
        assert asyncio.run(loop.run_pass()).kind is DecisionKind.NOTHING
        backlogs = [a.host for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_BACKLOG]
        assert backlogs == [f"t:unacked:/:{unacked}"]
        consumer.collect()  # the broker requeues once it sees the socket closed: passes until then
        deadline = time.monotonic() + 15
        while [a for a in store.list_alerts() if a.kind is AlertKind.RABBITMQ_BACKLOG]:
            assert time.monotonic() < deadline, (loop.queue_health, loop.queue_error)
            asyncio.run(loop.run_pass())
        assert loop.queue_health is not None
        assert [(q.name, q.ready, q.unacked) for q in loop.queue_health.worst if q.name == unacked] == [
            (unacked, 30, 0)
        ]
    finally:
        consumer.collect()  # the unacknowledged messages go back to their queue, which is then deleted
        with contextlib.suppress(Exception):
            channel = publisher.channel()
            channel.queue_delete(unacked)
            channel.queue_delete(idle)
        publisher.close()


def test_a_killed_node_is_started_and_back_in_every_nodes_running_nodes(
    cluster: LoopbackRabbitCluster,
) -> None:
    victim = cluster.node("rabbit-3")
    before = victim.pid()
    cluster.kill("rabbit-3")
    seen = asyncio.run(cluster.statuses())
    assert not isinstance(seen["rabbit-3@localhost"], ClusterStatus)  # really down
    assert all(
        "rabbit-3@localhost" not in s.running_nodes for s in seen.values() if isinstance(s, ClusterStatus)
    )
    recovery, store = _recovery(cluster)
    decisions = asyncio.run(recovery.run_until_healthy(timeout_s=120, interval_s=0.3))
    kinds = [d.kind for d in decisions]
    assert kinds[0] is DecisionKind.START and decisions[0].nodes == ("rabbit-3@localhost",)
    assert kinds[-1] is DecisionKind.NOTHING, [f"{d.kind}: {d.reason}" for d in decisions]
    # Ground truth: every node, asked itself (rabbitmqctl, not haven's erl_call reader), sees all three
    # running and no partition; a new VM.
    statuses = asyncio.run(cluster.statuses(cli=True))
    assert all(healthy(s, NAMES) for s in statuses.values()), statuses
    assert victim.pid() not in (None, before)
    steps = store.galera_actions_since(journal_key("t"))
    assert [(s.kind, s.node, s.state) for s in steps] == [("start", "rabbit-3@localhost", "done")]


def test_a_cut_restart_under_pause_minority_is_completed_once_its_node_reaches_a_majority(
    cluster: LoopbackRabbitCluster,
) -> None:
    """rabbit-3's app stopped by hand (haven's restart cut between stop_app and start_app), the loop
    told the cluster runs pause_minority: rabbit-3's VM answers ``reachable`` with its app stopped and
    reaches both others, so the resume completes the restart (its app running again, read from rabbit-3
    itself), VM pids unchanged."""
    asyncio.run(cluster.wait_healthy(60))
    pids = {n.name: n.pid() for n in cluster.nodes}
    third = next(n for n in cluster.nodes if n.name == "rabbit-3@localhost")
    others = sorted(NAMES - {third.name})
    assert asyncio.run(third.reachable(others)) == tuple(others)
    asyncio.run(third.ctl("stop_app", timeout_s=120))
    assert asyncio.run(third.reachable(others)) == tuple(others)  # its VM answers, app stopped
    store = Store.open("sqlite://")
    store.issue_galera_action(
        GaleraAction("cut", journal_key("t"), "restart", third.name, "stale warning", "", time.time())
    )
    settings = RabbitSettings(
        partition_grace_s=1.0, unreadable_hold_s=120.0, partition_handling="pause_minority"
    )
    recovery = RabbitRecovery.on_store(cluster.nodes, store, "t", RealClock(), settings=settings)
    asyncio.run(recovery.run_pass())
    assert [(s.id, s.state) for s in store.galera_actions_since(journal_key("t"))] == [("cut", "done")]
    asyncio.run(cluster.wait_healthy(60))
    assert healthy(asyncio.run(third.status()), NAMES)
    assert {n.name: n.pid() for n in cluster.nodes} == pids


def test_a_partition_is_healed_by_restarting_the_smaller_sides_node(cluster: LoopbackRabbitCluster) -> None:
    asyncio.run(cluster.wait_healthy(60))
    pids = {n.name: n.pid() for n in cluster.nodes}
    asyncio.run(cluster.partition("rabbit-3"))  # cut off from both others: two against one
    cut = asyncio.run(cluster.statuses())
    assert any(isinstance(s, ClusterStatus) and any(s.partitions.values()) for s in cut.values()), cut
    recovery, store = _recovery(cluster)
    decisions = asyncio.run(recovery.run_until_healthy(timeout_s=150, interval_s=0.3))
    assert decisions[-1].kind is DecisionKind.NOTHING, [f"{d.kind}: {d.reason}" for d in decisions]
    restarts = [d for d in decisions if d.kind is DecisionKind.RESTART]
    assert [(d.nodes, d.kept) for d in restarts] == [
        (("rabbit-3@localhost",), ("rabbit-1@localhost", "rabbit-2@localhost"))
    ]  # the minority side's node only
    # Ground truth: every node, asked itself (rabbitmqctl, not haven's erl_call reader), sees all three
    # running and reports no partition.
    statuses = asyncio.run(cluster.statuses(cli=True))
    assert all(healthy(s, NAMES) for s in statuses.values()), statuses
    assert {n.name: n.pid() for n in cluster.nodes} == pids  # apps restarted, no VM killed or started
    steps = store.galera_actions_since(journal_key("t"))
    assert steps and all(s.kind == "restart" and s.state == "done" for s in steps)
    for earlier, later in itertools.pairwise(steps):  # one at a time: never two at once
        assert earlier.finished_at is not None and earlier.finished_at <= later.created_at


def test_haven_serve_with_stateful_rabbitmq_starts_a_killed_node(
    cluster: LoopbackRabbitCluster, tmp_path: Path
) -> None:
    """The wiring end to end: haven.toml's [stateful.rabbitmq] names this cluster, `haven serve` runs."""
    asyncio.run(cluster.wait_healthy(60))
    home = tmp_path / "home"
    home.mkdir()
    first = cluster.nodes[0].layout
    body = (
        f'[stateful.rabbitmq]\ncluster = "mq"\ninterval_s = 0.5\nhome = "{first.home}"\n'
        f"epmd_port = {first.epmd_port}\n"
    )
    for node in cluster.nodes:
        layout = node.layout
        body += (
            f'[[stateful.rabbitmq.nodes]]\nname = "{layout.name}"\nfolder = "{layout.folder}"\n'
            f"amqp_port = {layout.amqp_port}\ndist_port = {layout.dist_port}\n"
        )
    (home / "haven.toml").write_text(body)
    cluster.kill("rabbit-2")
    env = {**os.environ, "HAVEN_HOME": str(home)}
    serve = subprocess.Popen(
        [HAVEN, "serve", "--bind", f"127.0.0.1:{free_port()}"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        statuses: dict[str, ClusterStatus | str] = {}
        while time.monotonic() < deadline:
            time.sleep(1.0)
            statuses = asyncio.run(cluster.statuses())
            if all(healthy(s, NAMES) for s in statuses.values()):
                break
        statuses = asyncio.run(cluster.statuses(cli=True))  # ground truth: rabbitmqctl, not erl_call
        assert all(healthy(s, NAMES) for s in statuses.values()), statuses
    finally:
        serve.send_signal(signal.SIGINT)
        out, err = serve.communicate(timeout=60)
    assert serve.returncode == 0, err
    assert "rabbitmq: cluster 'mq' (rabbit-1@localhost, rabbit-2@localhost, rabbit-3@localhost)" in out + err
    with Store.open(f"sqlite:///{home / 'haven.db'}") as store:
        steps = store.galera_actions_since(journal_key("mq"))
    assert [(s.kind, s.node, s.state) for s in steps] == [("start", "rabbit-2@localhost", "done")]
