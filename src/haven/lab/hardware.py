"""The lab's power wiring: each compute host's nova-compute (and haven agent) runs while its BMC says On.

Who runs it: haven.lab.lab starts it as ``python -m haven.lab.hardware PLAN.json`` (haven's
own Python), after the BMCs. It polls every host's Redfish BMC (haven.lab.bmc) every
0.3 s; when a BMC reports Off it SIGKILLs that host's processes (its nova-compute and,
where the plan has one, its ``haven agent``: power loss, no graceful shutdown, no message
to anyone), and when it reports On again it starts them anew. A BMC that does not answer
changes nothing. The processes are this watcher's children in its process group, so
stopping the lab's hardware stops them too. Each change is logged and the current pids and
holds are written to ``status_file`` (JSON) for ``haven lab status``.

Holds (drills and tests call ``hold_compute_down`` / ``hold_agent_down`` from any process):
a host's part that is *held* is SIGKILLed and kept down while its BMC stays On, a crash
that does not heal (nova-compute dead on a live host, or haven's agent dead); released, it
is started again at the next poll (within ``POLL_S``) if the BMC says On. Holds live in
``hardware/holds.json`` of the lab folder, so they survive a watcher restart.

A hang (``hang_host``) freezes all of a host's processes with SIGSTOP while its BMC stays On:
a hung host, powered but silent on every channel. Released, they continue (SIGCONT). A
power-off ends it as it ends a real hang: the frozen processes are SIGKILLed (a stopped
process dies of SIGKILL without being continued) and the hang is cleared, so powering the
host on starts them afresh. The frozen parts are in the status file (``frozen``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haven.lab.bmc import BmcInfo, power_state
from haven.lab.process import LabServiceError

POLL_S = 0.3
NOVA_COMPUTE = "nova-compute"
AGENT = "agent"
PARTS = (NOVA_COMPUTE, AGENT)
HANG = "hang"  # a hold of the whole host: its processes frozen, not killed
HOLDS_FILE = "holds.json"


# ---- holds: the control file, written by drills and tests, read by the watcher ---------------


def hold_compute_down(folder: Path, host: str, held: bool) -> None:
    """Crash ``host``'s nova-compute and keep it down while its BMC stays On (``held``), or let it run.

    Returns at once; the watcher SIGKILLs (or restarts) the process within ``POLL_S``, and the
    lab's status (``compute_pids``) then shows its pid gone (or back).
    """
    _set_hold(folder, host, NOVA_COMPUTE, held)


def hold_agent_down(folder: Path, host: str, held: bool) -> None:
    """Kill ``host``'s haven agent (SIGKILL: its leases expire after their TTL) and keep it down, or not."""
    _set_hold(folder, host, AGENT, held)


def hang_host(folder: Path, host: str, hung: bool) -> None:
    """Freeze ``host``'s nova-compute and agent (SIGSTOP) while its BMC stays On (``hung``), or not.

    Returns at once; the watcher freezes (or continues) them within ``POLL_S``: the lab's status
    (``frozen``) then lists them. A power-off through the BMC kills them and ends the hang.
    """
    _set_hold(folder, host, HANG, hung)


def read_holds(folder: Path) -> dict[str, list[str]]:
    """host -> its holds (``nova-compute``, ``agent`` held down, or ``hang``); hosts without are left out."""
    try:
        raw = json.loads((folder / "hardware" / HOLDS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        str(h): sorted(str(p) for p in parts) for h, parts in raw.items() if isinstance(parts, list) and parts
    }


def _set_hold(folder: Path, host: str, part: str, held: bool) -> None:
    known = _plan_hosts(folder)
    if host not in known:
        raise LabServiceError(
            f"no compute host {host!r} in the lab at {folder}; its hosts: {', '.join(known)}"
        )
    with _locked(folder / "hardware" / (HOLDS_FILE + ".lock")):
        holds = {h: set(parts) for h, parts in read_holds(folder).items()}
        parts = holds.setdefault(host, set())
        (parts.add if held else parts.discard)(part)
        _write_json(folder / "hardware" / HOLDS_FILE, {h: sorted(p) for h, p in holds.items() if p})


def _plan_hosts(folder: Path) -> list[str]:
    try:
        plan = json.loads((folder / "hardware" / "plan.json").read_text())
    except (OSError, ValueError) as exc:
        raise LabServiceError(f"no lab hardware in {folder} (start one with `haven lab up`)") from exc
    return [str(entry["bmc"]["host"]) for entry in plan["computes"]]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes changing the holds (read-modify-write)."""
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_json(path: Path, value: object) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)


# ---- the watcher ----------------------------------------------------------------------------


@dataclass
class _Part:
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    frozen: bool = False  # SIGSTOPped by a hang (poll() still sees it running: it has not exited)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.running else None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL ends a stopped process too, no SIGCONT needed
            self.process.wait()
        self.frozen = False

    def freeze(self) -> None:
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGSTOP)
            self.frozen = True

    def thaw(self) -> None:
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGCONT)
        self.frozen = False


@dataclass
class _Host:
    bmc: BmcInfo
    parts: dict[str, _Part] = field(default_factory=dict)


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def _hosts(plan: dict[str, Any]) -> list[_Host]:
    hosts = []
    for entry in plan["computes"]:
        host = _Host(BmcInfo(**entry["bmc"]))
        host.parts[NOVA_COMPUTE] = _Part(list(entry["argv"]), Path(entry["log"]))
        if entry.get("agent"):
            host.parts[AGENT] = _Part(list(entry["agent"]["argv"]), Path(entry["agent"]["log"]))
        hosts.append(host)
    return hosts


def _follow(host: _Host, power: str | None, held: list[str]) -> None:
    """Make the host's processes match its power, its holds and its hang."""
    name = host.bmc.host
    hung = HANG in held
    for part_name, part in host.parts.items():
        if power == "Off" and part.running:
            was = " (frozen)" if part.frozen else ""
            part.kill()
            _say(f"{name}: BMC says Off, killed {part_name}{was}")
        elif part_name in held and part.running:
            part.kill()
            _say(f"{name}: {part_name} held down, killed it (SIGKILL)")
        elif hung and part.running and not part.frozen:
            part.freeze()
            _say(f"{name}: host hangs, froze {part_name} (SIGSTOP)")
        elif not hung and part.frozen:
            part.thaw()
            _say(f"{name}: hang released, continued {part_name} (SIGCONT)")
        elif power == "On" and part_name not in held and not hung and not part.running:
            part.start()
            _say(f"{name}: BMC says On, started {part_name}")


def run(plan: dict[str, Any]) -> None:
    password = Path(plan["password_file"]).read_text().strip()
    status_file = Path(plan["status_file"])
    folder = status_file.parent.parent
    hosts = _hosts(plan)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last: dict[str, Any] = {}
    while not stopping:
        holds = read_holds(folder)
        for host in hosts:
            power = power_state(host.bmc, password)
            _follow(host, power, holds.get(host.bmc.host, []))
            if power == "Off" and HANG in holds.get(host.bmc.host, []):
                _set_hold(folder, host.bmc.host, HANG, False)  # the power-off ended the hang
                _say(f"{host.bmc.host}: powered off, so it no longer hangs")
        now = {
            "pid": os.getpid(),
            "computes": {h.bmc.host: h.parts[NOVA_COMPUTE].pid for h in hosts},
            "agents": {h.bmc.host: h.parts[AGENT].pid for h in hosts if AGENT in h.parts},
            "holds": holds,
            "frozen": _frozen(hosts),
        }
        if now != last:
            _write_json(status_file, now)
            last = now
        time.sleep(POLL_S)
    parts = [part for host in hosts for part in host.parts.values()]
    for part in parts:  # a graceful lab stop: let each process stop cleanly
        if part.running and part.process is not None:
            part.thaw()  # a frozen process would hold SIGTERM until it is continued
            part.process.terminate()
    for part in parts:
        if part.process is not None:
            try:
                part.process.wait(10)
            except subprocess.TimeoutExpired:
                part.kill()


def _frozen(hosts: list[_Host]) -> dict[str, list[str]]:
    frozen = {h.bmc.host: sorted(n for n, p in h.parts.items() if p.frozen and p.running) for h in hosts}
    return {host: parts for host, parts in frozen.items() if parts}


def main() -> None:
    run(json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()
