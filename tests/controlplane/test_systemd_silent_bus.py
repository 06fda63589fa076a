"""The systemd driver on a silent bus (a frozen controller: its socket accepts, nothing answers): the
calls that arrive together fail together, within about one timeout, not one timeout each in turn."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from haven.controlplane.drivers.systemd import SystemdUnits
from haven.domain.errors import TemporaryError


async def test_calls_waiting_on_a_silent_bus_fail_together(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(path))
    silent.listen(16)  # connections are accepted by the kernel; nobody ever reads them
    units = SystemdUnits(f"unix:path={path}", timeout_s=0.5)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(units.status(f"unit-{i}.service") for i in range(6)), return_exceptions=True
        )
        took = time.monotonic() - started
    finally:
        await units.close()
        silent.close()
    assert all(isinstance(r, TemporaryError) for r in results), results
    assert took < 1.5, took  # one 0.5 s connect timeout, not six in turn (3 s)
    # The next pass tries again (a host that comes back is read again).
    with pytest.raises(TemporaryError):
        await SystemdUnits(f"unix:path={path}", timeout_s=0.2).status("x.service")
