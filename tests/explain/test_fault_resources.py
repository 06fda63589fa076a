"""haven.drill.faults_resources' bookkeeping on real processes, without a lab (a few seconds).

A crash loop kills and starts a real process group again and again and its heal leaves exactly one
running, recorded where the lab would record it; CPU starvation moves a real busy process into a cgroup
whose quota the kernel enforces (its own CPU accounting shows it held), and the heal moves it back and
removes the cgroup. The lab runs of these faults are bench/explain.py's and `haven drill fault`'s
(docs/explanations.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.domain.errors import PermanentError
from haven.drill.faults import CATALOG, FAULTS, LabProcess
from haven.drill.faults_process import process_image
from haven.drill.faults_resources import (
    CrashLoop,
    cast_body,
    cpu_hierarchy,
    cpu_starved,
    group_members,
    watermark_args,
)
from haven.lab.state import start_time


class ProcessLab:
    """The part of FaultLab a crash loop and CPU starvation use: one process record per name."""

    folder = Path("/nonexistent")

    def __init__(self, records: dict[str, LabProcess]) -> None:
        self.records = records
        self.replaced: list[tuple[int, int]] = []

    def process(self, name: str) -> LabProcess:
        return self.records[name]

    def alive(self, process: LabProcess) -> bool:
        return start_time(process.pid) == process.started and _state(process.pid) not in ("Z", "X")

    def restarted(self, old: LabProcess, pid: int) -> None:
        self.replaced.append((old.pid, pid))
        self.records[old.name] = LabProcess(old.name, pid, start_time(pid) or 0, old.log)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ProcessLab, subprocess.Popen[bytes]]]:
    """A 'service': a shell in a session of its own with a child, as the lab starts its services."""
    log = tmp_path / "svc.log"
    started = subprocess.Popen(["/bin/sh", "-c", "sleep 300 & sleep 300"], start_new_session=True,
                               stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(0.2)
    lab = ProcessLab({"svc": LabProcess("svc", started.pid, start_time(started.pid) or 0, log)})
    yield lab, started
    for record in [lab.records["svc"]]:
        if lab.alive(record):
            os.killpg(record.pid, signal.SIGKILL)
    started.wait(5)


def test_a_crash_loop_kills_each_start_and_its_heal_leaves_one_running(
    service: tuple[ProcessLab, subprocess.Popen[bytes]],
) -> None:
    lab, first = service
    entry = lab.process("svc")
    argv, env, cwd = process_image(entry.pid)
    assert len(group_members(entry.pid)) == 3  # the shell and its two sleeps
    loop = CrashLoop(lab, entry, argv, env, cwd, down_s=0.2, up_s=0.3)  # type: ignore[arg-type]
    loop.begin()
    seen_running = 0
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        seen_running += lab.alive(lab.process("svc"))
        time.sleep(0.05)
    loop.heal()
    assert loop.kills >= 3 and loop.starts >= 3, (loop.kills, loop.starts)
    assert 0 < seen_running < 60  # up between kills, down most of the time
    now = lab.process("svc")
    assert lab.alive(now) and now.pid == loop.current.pid
    assert Path(f"/proc/{now.pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"/bin/sh", b"-c"]
    # every process it started before is dead, with its whole group (the shell's sleep too)
    earlier = [new for _, new in lab.replaced if new != now.pid]
    assert first.wait(5) == -signal.SIGKILL
    assert all(_state(pid) in ("Z", "X") for pid in earlier)
    assert all(not group_members(pid) or all(_state(p) in ("Z", "X") for p in group_members(pid))
               for pid in earlier)  # fmt: skip
    # healed once more: the loop stopped; the running one is left alone
    time.sleep(0.6)
    assert lab.alive(now) and lab.process("svc") == now


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _writable_cpu_cgroup() -> bool:
    try:
        hierarchy = cpu_hierarchy()
    except PermanentError:
        return False
    return os.access(hierarchy.root, os.W_OK)


@pytest.mark.skipif(not _writable_cpu_cgroup(), reason="needs a writable cgroup cpu controller (root)")
def test_cpu_starvation_is_enforced_by_the_kernel_and_healed(tmp_path: Path) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        lab = ProcessLab({"busy": LabProcess("busy", busy.pid, start_time(busy.pid) or 0, tmp_path / "l")})
        hierarchy = cpu_hierarchy()
        came_from = hierarchy.of(busy.pid)
        heal = cpu_starved("busy", quota_us=1_000, period_us=100_000)(lab)  # type: ignore[arg-type]
        cgroup = hierarchy.of(busy.pid)
        assert cgroup.name == f"haven-fault-busy-{busy.pid}" and cgroup != came_from
        before, t0 = _cpu_seconds(busy.pid), time.monotonic()
        time.sleep(2.0)
        starved = (_cpu_seconds(busy.pid) - before) / (time.monotonic() - t0)
        heal()
        assert hierarchy.of(busy.pid) == came_from and not cgroup.exists()
        assert starved <= 0.03, f"held to 1 % of a CPU, used {starved:.1%}"
    finally:
        busy.kill()
        busy.wait(5)


def test_the_watermark_read_back_is_what_the_heal_sets() -> None:
    assert watermark_args("0.4") == ["0.4"]
    assert watermark_args("{absolute,104857600}") == ["absolute", "104857600"]
    with pytest.raises(PermanentError, match="not a fraction"):
        watermark_args("{error,badarg}")


def test_a_backlog_cast_is_an_oslo_messaging_envelope_of_a_conductor_object_call() -> None:
    one, two = json.loads(cast_body()), json.loads(cast_body())
    assert one["oslo.version"] == "2.0"
    message = json.loads(one["oslo.message"])
    assert message["method"] == "object_class_action_versions" and message["version"] == "3.0"
    # a read of Nova's database each (Service.get_minimum_version is answered from the conductor's cache)
    assert (message["args"]["objname"], message["args"]["objmethod"]) == ("ComputeNodeList", "get_all")
    assert message["_unique_id"] != json.loads(two["oslo.message"])["_unique_id"]  # not deduplicated


def test_the_new_faults_are_in_the_catalogue_with_root_causes() -> None:
    new = {"glance-crashloop": "glance-api", "rabbitmq-memory-alarm": "rabbitmq",
           "rabbitmq-disk-full": "rabbitmq", "conductor-backlog": "rabbitmq",
           "placement-cpu-starved": "placement-api"}  # fmt: skip
    assert {name: FAULTS[name].root for name in new} == new
    assert len(CATALOG) == len(FAULTS)
