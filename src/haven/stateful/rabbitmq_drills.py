"""RabbitMQ drills on a real loopback cluster: inject a fault, haven's loop heals it, the servers judge.

Who calls it: ``haven drill rabbitmq-node-loss`` / ``rabbitmq-partition`` (haven.cli.rabbitmq), on a
temporary loopback cluster (haven.stateful.rabbitmq_cluster) or, with ``--cloud lab``, on the HA lab's
running units (haven.stateful.unit_clusters: the same code, the nodes driven through systemd).

- node loss: one node's Erlang VM is killed -9; the loop (its journal and alerts in a store) runs until
  every node runs and sees every other.
- partition: one node's distribution links to the others are cut (on a temporary cluster
  ``erlang:disconnect_node/1``; on the lab, a network cut of the distribution ports with iptables,
  mended once each side saw the other down: haven.stateful.rabbitmq_cut); both sides report the
  partition once they reconnect, and with ``cluster_partition_handling = ignore`` it stays; the loop
  waits its grace, then heals it.

The report's ``passes`` say where the seconds went: each pass of haven's loop, its start and end
(seconds from the fault, or from the partition's first report) and its decision.

The verdict is read from the servers and a client, never from haven's journal: every node, asked
itself through ``rabbitmqctl cluster_status`` (an operator's tool, not haven's reader), sees every
node running and reports no partition; and an AMQP client (py-amqp, guest on loopback) publishes a
message through each node into a queue and reads it back through the next node (on the lab, in a
vhost of the drill's own: OpenStack's ``/`` is left alone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from haven.domain.clock import RealClock
from haven.domain.errors import HavenError
from haven.stateful.journal import run_passes
from haven.stateful.rabbitmq import ClusterStatus, DecisionKind, RabbitDecision, RabbitSettings
from haven.stateful.rabbitmq_cluster import healthy
from haven.stateful.rabbitmq_node import RabbitLayout, RabbitNode
from haven.stateful.rabbitmq_queues import judge
from haven.stateful.rabbitmq_recovery import RabbitRecovery
from haven.store import Store

NODE_LOSS = "rabbitmq-node-loss"
PARTITION = "rabbitmq-partition"
SCENARIOS = (NODE_LOSS, PARTITION)
CLUSTER = "haven"
TIMEOUT_S = 180.0
GRACE_S = 2.0  # the drill's partition grace (haven.toml's default is 10 s)
READ_S = 30.0  # the round trip's patience for the next node to deliver a message (a loaded machine)


class DrillError(HavenError):
    """The drill could not inject its fault (the cluster did not reach the state the fault needs)."""


class DrillNode(RabbitNode, Protocol):
    @property
    def layout(self) -> RabbitLayout: ...

    async def remote_calls(self) -> str:
        """What the node runs for other nodes now (a hung CLI's rpc: its stack)."""
        ...


class DrillCluster(Protocol):
    """The cluster a drill runs on: a temporary loopback one, or the HA lab's units."""

    @property
    def nodes(self) -> Sequence[DrillNode]: ...

    def node(self, name: str) -> DrillNode: ...

    def kill(self, name: str) -> None:
        """A crash (SIGKILL) of one node's Erlang VM; returns once it is down."""

    async def statuses(self, cli: bool = False) -> dict[str, ClusterStatus | str]:
        """Each node's own status; ``cli``: through ``rabbitmqctl cluster_status`` (the judge's)."""

    async def wait_healthy(self, timeout_s: float = 60.0) -> None: ...

    async def partition(
        self, name: str, others: Sequence[str] = (), timeout_s: float = 30.0
    ) -> dict[str, Any] | None: ...

    async def split_all(self, timeout_s: float = 30.0) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    name: str
    running_nodes: list[str]  # as this node sees them ([] when it could not be read)
    partitions: list[str]  # the nodes it reports as partitioned from
    alarms: list[str]
    error: str = ""


@dataclass
class RabbitDrillReport:
    scenario: str
    node: str  # the node killed, or cut off
    verdict: str = "failed"  # recovered / failed
    recover_s: float = 0.0  # from the fault (a partition: from its first report) to every node whole
    grace_s: float = GRACE_S
    restarted: list[str] = field(default_factory=list)  # haven's steps, in order ("start X", "restart Y")
    messages_ok: bool = False  # a message published through each node was read through the next
    nodes: list[NodeVerdict] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # the partition as made: how, and its seconds (on the lab: the link down, the report after mending)
    cut: dict[str, Any] | None = None
    # haven's passes: [start_s, end_s, decision] from the fault (a partition: from its first report)
    passes: list[list[Any]] = field(default_factory=list)
    # --cloud lab with the lab's OpenStack on the clusters: Nova's answers after the heal
    openstack: dict[str, Any] | None = None
    # the judge's reads: rabbitmqctl's seconds, and for a node it could not read, what that node ran
    # for other nodes right after (a CLI's rpc still blocked shows its stack) and haven's own reading
    judge: dict[str, Any] = field(default_factory=dict)
    # the cluster's queues after the heal, through haven's reader (shown, not judged: a drill is shorter
    # than any backlog window): QueueHealth.as_json() and the node read, or {"error": why not}
    queues: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def node_loss(cluster: DrillCluster, victim: str, vhost: str = "/") -> RabbitDrillReport:
    """``vhost``: the AMQP round trip's (guest must have its permissions)."""
    node = cluster.node(victim)
    report = RabbitDrillReport(NODE_LOSS, node.name)
    _whole_first(cluster)
    cluster.kill(node.name)
    faulted = time.monotonic()
    return _heal(cluster, report, faulted, vhost)


def partition(
    cluster: DrillCluster,
    victim: str,
    cut_from: Sequence[str] = (),
    split_all: bool = False,
    vhost: str = "/",
) -> RabbitDrillReport:
    """``cut_from``: cut only the links to these nodes (default: every other node); ``split_all``: cut
    every node off from every other instead (as many sides as nodes); ``vhost``: the round trip's."""
    node = cluster.node(victim)
    report = RabbitDrillReport(PARTITION, "all" if split_all else node.name)
    _whole_first(cluster)
    try:
        report.cut = asyncio.run(cluster.split_all() if split_all else cluster.partition(node.name, cut_from))
    except HavenError as exc:
        raise DrillError(str(exc)) from exc
    return _heal(cluster, report, time.monotonic(), vhost)


def _whole_first(cluster: DrillCluster) -> None:
    try:
        asyncio.run(cluster.wait_healthy(60))
    except HavenError as exc:
        raise DrillError(f"the cluster was not whole before the fault: {exc}") from exc


def _heal(cluster: DrillCluster, report: RabbitDrillReport, faulted: float, vhost: str) -> RabbitDrillReport:
    store = Store.open("sqlite://")
    settings = RabbitSettings(partition_grace_s=GRACE_S)
    recovery = RabbitRecovery.on_store(cluster.nodes, store, CLUSTER, RealClock(), settings=settings)

    async def timed_pass() -> RabbitDecision:
        began = time.monotonic() - faulted
        decision = await recovery.run_pass()
        report.passes.append([round(began, 2), round(time.monotonic() - faulted, 2), decision.kind.value])
        return decision

    decisions: list[RabbitDecision] = asyncio.run(run_passes(timed_pass, TIMEOUT_S, interval_s=0.3))
    report.recover_s = round(time.monotonic() - faulted, 2)
    report.decisions = [f"{d.kind.value}: {d.reason}" for d in decisions]
    report.restarted = [f"{d.kind.value} {n}" for d in decisions for n in d.nodes if d.nodes]
    report.alerts = [a.message for a in store.list_alerts(active_only=False) if a.host == CLUSTER]
    store.close()
    if not decisions or decisions[-1].kind is not DecisionKind.NOTHING:
        last = decisions[-1].reason if decisions else "no pass"
        report.problems.append(f"haven did not finish: {last}")
    _judge(cluster, report, vhost)
    return report


def _judge(cluster: DrillCluster, report: RabbitDrillReport, vhost: str) -> None:
    names = {n.name for n in cluster.nodes}
    began = time.monotonic()
    statuses = asyncio.run(cluster.statuses(cli=True))  # rabbitmqctl: not haven's reader (erl_call)
    report.judge["cli_s"] = round(time.monotonic() - began, 2)
    unread = [name for name, status in statuses.items() if not isinstance(status, ClusterStatus)]
    if unread:
        report.judge["unread"] = asyncio.run(_why_unread(cluster, unread))
    for name, status in statuses.items():
        if isinstance(status, ClusterStatus):
            report.nodes.append(
                NodeVerdict(
                    name, sorted(status.running_nodes), sorted(status.partitions.get(name, ())),
                    list(status.alarms),
                )
            )  # fmt: skip
            if not healthy(status, names):
                report.problems.append(
                    f"{name} sees {sorted(status.running_nodes)}, partitions {dict(status.partitions)}"
                )
        else:
            report.nodes.append(NodeVerdict(name, [], [], [], status))
            report.problems.append(f"{name} cannot be read: {status}")
    try:
        report.messages_ok = round_trip(cluster, vhost)
    except Exception as exc:  # any client failure is the drill's finding, not a crash
        report.problems.append(f"AMQP round trip failed: {type(exc).__name__}: {exc}")
    report.verdict = "failed" if report.problems else "recovered"
    report.queues = asyncio.run(read_queues(cluster.nodes))


async def read_queues(nodes: Sequence[RabbitNode]) -> dict[str, Any]:
    """The cluster's queues, read from the first node that answers: totals and the fullest."""
    why = "no node"
    for node in nodes:
        try:
            read = await node.queues()
        except HavenError as exc:
            why = str(exc)
            continue
        health, _ = judge(read, time.time())
        return {"read_from": node.name, **health.as_json()}
    return {"error": why}


async def _why_unread(cluster: DrillCluster, names: list[str]) -> dict[str, dict[str, str]]:
    """For each node rabbitmqctl could not read: what it runs for other nodes now, and haven's reading
    (erl_call) of its status, to tell a node that hangs from a CLI that was slow to start."""

    async def one(name: str) -> dict[str, str]:
        node = cluster.node(name)
        found: dict[str, str] = {}
        for key, read in (("remote_calls", node.remote_calls), ("status", node.status)):
            started = time.monotonic()
            try:
                found[key] = str(await read())
            except HavenError as exc:
                found[key] = f"unreadable: {exc}"
            found[f"{key}_s"] = f"{time.monotonic() - started:.2f}"
        return found

    return dict(zip(names, await asyncio.gather(*(one(n) for n in names)), strict=True))


def round_trip(cluster: DrillCluster, vhost: str = "/") -> bool:
    """Publish through each node into a queue (confirmed by the broker), read it back through the next
    node; a message the next node does not deliver in ``READ_S`` is looked for through its own node,
    to tell a lost message from one the next node cannot reach."""
    import amqp  # type: ignore[import-untyped]  # py-amqp, oslo.messaging's; imported when a drill runs

    nodes = cluster.nodes
    for i, node in enumerate(nodes):
        reader = nodes[(i + 1) % len(nodes)]
        queue = f"haven-drill-{node.name.split('@')[0]}"
        body = f"from {node.name} at {time.time()}"
        with _connect(amqp, node.layout.amqp_port, vhost) as c:
            channel = c.channel()
            channel.confirm_select()  # basic_publish returns once the broker has taken the message
            channel.queue_declare(queue, durable=False, auto_delete=False)
            channel.basic_publish(amqp.Message(body), routing_key=queue)
        got = _get(amqp, reader.layout.amqp_port, vhost, queue, READ_S)
        if got is None or got.body != body:
            own = _get(amqp, node.layout.amqp_port, vhost, queue, 1.0)
            where = "it was still there through its own node" if own is not None else "it was gone"
            _get(amqp, node.layout.amqp_port, vhost, queue, 0.0, delete=True)
            raise DrillError(
                f"the message published through {node.name} was not read through {reader.name} in "
                f"{READ_S:g} s ({where})"
            )
        _get(amqp, reader.layout.amqp_port, vhost, queue, 0.0, delete=True)
    return True


def _get(amqp: Any, port: int, vhost: str, queue: str, wait_s: float, delete: bool = False) -> Any:
    """One message of ``queue`` through the node at ``port`` within ``wait_s`` (None: none came)."""
    deadline = time.monotonic() + wait_s
    with _connect(amqp, port, vhost) as c:
        channel = c.channel()
        if delete:
            channel.queue_delete(queue)
            return None
        while True:
            got = channel.basic_get(queue, no_ack=True)
            if got is not None or time.monotonic() >= deadline:
                return got
            time.sleep(0.1)


def _connect(amqp: Any, port: int, vhost: str) -> Any:
    return amqp.Connection(f"127.0.0.1:{port}", userid="guest", password="guest", virtual_host=vhost)
