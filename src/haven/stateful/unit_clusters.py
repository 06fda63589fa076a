"""A running cluster of systemd units, as the stateful drills drive it (``haven drill ... --cloud lab``).

Who calls it: haven.cli.stateful_lab, which reads the HA lab's records (``haven lab up --ha``: its
Galera and RabbitMQ nodes, each a unit on a controller's systemd) and hands these to the drills of
haven.stateful.drills and haven.stateful.rabbitmq_drills. The drills need of a cluster its nodes and a
crash of some of them; here a crash is what the lab's hardware would see: SIGKILL to the unit's main
process through systemd (``KillUnit``), the unit ``failed`` (``Restart=no``: haven starts it, through
the same systemd driver ``haven serve``'s ``[stateful.*] driver = "systemd"`` uses).

A partition here is a network cut between the nodes' distribution ports (haven.stateful.rabbitmq_cut:
iptables rules of the drill's own, removed once each side saw the other go down, and on any failure),
then the link mended: what a real blip between controllers does. The nodes then reconnect and, under
``cluster_partition_handling = ignore``, Mnesia reports the partition, which stays until a node
restarts.

The clusters outlive the drill: nothing here stops or removes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from haven.domain.errors import HavenError, TemporaryError
from haven.stateful.galera_systemd import SystemdGaleraNode
from haven.stateful.rabbitmq import ClusterStatus
from haven.stateful.rabbitmq_cluster import LoopbackRabbitCluster, RabbitClusterError
from haven.stateful.rabbitmq_cut import Cut, CutError, Peer
from haven.stateful.rabbitmq_node import erl_atom
from haven.stateful.rabbitmq_systemd import SystemdRabbitNode

DRILL_VHOST = "haven-drill"  # the RabbitMQ drills' round trip: OpenStack's "/" is left alone


class UnitClusterError(HavenError):
    """A unit cluster's node could not be named or crashed."""


class UnitGaleraCluster:
    def __init__(self, nodes: Sequence[SystemdGaleraNode]) -> None:
        self.nodes = list(nodes)

    def node(self, name: str) -> SystemdGaleraNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise UnitClusterError(f"no Galera node {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def kill(self, names: Sequence[str]) -> None:
        """SIGKILL the units' mariadbd at once (a power cut: seqno -1), until each unit is down."""
        nodes = [self.node(name) for name in names]

        async def crash() -> None:
            await asyncio.gather(*(node.kill() for node in nodes))

        asyncio.run(crash())


class UnitRabbitCluster:
    """The units' nodes (haven's driver) and, for the drill's reads and cuts, their CLI."""

    def __init__(self, nodes: Sequence[SystemdRabbitNode]) -> None:
        if not nodes:
            raise UnitClusterError("a RabbitMQ cluster of no node")
        self.nodes = list(nodes)
        # rabbitmqctl, cluster_status and the distribution cuts are the same as a loopback cluster's
        # (each node's CLI in its own environment); nothing of it starts or stops a server.
        self._cli = LoopbackRabbitCluster(self.nodes[0].layout.home, [n.files for n in self.nodes])

    def node(self, name: str) -> SystemdRabbitNode:
        for node in self.nodes:
            if name in (node.name, node.name.split("@")[0]):
                return node
        raise UnitClusterError(f"no RabbitMQ node {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")

    def kill(self, name: str) -> None:
        asyncio.run(self.node(name).kill())

    async def statuses(self, cli: bool = False) -> dict[str, ClusterStatus | str]:
        return await self._cli.statuses(cli)

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        await self._cli.wait_healthy(timeout_s)

    async def partition(
        self, name: str, others: Sequence[str] = (), timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Cut the links between node ``name`` and ``others`` (default: every other node), until each
        side sees the other down, then mend them; returns once some node reports the partition."""
        node = self.node(name)
        targets = [self.node(o) for o in others] or [n for n in self.nodes if n is not node]
        return await self._cut([(node, t) for t in targets], timeout_s)

    async def split_all(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Every link cut, then mended; returns once every node reports a partition."""
        pairs = [(a, b) for i, a in enumerate(self.nodes) for b in self.nodes[i + 1 :]]
        return await self._cut(pairs, timeout_s, every=True)

    async def _cut(
        self,
        pairs: Sequence[tuple[SystemdRabbitNode, SystemdRabbitNode]],
        timeout_s: float,
        every: bool = False,
    ) -> dict[str, Any]:
        """The cut's seconds: ``down_s`` (rules in until each side of each pair saw the other down),
        ``report_s`` (the link mended until the partition was reported)."""
        cut = Cut([(Peer(a.name, a.layout.dist_port), Peer(b.name, b.layout.dist_port)) for a, b in pairs])
        started = time.monotonic()
        try:
            with cut:
                # The links up now, closed from one side, each node's at once (closed one call after
                # another, a 2-against-1 cut became a 3-way split once here; why was not looked into);
                # the rules keep them down.
                for a in dict.fromkeys(a for a, _ in pairs):
                    peers = ",".join(erl_atom(b.name) for x, b in pairs if x is a)
                    await a.files.call(f"[erlang:disconnect_node(N) || N <- [{peers}]].")
                await self._until(lambda s: all(_apart(s, a.name, b.name) for a, b in pairs), timeout_s,
                                  "each side of the cut seeing the other down")  # fmt: skip
                down_s = time.monotonic() - started
        except CutError as exc:
            raise UnitClusterError(f"the partition could not be made: {exc}") from exc
        mended = time.monotonic()
        names = [n.name for n in self.nodes]

        def reported(statuses: dict[str, ClusterStatus | str]) -> bool:
            views = [
                s.partitions.get(n) if isinstance(s, ClusterStatus) else None for n, s in statuses.items()
            ]
            return all(views) if every else any(any(s.partitions.values()) for s in statuses.values()
                                                if isinstance(s, ClusterStatus))  # fmt: skip

        await self._until(reported, timeout_s, "a partition reported once the link was mended")
        return {
            "method": (
                f"iptables: distribution handshakes refused (tcp-reset; {cut.method}), links disconnected"
            ),
            "pairs": [[a.name, b.name] for a, b in pairs],
            "down_s": round(down_s, 2),
            "report_s": round(time.monotonic() - mended, 2),
            "nodes": names,
        }

    async def _until(self, done: Any, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = await self.statuses()
            if done(statuses):
                return
            if time.monotonic() > deadline:
                lines = "; ".join(f"{n}: {s}" for n, s in statuses.items())
                raise RabbitClusterError(f"no {what} in {timeout_s:g} s: {lines}")
            await asyncio.sleep(0.2)

    def drill_vhost(self) -> str:
        """A vhost of the drill's own, guest allowed in it (made once; an existing one is kept)."""
        cli = self.nodes[0].files

        async def make() -> None:
            try:
                await cli.ctl("add_vhost", DRILL_VHOST)
            except TemporaryError as exc:
                if "already exists" not in str(exc):
                    raise
            await cli.ctl("set_permissions", "-p", DRILL_VHOST, "guest", ".*", ".*", ".*")

        asyncio.run(make())
        return DRILL_VHOST


def _apart(statuses: dict[str, ClusterStatus | str], a: str, b: str) -> bool:
    """Whether a and b, each asked itself, no longer see each other running."""
    sa, sb = statuses.get(a), statuses.get(b)
    return (
        isinstance(sa, ClusterStatus) and isinstance(sb, ClusterStatus)
        and b not in sa.running_nodes and a not in sb.running_nodes
    )  # fmt: skip
