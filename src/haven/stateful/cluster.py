"""A loopback MariaDB Galera cluster in one folder: for tests, drills and bench/galera.py.

Who calls it: tests/stateful's session fixture, ``haven drill galera-*`` (haven.cli.galera) and
bench/galera.py. ``LoopbackCluster.create`` lays out N nodes on free ports under ``folder`` (owned by the
server's user, see galera_node.server_user), initialises the first node's data with
mariadb-install-db, bootstraps it and starts the others (they join by SST). ``kill`` is a power cut of
one node's server (SIGKILL); ``stop`` stops exactly the servers this cluster started, and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from haven.domain.errors import HavenError, TemporaryError
from haven.stateful.galera import Position
from haven.stateful.galera_node import GaleraNode, LocalGaleraNode, NodeLayout, server_user, write_config

INSTALL_DB = Path("/usr/bin/mariadb-install-db")


_HANDED_OUT: set[int] = set()  # stable_port's answers in this process: never the same port twice


class ClusterError(HavenError):
    """The loopback cluster would not form; the message quotes the node's error log."""


@dataclass
class LoopbackCluster:
    folder: Path
    nodes: list[LocalGaleraNode]

    @classmethod
    def create(
        cls, folder: Path, size: int = 3, cluster: str = "haven", timeout_s: float = 120.0
    ) -> LoopbackCluster:
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o755)
        user = pwd.getpwnam(server_user())
        layouts = [
            NodeLayout(f"g{i}", folder / f"g{i}", stable_port(), stable_port(), stable_port(), stable_port())
            for i in range(1, size + 1)
        ]
        for layout in layouts:
            layout.data.mkdir(parents=True, exist_ok=True)
            write_config(layout, layouts, cluster)
            for path in (layout.folder, layout.data):
                os.chown(path, user.pw_uid, user.pw_gid)
        result = subprocess.run(
            [str(INSTALL_DB), "--no-defaults", f"--datadir={layouts[0].data}", f"--user={server_user()}",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed: {result.stderr.strip()[-500:]}")
        self = cls(folder, [LocalGaleraNode(layout) for layout in layouts])
        try:
            asyncio.run(self._form(timeout_s))
        except BaseException:
            self.stop()
            raise
        return self

    async def _form(self, timeout_s: float) -> None:
        first, *others = self.nodes
        await first.bootstrap_new()
        await self.wait_synced([first], timeout_s)
        for node in others:  # one at a time: each joins by SST from a synced donor
            await node.start(None)
            await self.wait_synced([first, node], timeout_s)

    def node(self, name: str) -> LocalGaleraNode:
        return next(n for n in self.nodes if n.name == name)

    async def wait_synced(
        self, nodes: Sequence[LocalGaleraNode] | None = None, timeout_s: float = 60.0
    ) -> None:
        """Until each of ``nodes`` (default all) is Synced in a primary component of them all."""
        nodes = list(nodes or self.nodes)
        if not await all_synced(nodes, timeout_s):
            tails = "\n".join(f"{n.name}: {n.error_tail()}" for n in nodes)
            raise ClusterError(f"the cluster did not sync in {timeout_s} s:\n{tails}")

    def kill(self, names: Sequence[str]) -> None:
        """SIGKILL the servers of ``names`` at once (a power cut: no clean shutdown, seqno -1)."""
        pids = [pid for pid in (self.node(name).pid() for name in names) if pid is not None]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for node in (self.node(name) for name in names):
            for process in node.started:
                if process.poll() is None and process.pid in pids:
                    process.wait(10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{pid}").exists() and _not_zombie(pid) for pid in pids):
            if time.monotonic() > deadline:
                raise ClusterError(f"servers {pids} still run 10 s after SIGKILL")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every server this cluster started (and only those), then remove nothing: the folder stays."""
        for node in self.nodes:
            for process in node.started:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


async def all_synced(nodes: Sequence[GaleraNode], timeout_s: float) -> bool:
    """Whether each of ``nodes`` is Synced in a primary component of at least that many within
    ``timeout_s`` (a node that does not answer is not synced yet)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = []
        for node in nodes:
            try:
                live = await node.live()
                states.append(
                    live.primary and live.local_state == "Synced" and live.cluster_size >= len(nodes)
                )
            except TemporaryError:
                states.append(False)
        if all(states):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.3)


def stable_port() -> int:
    """A free TCP port on 127.0.0.1 below the kernel's ephemeral range (never an outgoing port).

    A port from that range is released while its node is down and any outgoing connection may take it
    as its source port: measured, a killed Galera node's gcomm port was the source port of another
    node's connection when haven started it again ("Address already in use", the start failed).
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise ClusterError(f"no free port below {low} on 127.0.0.1")


def _not_zombie(pid: int) -> bool:
    try:
        return " Z " not in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return False


__all__ = ["ClusterError", "LoopbackCluster", "Position", "all_synced", "stable_port"]
