"""The lab's power wiring: each compute host's nova-compute runs while its BMC says On.

Who runs it: haven.lab.lab starts it as ``python -m haven.lab.hardware PLAN.json`` (haven's
own Python), after the BMCs. It polls every host's Redfish BMC (haven.lab.bmc) every
0.3 s; when a BMC reports Off it SIGKILLs that host's nova-compute (power loss: no
graceful shutdown, no message to Nova), and when it reports On again it starts the
compute anew. A BMC that does not answer changes nothing. The computes are this
process's children in its process group, so stopping the lab's hardware stops them too.
Each change is logged and the current pids are written to ``status_file`` (JSON) for
``haven lab status``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haven.lab.bmc import BmcInfo, power_state

POLL_S = 0.3


@dataclass
class _Host:
    bmc: BmcInfo
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def run(plan: dict[str, Any]) -> None:
    password = Path(plan["password_file"]).read_text().strip()
    status_file = Path(plan["status_file"])
    hosts = [
        _Host(BmcInfo(**entry["bmc"]), list(entry["argv"]), Path(entry["log"])) for entry in plan["computes"]
    ]
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    last: dict[str, Any] = {}
    while not stopping:
        for host in hosts:
            state = power_state(host.bmc, password)
            if state == "On" and not host.running:
                host.start()
                _say(f"{host.bmc.host}: BMC says On, started nova-compute")
            elif state == "Off" and host.running:
                host.kill()
                _say(f"{host.bmc.host}: BMC says Off, killed nova-compute")
        now = {h.bmc.host: (h.process.pid if h.process is not None and h.running else None) for h in hosts}
        if now != last:
            tmp = status_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"pid": os.getpid(), "computes": now}))
            tmp.replace(status_file)
            last = now
        time.sleep(POLL_S)
    for host in hosts:  # a graceful lab stop: let each compute stop cleanly
        if host.running and host.process is not None:
            host.process.terminate()
    for host in hosts:
        if host.process is not None:
            try:
                host.process.wait(10)
            except subprocess.TimeoutExpired:
                host.kill()


def main() -> None:
    run(json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()
