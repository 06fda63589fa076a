"""The host's vital processes (nova-compute, libvirtd, ovs-vswitchd, ...): gone -> STOPPED, back -> STARTED.

Who calls it: ``haven.agent.runner`` runs ``ProcessWatch.run`` every ``process_interval_s`` with a
callback that spools a PROCESS notification (masakari-monitors' process monitor payload:
``{"event": "STOPPED", "process_name": ...}``).

Unlike masakari's process monitor the agent restarts nothing (systemd does that) and sends STARTED
when a process it reported as stopped is running again, so the engine can re-enable the compute
service. A process missing at the agent's start is reported too: it is as down as one that died.

Processes are found by reading /proc (no psutil): a process matches a name when its ``comm``, the
base name of its argv[0], or the base name of a script argv[1] run by an interpreter (``python3
/usr/bin/nova-compute``) equals the name, and, where a cmdline pattern is configured for that name
(``process_cmdline``), its command line (arguments joined by spaces) contains the pattern: one
machine running several nova-computes (haven's lab) tells them apart by their config files. In a
container, the agent needs the host's PID namespace (``--pid=host``) to see them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

log = logging.getLogger("haven.agent")

PROC = Path("/proc")


def _names_of(pid_dir: Path) -> tuple[set[str], str]:
    """The names a process answers to, and its command line (arguments joined by spaces)."""
    names: set[str] = set()
    try:
        names.add((pid_dir / "comm").read_text().strip())
        argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
    except OSError:  # gone meanwhile, or not ours to read
        return names, ""
    decoded = [a.decode(errors="replace") for a in argv if a]
    args = [os.path.basename(a) for a in decoded[:2]]
    if args:
        names.add(args[0])
        if len(args) > 1 and not args[1].startswith("-"):
            names.add(args[1])  # an interpreter's script: python3 /usr/bin/nova-compute
    return names, " ".join(decoded)


def running_names(
    wanted: Iterable[str], proc: Path = PROC, cmdline: Mapping[str, str] | None = None
) -> set[str]:
    """Which of ``wanted`` have at least one live process (zombies do not count).

    ``cmdline``: name -> a text that process's command line must contain to count.
    """
    wanted, patterns = set(wanted), cmdline or {}
    found: set[str] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2 :].startswith("Z"):
            continue
        names, command = _names_of(entry)
        found |= {n for n in names & wanted if patterns.get(n, "") in command}
        if found == wanted:
            break
    return found


class ProcessWatch:
    def __init__(
        self,
        names: Iterable[str],
        on_change: Callable[[str, bool], None],
        *,
        interval_s: float = 5.0,
        proc: Path = PROC,
        cmdline: Mapping[str, str] | None = None,
    ) -> None:
        self.names = tuple(names)
        self.cmdline = dict(cmdline or {})
        self.on_change = on_change
        self.interval_s = interval_s
        self.proc = proc
        self.reported_down: set[str] = set()

    def check(self) -> None:
        """One pass: report each process that went missing, and each reported one that is back."""
        self._apply(running_names(self.names, self.proc, self.cmdline))

    async def run(self) -> None:
        while True:
            # /proc of a busy host has thousands of entries: read it off the event loop.
            up = await asyncio.to_thread(running_names, self.names, self.proc, self.cmdline)
            self._apply(up)
            await asyncio.sleep(self.interval_s)

    def _apply(self, up: set[str]) -> None:
        for name in self.names:
            if name not in up and name not in self.reported_down:
                log.warning("process %s is not running", name)
                self.reported_down.add(name)
                self.on_change(name, False)
            elif name in up and name in self.reported_down:
                log.info("process %s is running again", name)
                self.reported_down.discard(name)
                self.on_change(name, True)
