"""What a running lab is made of, on disk: the processes it started, its ports and files.

Who calls it: haven.lab.lab (``up`` writes it, ``status`` and ``down`` read it, from
any process). Each process is recorded with its pid (also its process group: every lab
service runs in its own session) and its kernel start time, so ``down`` signals exactly
the processes ``up`` started, never a stranger that reused a pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from haven.domain.errors import ConfigError

STATE_FILE = "lab.json"


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    started: int  # the kernel's start time of the pid (clock ticks since boot)
    log: str
    # The PID 1 of a PID namespace (an HA lab controller's systemd): stopped by SIGKILL to exactly
    # it, which ends everything in that namespace (systemd as PID 1 takes SIGTERM as "re-execute").
    namespace: bool = False


@dataclass
class LabState:
    folder: str
    computes: list[str]
    urls: dict[str, str]
    processes: list[ProcessRecord] = field(default_factory=list)
    bmcs: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> BmcInfo fields
    files: dict[str, str] = field(default_factory=dict)  # clouds.yaml, haven.toml, ...
    image_id: str = ""
    flavor: str = ""
    up_in_s: float = 0.0
    ha: dict[str, Any] = field(default_factory=dict)  # haven.lab.ha.describe(); {} for a plain lab

    def save(self) -> None:
        path = Path(self.folder) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)


def load_state(folder: Path) -> LabState | None:
    """The state of the lab in ``folder``, or None when none was started there."""
    path = folder / STATE_FILE
    if not path.exists():
        return None
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
        processes = [ProcessRecord(**entry) for entry in raw.pop("processes")]
        return LabState(**raw, processes=processes)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{path} is not a lab state file ({exc})",
            "remove it if no lab runs there, or use another --folder",
        ) from exc


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid``, or None when no such process lives."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after its closing parenthesis don't.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None  # a zombie is as good as gone
    return int(fields[19])


def record(name: str, pid: int, log: Path, namespace: bool = False) -> ProcessRecord:
    return ProcessRecord(name, pid, start_time(pid) or 0, str(log), namespace)


def alive(entry: ProcessRecord) -> bool:
    return start_time(entry.pid) == entry.started


def stop_processes(entries: list[ProcessRecord], grace_s: float = 20.0) -> list[str]:
    """SIGTERM each live group (newest first), SIGKILL what outlives ``grace_s``; the names stopped."""
    mine = [entry for entry in reversed(entries) if alive(entry)]
    for entry in mine:
        with contextlib.suppress(ProcessLookupError):
            if entry.namespace:
                os.kill(entry.pid, signal.SIGKILL)
            else:
                os.killpg(entry.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(alive(entry) for entry in mine):
        time.sleep(0.1)
    for entry in mine:
        if entry.namespace:
            continue  # its pid is no process group; SIGKILL of it already ended its namespace
        # The group outlives its leader when children linger: kill the group in any case.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(entry.pid, signal.SIGKILL)
    return [entry.name for entry in mine]
