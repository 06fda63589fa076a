"""The lab's hardware as a drill controls it: each host's Redfish BMC, and its nova-compute wiring.

Called by haven.cli.cloud_drill (`haven drill ... --cloud lab`), the lab tests and
bench/lab.py. haven.drill must not import haven.lab, so these implementations of its
PowerControl and ComputeControl protocols live here and are handed in. The BMC calls
block (httpx), so they run in a worker thread; the BMC password is read from the lab's
private file and never shown.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from haven.domain.errors import PermanentError, TemporaryError, UserError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.lab import hardware, lab
from haven.lab.bmc import BmcInfo, power_state, set_power
from haven.lab.labfiles import compute_pids
from haven.lab.process import LabServiceError
from haven.lab.state import LabState

_POWER = {"On": BmcPower.ON, "Off": BmcPower.OFF}


def running_lab(folder: Path | None) -> LabState:
    """The lab running in ``folder`` (default: `haven lab up`'s); a clear error when none runs there."""
    where = (folder or lab.default_folder()).expanduser().absolute()
    state = lab.running(where)
    if state is None:
        raise UserError(
            f"no lab runs in {where}",
            "start one with `haven lab up` (or name the folder of a running lab with --lab-folder)",
        )
    return state


class LabPower:
    """The lab's BMCs (one Redfish emulator per compute host), as a drill's PowerControl."""

    def __init__(self, state: LabState) -> None:
        self._bmcs = {HostName(host): BmcInfo(**fields) for host, fields in state.bmcs.items()}
        self._password = Path(state.files["bmc-password"]).read_text().strip()

    async def power_off(self, host: HostName) -> None:
        await self._set(host, "ForceOff")

    async def power_on(self, host: HostName) -> None:
        await self._set(host, "On")

    async def power_status(self, host: HostName) -> BmcPower:
        answer = await asyncio.to_thread(power_state, self._bmc(host), self._password)
        return _POWER.get(answer or "", BmcPower.UNKNOWN)

    async def _set(self, host: HostName, reset: str) -> None:
        try:
            await asyncio.to_thread(set_power, self._bmc(host), self._password, reset)
        except LabServiceError as exc:
            raise TemporaryError(str(exc)) from None
        except OSError as exc:
            raise TemporaryError(f"BMC of {host} did not answer: {exc}") from None

    def _bmc(self, host: HostName) -> BmcInfo:
        try:
            return self._bmcs[host]
        except KeyError:
            raise PermanentError(f"the lab has no BMC for {host}") from None


class LabComputes:
    """The lab's power wiring as a drill's ComputeControl: a host's nova-compute held down, or let run."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    async def hold_down(self, host: HostName) -> None:
        await self._hold(host, True)

    async def release(self, host: HostName) -> None:
        await self._hold(host, False)

    async def _hold(self, host: HostName, held: bool) -> None:
        hold = getattr(hardware, "hold_compute_down", None)
        if hold is not None:
            await asyncio.to_thread(hold, self._folder, str(host), held)
            return
        # A lab without holds: a SIGKILL, which its watcher heals at once (a short crash only).
        pid = compute_pids(self._folder).get(str(host))
        if held and pid:
            os.kill(pid, signal.SIGKILL)
