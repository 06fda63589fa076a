"""The lab's hardware as a drill controls it: each host's Redfish BMC, and its processes' wiring.

Called by haven.cli.cloud_drill (`haven drill ... --cloud lab`), the lab tests and
bench/lab.py. haven.drill must not import haven.lab, so these implementations of its
PowerControl, ComputeControl, HangControl and BmcRecords protocols live here and are handed
in. The BMC calls block (httpx), so they run in a worker thread; the BMC password is read
from the lab's private file and never shown. LabBmcRecords reads each BMC emulator's own
power record (its ``power.json``, see haven.lab.bmc_entry), not Redfish: the drills' witness.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from haven.domain.errors import PermanentError, TemporaryError, UserError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.drill.cloud_prep import HostProcess
from haven.lab import hardware, lab
from haven.lab.bmc import BmcInfo, PowerRecord, bmc_folder, power_state, read_power_record, set_power
from haven.lab.labfiles import compute_pids
from haven.lab.process import LabServiceError
from haven.lab.state import LabState

_POWER = {"On": BmcPower.ON, "Off": BmcPower.OFF}
HANG_TIMEOUT_S = 5.0  # the wiring polls every 0.3 s


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

    async def hang(self, host: HostName) -> None:
        await asyncio.to_thread(hardware.hang_host, self._folder, str(host), True)
        deadline = time.monotonic() + HANG_TIMEOUT_S
        while not _all_frozen(await self.processes(host)):
            if time.monotonic() > deadline:
                await self.release_hang(host)
                raise TemporaryError(f"the lab's wiring did not freeze {host} within {HANG_TIMEOUT_S:g} s")
            await asyncio.sleep(0.1)

    async def release_hang(self, host: HostName) -> None:
        await asyncio.to_thread(hardware.hang_host, self._folder, str(host), False)

    async def processes(self, host: HostName) -> Sequence[HostProcess]:
        """nova-compute and the haven agent of ``host``, from the wiring's status file."""
        try:
            status = json.loads((self._folder / "hardware" / "status.json").read_text())
        except (OSError, ValueError) as exc:
            raise TemporaryError(f"the lab's hardware status cannot be read: {exc}") from None
        frozen = set(status.get("frozen", {}).get(str(host), []))
        parts = [(hardware.NOVA_COMPUTE, "computes"), (hardware.AGENT, "agents")]
        return [
            HostProcess(name, status[key].get(str(host)), name in frozen)
            for name, key in parts
            if str(host) in status.get(key, {})
        ]

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


def _all_frozen(processes: Sequence[HostProcess]) -> bool:
    return bool(processes) and all(p.frozen for p in processes)


class LabBmcRecords:
    """Each lab BMC's own record of its power (``bmcs/HOST/power.json``), read as a file: no Redfish.

    The emulator writes it under the lock its power reads and resets take, before answering a
    reset, so a state any Redfish client saw is already in the file.
    """

    def __init__(self, state: LabState) -> None:
        self._folders = {HostName(h): bmc_folder(Path(state.folder), h) for h in state.bmcs}

    def kept(self) -> bool:
        """Whether every BMC keeps a record (a lab started before they did keeps none)."""
        return bool(self._folders) and all(read_power_record(f) is not None for f in self._folders.values())

    async def power_status(self, host: HostName) -> BmcPower:
        return _POWER.get(self._record(host).power, BmcPower.UNKNOWN)

    async def off_at(self, host: HostName, after: float) -> float | None:
        return self._record(host).off_at(after)

    def _record(self, host: HostName) -> PowerRecord:
        folder = self._folders.get(host)
        if folder is None:
            raise PermanentError(f"the lab has no BMC for {host}")
        record = read_power_record(folder)
        if record is None:
            raise TemporaryError(f"the BMC of {host} keeps no power record in {folder}")
        return record
