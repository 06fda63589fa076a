"""One lab service process: start it in its own process group, wait until ready, stop exactly it.

Who calls it: the lab's service launchers (haven.lab.keystone today; Nova, Placement and
the BMC emulators with ``haven lab up``). Each service runs in a new session, so stopping
it signals its whole process group (a WSGI server's workers included) and nothing else.
Output goes to a log file in the service's folder; its tail is quoted when a start fails.
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

from haven.domain.errors import HavenError


class LabServiceError(HavenError):
    """A lab service would not start or set up; the message quotes its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LabProcess:
    """A server process (and whatever it spawns), logging to ``log``."""

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

    def start(self) -> LabProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``ready`` until true; raise with the server's log if it exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise LabServiceError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            if ready():
                return
            time.sleep(0.05)
        raise LabServiceError(f"{self.name}: no {what} after {timeout_s} s:\n{self.log_tail()}")

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


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def run_checked(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> str:
    """Run a set-up command to completion; its output, or LabServiceError quoting its tail."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise LabServiceError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout
