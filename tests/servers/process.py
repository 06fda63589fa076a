"""Running a real server for a test: free loopback ports, start, wait until ready, stop exactly it.

Fixtures that start etcd, RabbitMQ, the BMC emulators, Keystone, ... build on this, so
each one only says how to launch its server and how to tell that it is ready.

``ServerProcess`` starts its command in a new session (its own process group), writes
its output to a log file in the fixture's folder, and on ``stop`` sends SIGTERM to that
group, then SIGKILL after a grace period: whatever the server spawned goes too, and
nothing else does. ``require`` turns a missing binary into a skip on a developer's
machine and a failure in CI (where ``make system-deps`` must have installed it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require(path: str | Path, package: str) -> Path:
    """``path`` if it exists; else skip (or fail under CI) naming the Debian package."""
    found = Path(path)
    if found.exists():
        return found
    message = f"{found} not found (install it: apt-get install {package}, or make system-deps)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this real-server test must run: {message}", pytrace=False)
    pytest.skip(message)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class ServerProcess:
    """One server process (and its children), logging to ``log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``ready`` until true; fail with the server's log if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no {what} after {timeout_s} s:\n{self.log_tail()}")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the whole process group (e.g. SIGKILL to simulate a crash)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def stop(self, grace_s: float = 10.0) -> None:
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(5)
        # Children that outlived their parent still carry its group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
