"""A running cluster of systemd units, as the stateful drills drive it (``haven drill ... --cloud lab``).

Who calls it: haven.cli.stateful_lab, which reads the HA lab's records (``haven lab up --ha``: its
Galera and RabbitMQ nodes, each a unit on a controller's systemd) and hands these to the drills of
haven.stateful.drills and haven.stateful.rabbitmq_drills. The drills need of a cluster its nodes and a
crash of some of them; here a crash is what the lab's hardware would see: SIGKILL to the unit's main
process through systemd (``KillUnit``), the unit ``failed`` (``Restart=no``: haven starts it, through
the same systemd driver ``haven serve``'s ``[stateful.*] driver = "systemd"`` uses).

The clusters outlive the drill: nothing here stops or removes them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from haven.domain.errors import HavenError, TemporaryError
from haven.stateful.galera_systemd import SystemdGaleraNode
from haven.stateful.rabbitmq import ClusterStatus
from haven.stateful.rabbitmq_cluster import LoopbackRabbitCluster
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

    async def statuses(self) -> dict[str, ClusterStatus | str]:
        return await self._cli.statuses()

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        await self._cli.wait_healthy(timeout_s)

    async def partition(self, name: str, others: Sequence[str] = (), timeout_s: float = 30.0) -> None:
        await self._cli.partition(name, others, timeout_s)

    async def split_all(self, timeout_s: float = 30.0) -> None:
        await self._cli.split_all(timeout_s)

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
