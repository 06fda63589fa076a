"""The lab's hardware BMCs: one Redfish emulator (sushy-tools) per compute host, on loopback.

Who calls it: haven.lab.lab (``haven lab up``). Each compute host gets its own BMC, as
real hardware has: a sushy-tools emulator on its own port, backed by libvirt's test
driver with one domain named after the host (see bmc_entry.py), behind basic auth. The
lab's power watcher (haven.lab.hardware) reads each BMC's power state and kills or
restarts that host's nova-compute to match, so powering a host off through its BMC is a
host failure Nova sees, and fencing through it is real.

Each BMC also keeps its own record of its power in ``power.json`` of its folder (written by
bmc_entry.py before each reset is answered); ``read_power_record`` reads it, so a drill's
witness can check the BMC's own state without Redfish or haven's fencer.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

from haven.lab.process import LabProcess, LabServiceError
from haven.lab.toolenv import Progress, ensure_tool_env

TOOL = "sushy-tools"
USER = "admin"
ENTRY = Path(__file__).with_name("bmc_entry.py")
POWER_FILE = "power.json"


@dataclass(frozen=True)
class BmcInfo:
    """How to reach one host's BMC (the password stays in the lab's private files)."""

    host: str
    url: str
    username: str
    system_id: str


def start_bmc(
    folder: Path, host: str, port: int, password: str, progress: Progress | None = None
) -> tuple[BmcInfo, LabProcess]:
    """Start ``host``'s BMC on 127.0.0.1:``port``; return once ``/redfish/v1/`` answers."""
    python = ensure_tool_env(TOOL, progress=progress) / "bin" / "python"
    folder.mkdir(parents=True, exist_ok=True)
    hashing = "import bcrypt,sys; print(bcrypt.hashpw(sys.argv[1].encode(), bcrypt.gensalt(4)).decode())"
    digest = subprocess.run(
        [str(python), "-c", hashing, password], check=True, capture_output=True, text=True
    ).stdout.strip()
    htpasswd = folder / "htpasswd"
    htpasswd.touch(mode=0o600)
    htpasswd.write_text(f"{USER}:{digest}\n")
    conf = folder / "emulator.conf"
    conf.write_text(
        "\n".join([
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
            f"SUSHY_EMULATOR_LISTEN_PORT = {port}",
            f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}",
            f"SUSHY_EMULATOR_STATE_DIR = {str(folder / 'state')!r}",
            "SUSHY_EMULATOR_LIBVIRT_URI = 'test:///default'",
        ]) + "\n"
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    process = LabProcess(
        f"bmc-{host}",
        [str(python), str(ENTRY), host, str(folder / POWER_FILE), "--config", str(conf)],
        folder / "bmc.log",
    )
    process.start()

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/redfish/v1/", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        process.wait_until(ready, 60.0, f"an answer at {url}/redfish/v1/")
    except LabServiceError:
        process.stop()
        raise
    return BmcInfo(host, url, USER, host), process


@dataclass(frozen=True)
class PowerRecord:
    """A BMC's own record of its power: "On" or "Off", since when (epoch seconds), its changes."""

    power: str
    since: float
    changes: tuple[tuple[str, float], ...]  # (power, at), oldest first

    def off_at(self, after: float) -> float | None:
        """When the host was first powered off at or after ``after`` (epoch seconds), if it was."""
        return next((at for power, at in self.changes if power == "Off" and at >= after), None)


def bmc_folder(lab_folder: Path, host: str) -> Path:
    """Where ``haven lab up`` keeps ``host``'s BMC (its config, log and power record)."""
    return lab_folder / "bmcs" / host


def read_power_record(folder: Path) -> PowerRecord | None:
    """The power record of the BMC in ``folder``; None if it keeps none (a lab started before it did)."""
    try:
        raw = json.loads((folder / POWER_FILE).read_text())
        changes = tuple((str(c["power"]), float(c["at"])) for c in raw.get("changes", []))
        return PowerRecord(str(raw["power"]), float(raw["since"]), changes)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def power_state(bmc: BmcInfo, password: str, timeout_s: float = 2.0) -> str | None:
    """The system's PowerState ("On", "Off", ...), or None when the BMC does not answer."""
    try:
        answer = httpx.get(
            f"{bmc.url}/redfish/v1/Systems/{bmc.system_id}",
            auth=(bmc.username, password), timeout=timeout_s, follow_redirects=True,
        )  # fmt: skip
        if answer.status_code != 200:
            return None
        state = answer.json().get("PowerState")
        return str(state) if state is not None else None
    except (httpx.HTTPError, ValueError):
        return None


def set_power(bmc: BmcInfo, password: str, reset_type: str) -> None:
    """Send a Redfish reset (``On``, ``ForceOff``, ...) to the host's system."""
    answer = httpx.post(
        f"{bmc.url}/redfish/v1/Systems/{bmc.system_id}/Actions/ComputerSystem.Reset",
        json={"ResetType": reset_type}, auth=(bmc.username, password), timeout=5.0, follow_redirects=True,
    )  # fmt: skip
    if answer.status_code >= 400:
        raise LabServiceError(f"BMC of {bmc.host}: reset {reset_type} answered {answer.status_code}")
