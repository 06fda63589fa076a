"""haven.controlplane.drivers.systemd against a real systemd 252 as PID 1 of its own namespace."""

from __future__ import annotations

import os
import signal
import time

import pytest

from haven.controlplane.drivers.systemd import SystemdUnits
from haven.domain.controlplane import UnitActive
from haven.domain.errors import TemporaryError

from .servers import NamespacedSystemd, free_port, http_unit, until

pytestmark = pytest.mark.systemd


async def test_read_start_kill_restart_a_unit(systemd_ns: NamespacedSystemd) -> None:
    systemd_ns.add_unit("web.service", http_unit(free_port()))
    units = SystemdUnits(systemd_ns.bus_address)
    try:
        missing = await units.status("nothing-here.service")
        assert not missing.loaded
        idle = await units.status("web.service")
        assert idle.loaded and idle.active is UnitActive.INACTIVE and idle.active_since is None

        await units.start("web.service")
        up = await until(lambda: units.status("web.service"), lambda s: s.active is UnitActive.ACTIVE, 5)
        assert up.sub_state == "running" and up.invocation_id and up.n_restarts == 0
        assert up.active_since is not None and abs(up.active_since - time.time()) < 5

        os.kill(systemd_ns.main_pid("web.service"), signal.SIGKILL)
        dead = await until(lambda: units.status("web.service"), lambda s: s.active is UnitActive.FAILED, 5)
        assert dead.invocation_id == up.invocation_id  # Restart=no: systemd leaves it failed

        await units.restart("web.service")
        again = await until(
            lambda: units.status("web.service"),
            lambda s: s.active is UnitActive.ACTIVE and s.invocation_id != up.invocation_id,
            5,
        )
        assert again.n_restarts == 0  # a restart asked for is not one of systemd's own

        await units.stop("web.service")
        await until(lambda: units.status("web.service"), lambda s: s.active is UnitActive.INACTIVE, 5)
    finally:
        await units.close()


async def test_systemds_own_restarts_show_in_nrestarts(systemd_ns: NamespacedSystemd) -> None:
    systemd_ns.add_unit("flappy.service", http_unit(free_port(), restart="always"))
    units = SystemdUnits(systemd_ns.bus_address)
    try:
        await units.start("flappy.service")
        first = await until(
            lambda: units.status("flappy.service"), lambda s: s.active is UnitActive.ACTIVE, 5
        )
        os.kill(systemd_ns.main_pid("flappy.service"), signal.SIGKILL)
        # While it waits RestartSec, systemd says activating/auto-restart: not failed, nothing to do.
        waiting = await until(lambda: units.status("flappy.service"), lambda s: s.n_restarts == 1, 5)
        assert waiting.active in (UnitActive.ACTIVATING, UnitActive.ACTIVE)
        again = await until(
            lambda: units.status("flappy.service"),
            lambda s: s.active is UnitActive.ACTIVE and s.invocation_id != first.invocation_id,
            5,
        )
        assert again.n_restarts == 1
    finally:
        await units.close()


async def test_an_unreachable_bus_is_a_temporary_error(tmp_path: object) -> None:
    units = SystemdUnits("unix:path=/nonexistent/haven-bus", timeout_s=1.0)
    with pytest.raises(TemporaryError, match="cannot reach systemd's D-Bus"):
        await units.status("web.service")
