"""Real systemd and HAProxy for the control plane's driver tests, started and stopped by the fixtures.

systemd 252 runs as PID 1 of its own PID, mount and UTS namespaces (``unshare --pid --fork --mount
--mount-proc --uts``), with ``SYSTEMD_UNIT_PATH`` set to a temporary folder only: none of the machine's
own units is seen, so nothing of the machine is started, cleaned or changed (no sysinit.target, no
tmpfiles). Its D-Bus is a dbus-daemon it starts from that folder on a socket there;
``DBUS_SYSTEM_BUS_ADDRESS`` tells systemd (and haven) where. Stopping kills exactly that namespace's
PID 1, which ends everything in it.

HAProxy (Debian's) runs in the foreground on free loopback ports with a temporary config and an admin
stats socket. Both need root and the Debian packages of scripts/install-system-deps.sh; without them the
tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

import pytest

SYSTEMD = "/lib/systemd/systemd"
DBUS_DAEMON = "/usr/bin/dbus-daemon"
HAPROXY = "/usr/sbin/haproxy"

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>systemd:</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


T = TypeVar("T")


async def until(read: Callable[[], Awaitable[T]], ok: Callable[[T], bool], limit_s: float) -> T:
    """Read until ``ok``; fails with the last value read after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        value = await read()
        if ok(value):
            return value
        assert time.monotonic() < deadline, f"last read: {value}"
        await asyncio.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _need(*paths: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (systemd as PID 1 of a namespace, HAProxy's admin socket)")
    for path in paths:
        if not os.path.exists(path):
            pytest.skip(f"{path} missing: run scripts/install-system-deps.sh")


def http_unit(port: int, restart: str = "no", extra: str = "", bind: str = "127.0.0.1") -> str:
    """A tiny HTTP service as a unit: Python's http.server on bind:port, serving an empty folder."""
    return (
        "[Unit]\nDefaultDependencies=no\n[Service]\nRuntimeDirectory=haven-web-%N\n"
        f"ExecStart=/usr/bin/python3 -m http.server {port} --bind {bind} --directory /run/haven-web-%N\n"
        f"Restart={restart}\nRestartSec=1\n{extra}"
    )


@dataclass
class NamespacedSystemd:
    folder: Path
    bus_address: str
    unshare: subprocess.Popen[bytes]
    pid1: int  # PID 1 of the namespace, as the host sees it

    def add_unit(self, name: str, text: str) -> None:
        """Write a unit file, then reload systemd so it sees it."""
        (self.folder / "units" / name).write_text(text)
        subprocess.run(
            ["busctl", "--system", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
             "org.freedesktop.systemd1.Manager", "Reload"],
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}, check=True, capture_output=True,
            timeout=10,
        )  # fmt: skip

    def main_pid(self, unit: str) -> int:
        out = subprocess.run(
            ["busctl", "--system", "get-property", "org.freedesktop.systemd1",
             f"/org/freedesktop/systemd1/unit/{_escape(unit)}", "org.freedesktop.systemd1.Service",
             "MainPID"],
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}, check=True, capture_output=True,
            text=True, timeout=10,
        ).stdout.split()  # fmt: skip
        # MainPID is the pid in the namespace; find the host's pid through NSpid.
        ns_pid = int(out[1])
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:"):
                    pids = line.split()[1:]
                    if len(pids) == 2 and int(pids[1]) == ns_pid and _in_namespace(int(pids[0]), self.pid1):
                        return int(pids[0])
        raise AssertionError(f"no host pid for {unit}'s MainPID {ns_pid}")


def _in_namespace(pid: int, pid1: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{pid1}/ns/pid")
    except OSError:
        return False


def _escape(unit: str) -> str:
    return "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)


@pytest.fixture
def systemd_ns() -> Iterator[NamespacedSystemd]:
    """One systemd as PID 1 of its own namespaces: one simulated controller."""
    _need(SYSTEMD, DBUS_DAEMON, "/usr/bin/unshare", "/usr/bin/busctl")
    with _systemd() as started:
        yield started


@pytest.fixture
def systemd_hosts() -> Iterator[Callable[[], NamespacedSystemd]]:
    """Start as many systemd namespaces as a test asks for (one per simulated controller)."""
    _need(SYSTEMD, DBUS_DAEMON, "/usr/bin/unshare", "/usr/bin/busctl")
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(_systemd())


@contextlib.contextmanager
def _systemd() -> Iterator[NamespacedSystemd]:
    folder = Path(tempfile.mkdtemp(prefix="hv-sd-"))  # short: a unix socket path must fit in 108 bytes
    units = folder / "units"
    units.mkdir()
    bus = folder / "bus"
    (folder / "bus.conf").write_text(_BUS_CONF)
    (units / "haven-test.target").write_text(
        "[Unit]\nDefaultDependencies=no\nWants=dbus.socket dbus.service\n"
    )
    (units / "dbus.socket").write_text(f"[Unit]\nDefaultDependencies=no\n[Socket]\nListenStream={bus}\n")
    (units / "dbus.service").write_text(
        "[Unit]\nDefaultDependencies=no\nRequires=dbus.socket\n[Service]\n"
        f"ExecStart={DBUS_DAEMON} --config-file={folder}/bus.conf --nofork --nopidfile\n"
    )
    address = f"unix:path={bus}"
    env = {**os.environ, "SYSTEMD_UNIT_PATH": str(units), "DBUS_SYSTEM_BUS_ADDRESS": address}
    log = (folder / "systemd.log").open("wb")
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--uts", SYSTEMD, "--system",
         "--unit=haven-test.target", "--log-target=console"],
        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    pid1 = 0
    try:
        pid1 = _child_of(unshare.pid, 5.0)
        _wait_for_systemd_on_bus(address, 10.0, unshare)
        yield NamespacedSystemd(folder, address, unshare, pid1)
    finally:
        if pid1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid1, signal.SIGKILL)  # that namespace's PID 1: everything in it ends with it
        try:
            unshare.wait(10)
        except subprocess.TimeoutExpired:
            unshare.kill()
            unshare.wait(5)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _child_of(pid: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.02)
    raise AssertionError("unshare started no systemd")


def _wait_for_systemd_on_bus(address: str, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"systemd exited with {proc.returncode}")
        done = subprocess.run(
            ["busctl", "--system", "get-property", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
             "org.freedesktop.systemd1.Manager", "Version"],
            env=env, capture_output=True, timeout=5,
        )  # fmt: skip
        if done.returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"systemd did not appear on its bus within {timeout_s} s")


@dataclass
class RunningHAProxy:
    socket_path: str
    frontend_port: int
    process: subprocess.Popen[bytes]


@pytest.fixture
def haproxy_factory() -> Iterator[object]:
    """``start(backend, servers, httpchk=None)``: HAProxy with one frontend to one backend; servers: name ->
    port; checked by TCP connect, or by ``option httpchk GET <httpchk>`` when given."""
    _need(HAPROXY)
    started: list[tuple[subprocess.Popen[bytes], Path]] = []
    logs: list[IO[bytes]] = []

    def start(
        backend: str, servers: dict[str, int | tuple[str, int]], httpchk: str | None = None
    ) -> RunningHAProxy:
        folder = Path(tempfile.mkdtemp(prefix="hv-hap-"))
        sock = folder / "admin.sock"
        port = free_port()
        at = {name: p if isinstance(p, tuple) else ("127.0.0.1", p) for name, p in servers.items()}
        lines = "\n".join(
            f"    server {name} {ip}:{p} check inter 1s fall 3 rise 2" for name, (ip, p) in at.items()
        )
        (folder / "haproxy.cfg").write_text(
            f"global\n    stats socket {sock} mode 600 level admin\n    log stdout format raw local0 err\n"
            "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
            f"frontend fe\n    bind 127.0.0.1:{port}\n    default_backend {backend}\n"
            f"backend {backend}\n" + (f"    option httpchk GET {httpchk}\n" if httpchk else "") + f"{lines}\n"
        )
        logs.append((folder / "haproxy.log").open("wb"))
        proc = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(folder / "haproxy.cfg")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logs[-1],
        )  # fmt: skip
        started.append((proc, folder))
        deadline = time.monotonic() + 5
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not start: {(folder / 'haproxy.log').read_text()}")
            time.sleep(0.02)
        return RunningHAProxy(str(sock), port, proc)

    yield start
    for proc, folder in started:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(folder, ignore_errors=True)
    for log in logs:
        log.close()
