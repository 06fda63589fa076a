"""A real etcd member (Debian's etcd-server, /usr/bin/etcd) on free loopback ports, in a folder of its own.

Who calls it: ``haven drill leader-loss`` (which needs an etcd and starts its own) and the tests'
fixtures (tests/servers/etcd.py), which add crash/pause/restart on top. Built on
haven.lab.process: the member runs in its own process group and is stopped exactly.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from haven.lab.process import LabProcess, free_port

ETCD = "/usr/bin/etcd"
START_TIMEOUT_S = 20


class EtcdServer:
    """One etcd member; ``url`` (etcd://...) is what haven takes, ``http_url`` what HTTP clients take."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary = binary
        self.folder = folder
        self.client_port = free_port()
        self.peer_port = free_port()
        self.http_url = f"http://127.0.0.1:{self.client_port}"
        self.url = f"etcd://127.0.0.1:{self.client_port}"
        self.cluster = "test"
        self.process: LabProcess | None = None

    def argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            str(self.binary), "--name", "haven-test", "--data-dir", str(self.folder / "data"),
            "--listen-client-urls", self.http_url, "--advertise-client-urls", self.http_url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"haven-test={peer}", "--log-level", "warn",
        ]  # fmt: skip

    def ready(self) -> bool:
        try:
            health: object = httpx.get(f"{self.http_url}/health", timeout=0.5).json().get("health")
        except (httpx.HTTPError, ValueError):
            return False
        return health == "true"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self) -> None:
        if self.running:
            return
        self.process = LabProcess("etcd", self.argv(), self.folder / "etcd.log").start()
        self.process.wait_until(self.ready, START_TIMEOUT_S, "health")

    def kill(self) -> None:
        """SIGKILL: a crash. Leases survive in the data dir (etcd gives them a full TTL on start)."""
        if self.process is not None:
            self.process.signal(signal.SIGKILL)
            assert self.process.process is not None
            self.process.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: etcd stays connected but answers nothing (a wedged server or a silent network)."""
        if self.process is not None:
            self.process.signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        self.kill()
        self.start()
