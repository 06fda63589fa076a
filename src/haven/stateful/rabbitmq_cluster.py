"""A loopback RabbitMQ cluster in one folder: for tests and ``haven drill rabbitmq-*``.

Who calls it: tests/stateful's module fixture and haven.stateful.rabbitmq_drills. ``create`` lays out N
nodes (rabbit-1@localhost...) on free loopback ports under ``folder``: one Erlang port mapper (epmd) of
its own on a free port, one shared ``.erlang.cookie`` in ``folder`` (every node's and the CLI's HOME),
each node's Mnesia and logs in its own folder, classic peer discovery listing every node and
``cluster_partition_handling = ignore``; it starts every node at once (they form one cluster as they
boot) and returns once every node sees every other running. ``kill`` is a kill -9 of one node's Erlang
VM; ``partition`` cuts one node's Erlang distribution links (``erlang:disconnect_node/1``), which
Mnesia reports as a partition once they reconnect (with ``ignore``, it stays until a node restarts).
``stop`` stops exactly what this cluster started (its epmd and its servers' process groups), and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from haven.domain.errors import HavenError, TemporaryError
from haven.stateful.cluster import stable_port
from haven.stateful.rabbitmq import ClusterStatus
from haven.stateful.rabbitmq_node import (
    EPMD,
    JUDGE_CLI_TIMEOUT_S,
    RABBITMQ_SERVER,
    LocalRabbitNode,
    RabbitLayout,
    write_config,
)

DISCONNECT = "erlang:disconnect_node/1 (the nodes reconnect at once)"


class RabbitClusterError(HavenError):
    """The loopback cluster would not form, or a fault could not be made; the message says why."""


def missing_binaries() -> list[str]:
    return [str(p) for p in (RABBITMQ_SERVER, EPMD) if not p.exists()]


@dataclass
class LoopbackRabbitCluster:
    folder: Path
    nodes: list[LocalRabbitNode]
    epmd: subprocess.Popen[bytes] | None = None
    formed_in_s: float = 0.0

    @classmethod
    def create(cls, folder: Path, size: int = 3, timeout_s: float = 120.0) -> LoopbackRabbitCluster:
        missing = missing_binaries()
        if missing:
            raise RabbitClusterError(f"RabbitMQ cannot start: missing {', '.join(missing)}")
        folder.mkdir(parents=True, exist_ok=True)
        cookie = folder / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        os.chmod(cookie, 0o400)
        epmd_port = stable_port()
        names = [f"rabbit-{i}@localhost" for i in range(1, size + 1)]
        layouts = [
            RabbitLayout(name, folder / f"n{i}", folder, epmd_port, stable_port(), stable_port())
            for i, name in enumerate(names, 1)
        ]
        for layout in layouts:
            write_config(layout, names)
        self = cls(folder, [LocalRabbitNode(layout) for layout in layouts])
        started = time.monotonic()
        try:
            with open(folder / "epmd.log", "ab") as out:
                self.epmd = subprocess.Popen(
                    [str(EPMD), "-port", str(epmd_port), "-address", "127.0.0.1"], stdout=out,
                    stderr=subprocess.STDOUT, env=layouts[0].cli_env(), start_new_session=True,
                )  # fmt: skip
            asyncio.run(self._form(timeout_s))
        except BaseException:
            self.stop()
            raise
        self.formed_in_s = time.monotonic() - started
        return self

    async def _form(self, timeout_s: float) -> None:
        for node in self.nodes:
            await node.start()
        await self.wait_healthy(timeout_s)

    def node(self, name: str) -> LocalRabbitNode:
        found = [n for n in self.nodes if n.name == name or n.name.split("@")[0] == name]
        if not found:
            raise RabbitClusterError(f"no node {name!r} (nodes: {', '.join(n.name for n in self.nodes)})")
        return found[0]

    async def statuses(self, cli: bool = False) -> dict[str, ClusterStatus | str]:
        """Every node's own cluster_status, or why it could not be read; ``cli``: read with
        ``rabbitmqctl`` (an operator's view) rather than haven's reader."""

        async def one(node: LocalRabbitNode) -> ClusterStatus | str:
            try:
                return await (node.cli_status(JUDGE_CLI_TIMEOUT_S) if cli else node.status())
            except TemporaryError as exc:
                return str(exc)

        results = await asyncio.gather(*(one(n) for n in self.nodes))
        return {n.name: r for n, r in zip(self.nodes, results, strict=True)}

    async def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Until every node sees every node running and reports no partition."""
        names = {n.name for n in self.nodes}
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = await self.statuses()
            if all(healthy(s, names) for s in statuses.values()):
                return
            if time.monotonic() > deadline:
                lines = "\n".join(f"{name}: {s}" for name, s in statuses.items())
                raise RabbitClusterError(f"the cluster was not whole in {timeout_s:g} s:\n{lines}")
            await asyncio.sleep(0.5)

    def kill(self, name: str) -> None:
        """kill -9 one node's Erlang VM (a crash: no clean stop); returns once it is gone."""
        node = self.node(name)
        pid = node.pid()
        if pid is None:
            raise RabbitClusterError(f"{node.name} does not run: nothing to kill")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while node.runs():
            if time.monotonic() > deadline:
                raise RabbitClusterError(f"{node.name} still runs 10 s after SIGKILL")
            for process in node.started:
                process.poll()
            time.sleep(0.05)

    async def split_all(self, timeout_s: float = 30.0) -> dict[str, str]:
        """Cut every node off from every other at once; returns once each node reports a partition."""

        async def cut(node: LocalRabbitNode) -> None:
            calls = " ".join(f"erlang:disconnect_node('{o.name}')," for o in self.nodes if o is not node)
            await node.ctl("eval", f"{calls} ok.")

        await asyncio.gather(*(cut(n) for n in self.nodes))
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = await self.statuses()
            if all(isinstance(s, ClusterStatus) and s.partitions.get(n) for n, s in statuses.items()):
                return {"method": DISCONNECT}
            if time.monotonic() > deadline:
                raise RabbitClusterError(f"not every node reported a partition {timeout_s:g} s after the cut")
            await asyncio.sleep(0.3)

    async def partition(
        self, name: str, others: Sequence[str] = (), timeout_s: float = 30.0
    ) -> dict[str, str]:
        """Cut the links between node ``name`` and ``others`` (default: every other node, which isolates
        it); returns once some node reports a partition.

        Isolating one node of three gives a clean two-against-one split (measured: rabbit-1 and rabbit-2
        report rabbit-3, rabbit-3 reports both); cutting one link only (rabbit-1/rabbit-3) split all
        three apart once and two against one once on RabbitMQ 3.10.8: not deterministic.
        """
        node = self.node(name)
        targets = [self.node(o).name for o in others] or [n.name for n in self.nodes if n is not node]
        calls = " ".join(f"erlang:disconnect_node('{t}')," for t in targets)
        await node.ctl("eval", f"{calls} ok.")
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = await self.statuses()
            if any(isinstance(s, ClusterStatus) and any(s.partitions.values()) for s in statuses.values()):
                return {"method": DISCONNECT}
            if time.monotonic() > deadline:
                raise RabbitClusterError(f"no partition reported {timeout_s:g} s after cutting {name} off")
            await asyncio.sleep(0.3)

    def stop(self) -> None:
        """Stop every server this cluster started (and only those), and its epmd; the folder stays."""
        for node in self.nodes:
            for process in node.started:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
            pid = node.pid()  # a VM of this node's name whose group leader exited already
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        if self.epmd is not None and self.epmd.poll() is None:
            os.killpg(self.epmd.pid, signal.SIGKILL)
            self.epmd.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def healthy(status: ClusterStatus | str, names: set[str]) -> bool:
    return (
        isinstance(status, ClusterStatus)
        and names <= set(status.running_nodes)
        and not any(status.partitions.values())
    )


__all__ = ["LoopbackRabbitCluster", "RabbitClusterError", "healthy", "missing_binaries"]
