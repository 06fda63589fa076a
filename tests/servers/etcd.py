"""A real etcd (Debian's etcd-server, /usr/bin/etcd) for tests, on free loopback ports.

``etcd_server`` (session): one single-member etcd with a temporary data dir, client and peer ports
free on 127.0.0.1, stopped at the end of the session. ``etcd`` (function): the same server, made
sure to be running before the test (a previous test may have killed it) and after it: a test may
``kill()`` (SIGKILL), ``pause()``/``resume()`` (SIGSTOP/SIGCONT), ``stop()``, ``start()`` or
``restart()`` it; the data dir survives, as it would
in production. Each test gets its own ``cluster`` name (``etcd.cluster``), so keys never collide.

Import the fixtures in a conftest.py: ``from servers.etcd import etcd, etcd_server  # noqa: F401``.
Without /usr/bin/etcd the tests skip, unless CI is set (then they fail).
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers.process import ServerProcess, free_port, require

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
        self.process: ServerProcess | None = None

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
            return httpx.get(f"{self.http_url}/health", timeout=0.5).json().get("health") == "true"
        except (httpx.HTTPError, ValueError):
            return False

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def start(self) -> None:
        if self.running:
            return
        self.process = ServerProcess("etcd", self.argv(), self.folder / "etcd.log").start()
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


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    binary = require(ETCD, "etcd-server")
    folder = Path(tempfile.mkdtemp(prefix="haven-etcd-"))
    server = EtcdServer(binary, folder)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def etcd(etcd_server: EtcdServer) -> Iterator[EtcdServer]:
    etcd_server.start()
    etcd_server.cluster = f"t{uuid.uuid4().hex[:10]}"
    yield etcd_server
    etcd_server.resume()
    etcd_server.start()
