"""The HA lab's controllers over the session's lab: kill -9 of a nova-api replica under client load.

Reuses the session lab (tests/servers/nova.py) and starts over it what ``haven lab up --ha`` adds
(haven.lab.ha.start): two controllers, each Debian's systemd as PID 1 of its own namespace with its
keystone.service and nova-api.service (``haven lab up --ha`` also has placement-api and glance-api:
left out here to keep the test short), and Debian's HAProxy in front. The session lab's catalog is
left alone (other tests share it); the client goes through HAProxy's frontends directly. Judged from
what the client saw, from HAProxy's own ``show servers state`` and from systemd's unit state over its
D-Bus. Needs root (skipped without, like the control plane's driver tests).

The second test needs no lab: ``haven lab down``'s stop of a namespace's PID 1 (a SIGKILL to exactly
it: an init ignores a SIGTERM it has no handler for, and systemd takes it as "re-execute").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from haven.lab import ha
from haven.lab.keystone import Account
from haven.lab.process import LabProcess
from haven.lab.state import alive, record, stop_processes
from haven.lab.toolenv import ensure_tool_env
from servers.nova import NovaLab


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def ha_lab(nova_lab: NovaLab) -> Iterator[ha.HaLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root (systemd as PID 1 of a PID namespace)")
    for path in (ha.SYSTEMD, ha.DBUS_DAEMON, ha.HAPROXY):
        if not Path(path).exists():
            pytest.skip(f"{path} missing: run scripts/install-system-deps.sh")
    venvs = {tool: ensure_tool_env(tool) for tool in ("keystone", "nova")}
    namespaces: list[int] = []
    processes: list[LabProcess] = []
    started: ha.HaLab | None = None
    try:
        started = ha.start(
            nova_lab.folder,
            venvs,
            lambda _name, pid1, _log: namespaces.append(pid1),
            processes.append,
            lambda _message: None,
            apis=tuple(api for api in ha.APIS if api.service in ("keystone", "nova-api")),  # short
        )
        yield started
    finally:
        if started is not None:
            ha.stop(started)
        for process in processes:
            process.stop(grace_s=5)
        for pid1 in namespaces:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid1, signal.SIGKILL)
        ha.reap()


def test_kill_9_of_a_nova_api_replica_costs_no_client_request(nova_lab: NovaLab, ha_lab: ha.HaLab) -> None:
    state = ha.servers_state(ha_lab)
    expected = {(b, c.host) for b in ("keystone", "nova_api") for c in ha_lab.controllers}
    assert set(state) == expected
    assert all(op == "up" for _admin, op in state.values()), state
    # A token through Keystone's frontend, then servers listed through nova-api's, in a loop.
    admin = nova_lab.state.files["clouds.yaml"]
    password = (nova_lab.folder / "keystone" / "admin-password").read_text().strip()
    token = Account(ha_lab.frontend_url("keystone") + "/v3", "admin", password, "admin").token()
    assert admin
    url = ha_lab.frontend_url("nova-api") + "/v2.1/servers"
    answers: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=10.0) as http:
            while not stop.is_set():
                try:
                    status = http.get(url, headers={"X-Auth-Token": token}).status_code
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                answers.append(status)
                if status != 200:
                    errors.append(f"HTTP {status}")

    ctl = ha_lab.controller("ctl-1")
    assert ha.unit_state(ctl, "nova-api.service") == ("active", 0)
    victim = ha.main_pid(ctl, "nova-api.service")
    victim_started = record("victim", victim, Path("/dev/null"))
    loaders = [threading.Thread(target=client) for _ in range(2)]
    for thread in loaders:
        thread.start()
    try:
        time.sleep(1.0)
        before = len(answers)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        lowest, back_s = ha.HEALTHY, None
        direct = f"http://{ctl.address}:{ha_lab.ports['nova-api']}/"
        while time.monotonic() - killed < 45:
            op, health = ha.check_health(ha_lab)[("nova_api", "ctl-1")]
            lowest = min(lowest, health)
            # Back: systemd restarted it, it answers, and HAProxy's checks failed then passed `rise` times.
            if lowest < ha.HEALTHY and (op, health) == ("up", ha.HEALTHY) and _answers(direct):
                back_s = time.monotonic() - killed
                break
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in loaders:
            thread.join(15)
    print(f"\nnova-api@ctl-1 killed: healthy in HAProxy again after {back_s} s (lowest health {lowest}); "
          f"{len(answers)} answers, {len(errors)} errors")  # fmt: skip
    assert not alive(victim_started), "the killed process is gone"
    assert back_s is not None, (
        f"not back within 45 s: lowest health {lowest}, unit {ha.unit_state(ctl, 'nova-api.service')}"
    )
    assert ha.unit_state(ctl, "nova-api.service") == ("active", 1)  # one restart: systemd's Restart=
    assert ha.main_pid(ctl, "nova-api.service") != victim  # systemd's Restart= started a new one
    assert len(answers) > before, "the client kept getting answers during the drill"
    assert errors == [], errors[:5]


def test_lab_down_kills_a_namespace_pid1_at_once(tmp_path: Path) -> None:
    """A PID namespace's init ignores a SIGTERM it has no handler for: down must SIGKILL exactly it."""
    if os.geteuid() != 0:
        pytest.skip("needs root (a PID namespace)")
    unshare = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "sleep", "300"], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 5
        children: list[str] = []
        while not children and time.monotonic() < deadline:
            children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
            time.sleep(0.02)
        entry = record("systemd@ctl-x", int(children[0]), tmp_path / "log", namespace=True)
        started = time.monotonic()
        assert stop_processes([entry], grace_s=20) == ["systemd@ctl-x"]
        assert time.monotonic() - started < 2.0  # SIGKILL at once, not a SIGTERM ignored for 20 s
        assert not alive(entry)
        assert unshare.wait(5) != 0  # unshare reports its child's death by SIGKILL
    finally:
        if unshare.poll() is None:
            unshare.kill()
            unshare.wait(5)
