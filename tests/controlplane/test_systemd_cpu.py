"""SystemdUnits.cpu_s (the CpuMeter port) against real systemd 252 as PID 1 of its own namespaces.

This machine's systemd 252 runs on a hybrid cgroup hierarchy and reports no CPUUsageNSec (2**64-1,
CPUAccounting=yes or not): the driver reads the unit's cgroup and keeps the processes of the bus's own
PID namespace, because two namespaced systemds (the HA lab's controllers) put their units of one name
in one cgroup. Judged from the kernel's own counts of the processes (/proc/PID/stat).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from haven.controlplane.drivers.systemd import SystemdUnits, bus_namespace
from haven.controlplane.ports import CpuMeter
from haven.domain.controlplane import UnitActive

from .servers import NamespacedSystemd, until

pytestmark = pytest.mark.systemd
SPIN = "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/usr/bin/python3 -c 'while True: pass'\n"
IDLE = "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sleep 600\n"


def _kernel_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_cpu_time_per_controller_though_their_units_share_a_cgroup(
    systemd_hosts: Callable[[], NamespacedSystemd],
) -> None:
    busy_host, idle_host = systemd_hosts(), systemd_hosts()
    busy_host.add_unit("work.service", SPIN)  # one unit name on both: one cgroup on this machine
    idle_host.add_unit("work.service", IDLE)
    busy, idle = SystemdUnits(busy_host.bus_address), SystemdUnits(idle_host.bus_address)
    try:
        assert isinstance(busy, CpuMeter)
        assert bus_namespace(busy_host.bus_address) == os.readlink(f"/proc/{busy_host.pid1}/ns/pid")
        assert bus_namespace("tcp:host=10.0.0.11,port=55556") == ""  # remote: its cgroups are not here
        for units in (busy, idle):
            await units.start("work.service")
        await until(lambda: busy.status("work.service"), lambda s: s.active is UnitActive.ACTIVE, 5)
        await until(lambda: idle.status("work.service"), lambda s: s.active is UnitActive.ACTIVE, 5)
        spun = await until(lambda: busy.cpu_s("work.service"), lambda c: c is not None and c >= 0.2, 20)
        assert spun is not None
        assert abs(spun - _kernel_cpu_s(busy_host.main_pid("work.service"))) < 0.1
        rested = await idle.cpu_s("work.service")
        assert rested is not None and rested < 0.05  # the other controller's spinning one not counted

        # SIGSTOPped (the hang drill): its CPU time stops moving.
        pid = busy_host.main_pid("work.service")
        os.kill(pid, signal.SIGSTOP)
        try:
            stopped = await busy.cpu_s("work.service")
            await asyncio.sleep(0.5)
            assert await busy.cpu_s("work.service") == stopped
        finally:
            os.kill(pid, signal.SIGCONT)

        await busy.stop("work.service")
        await until(lambda: busy.status("work.service"), lambda s: s.active is UnitActive.INACTIVE, 5)
        assert await busy.cpu_s("work.service") is None  # no process: not known (never a false 0)
    finally:
        await busy.close()
        await idle.close()
