"""The lab's power wiring and a hung host (haven.lab.hardware): frozen, killed by a power-off, restarted.

Real child processes (``sleep``) stand in for nova-compute and the agent, and ``_follow`` is the
watcher's one decision per poll: so SIGSTOP, SIGKILL of a stopped process and SIGCONT are checked
against the kernel's own view (/proc/PID/stat), without a lab. The whole drill runs on the lab in
tests/drill/test_lab_drills.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.lab.bmc import BmcInfo
from haven.lab.hardware import AGENT, HANG, NOVA_COMPUTE, _follow, _Host, _Part, hang_host, read_holds


def proc_state(pid: int) -> str:
    """The kernel's state letter: S sleeping, T stopped; gone once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def until_state(pid: int, wanted: str) -> str:
    deadline = time.monotonic() + 5
    while (state := proc_state(pid)) != wanted and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


@pytest.fixture
def host(tmp_path: Path) -> Iterator[_Host]:
    h = _Host(BmcInfo("compute-1", "", "", ""))
    for name in (NOVA_COMPUTE, AGENT):
        h.parts[name] = _Part(["sleep", "60"], tmp_path / f"{name}.log")
    yield h
    for part in h.parts.values():
        part.kill()


def test_a_hung_host_is_frozen_not_killed_and_continues_when_released(host: _Host) -> None:
    _follow(host, "On", [])
    pids = {n: p.pid for n, p in host.parts.items()}
    assert all(pids.values())
    _follow(host, "On", [HANG])
    assert all(p.frozen and p.running for p in host.parts.values())
    assert {n: until_state(pid, "T") for n, pid in pids.items() if pid} == dict.fromkeys(pids, "T")
    _follow(host, "On", [HANG])  # another poll changes nothing: not started twice, still frozen
    assert {n: p.pid for n, p in host.parts.items()} == pids
    _follow(host, "On", [])
    assert not any(p.frozen for p in host.parts.values())
    assert {n: p.pid for n, p in host.parts.items()} == pids  # the same processes, continued
    assert {until_state(pid, "S") for pid in pids.values() if pid} == {"S"}


def test_a_power_off_kills_the_frozen_processes_and_power_on_starts_new_ones(host: _Host) -> None:
    _follow(host, "On", [])
    _follow(host, "On", [HANG])
    frozen = [p.pid for p in host.parts.values()]
    _follow(host, "Off", [HANG])
    assert not any(p.running or p.frozen for p in host.parts.values())
    assert {proc_state(pid) for pid in frozen if pid} == {"gone"}  # SIGKILL, no SIGCONT needed
    _follow(host, "Off", [])  # powered off: nothing starts
    assert not any(p.running for p in host.parts.values())
    _follow(host, "On", [])
    restarted = [p.pid for p in host.parts.values()]
    assert all(restarted) and not set(restarted) & set(frozen)
    assert not any(p.frozen for p in host.parts.values())


def test_a_hang_is_a_hold_of_the_whole_host_in_the_control_file(tmp_path: Path) -> None:
    (tmp_path / "hardware").mkdir()
    computes = [
        {"bmc": {"host": "compute-1", "url": "", "username": "", "system_id": ""}, "argv": [], "log": ""}
    ]
    (tmp_path / "hardware" / "plan.json").write_text(json.dumps({"computes": computes}))
    hang_host(tmp_path, "compute-1", True)
    assert read_holds(tmp_path) == {"compute-1": [HANG]}
    hang_host(tmp_path, "compute-1", False)
    assert read_holds(tmp_path) == {}
