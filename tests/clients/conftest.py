"""A real `haven serve` process for the real clients (openstacksdk, the openstack CLI).

Each server gets a free loopback port and its own HAVEN_HOME; the fixture waits until
``GET /`` answers, and at the end stops the process with SIGINT and asserts that it
exited 0 having said "stopped cleanly". Its log goes to a file, so tests can read
what the server printed (the injected failure) while it runs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HAVEN = str(Path(sys.executable).with_name("haven"))
OPENSTACK = str(Path(sys.executable).with_name("openstack"))
START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HavenServer:
    home: Path
    url: str  # http://127.0.0.1:PORT, without a trailing slash
    token: str
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def endpoint(self) -> str:
        """Masakari's endpoint as a catalog would list it."""
        return f"{self.url}/v1"

    def haven(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """Run another haven command (status, hosts, notifications...) on this server's home."""
        env = {**os.environ, "HAVEN_HOME": str(self.home)}
        return subprocess.run(
            [HAVEN, *argv], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def hosts(self) -> list[dict[str, object]]:
        listed = self.haven("hosts", "--json")
        assert listed.returncode == 0, listed.stderr
        hosts: list[dict[str, object]] = json.loads(listed.stdout)
        return hosts

    def wait_for_log(self, pattern: str, timeout_s: float = 20.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (found := re.search(pattern, self.log.read_text())) is not None:
                return found
            assert self.proc.poll() is None, f"haven serve exited: {self.log.read_text()}"
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not in the log within {timeout_s} s:\n{self.log.read_text()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_haven(home: Path, *argv: str, config: str = "") -> Iterator[HavenServer]:
    """`haven serve ARGV` on a free loopback port, until the generator is closed."""
    home.mkdir(parents=True)
    if config:
        (home / "haven.toml").write_text(config)
    port = free_port()
    log = home.parent / f"{home.name}-serve.log"
    env = {**os.environ, "HAVEN_HOME": str(home)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [HAVEN, "serve", "--bind", f"127.0.0.1:{port}", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_answering(url, proc, log)
        token = (home / "token").read_text().strip()
        yield HavenServer(home, url, token, log, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()
    assert "stopped cleanly" in log.read_text()


def _wait_until_answering(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert proc.poll() is None, f"haven serve exited with {proc.returncode}:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"haven serve did not answer GET / in time:\n{log.read_text()}"
        time.sleep(0.1)


# A monitor's report about a host haven still hears fails after external_report_wait_s (default
# 30 s): the tests of such a report check that it fails before any fence, not how long it waits.
SHORT_EXTERNAL_REPORT_WAIT = "[detection]\nexternal_report_wait_s = 2.0\n"


@pytest.fixture(scope="module")
def haven_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    """A plain `haven serve` (simulated cloud of 30 hosts in 3 zones), shared by a module's tests;
    a report about a live host fails after 2 s instead of 30 s."""
    yield from start_haven(tmp_path_factory.mktemp("haven") / "home", config=SHORT_EXTERNAL_REPORT_WAIT)


@pytest.fixture
def unique() -> Callable[[str], str]:
    counter = iter(range(1_000_000))
    return lambda prefix: f"{prefix}-{os.getpid()}-{time.monotonic_ns()}-{next(counter)}"
