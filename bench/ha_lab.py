"""kill -9 of one nova-api replica on the HA lab, under client load through HAProxy: figures.

    .venv/bin/python bench/ha_lab.py [--folder LAB] [--runs 5] [--clients 4]

Without ``--folder`` it starts ``haven lab up --ha --computes 1`` in a temporary folder and stops it
at the end; with it, it uses the HA lab running there (``haven lab up --ha --folder LAB``). Needs root.

Each run alternates the victim controller (ctl-1, ctl-2): ``clients`` threads list servers through
nova-api's HAProxy frontend (a token from Keystone's frontend) while the replica's main process is
SIGKILLed. Every 0.1 s it reads HAProxy's own ``show servers state`` and systemd's unit state over the
controller's D-Bus. It prints per run: requests and requests/s, failed requests (an exception or a
status other than 200), and the seconds after the kill until HAProxy marked the member DOWN (None: its
``fall 3`` was not reached before the replica answered again), until systemd had the unit active again
(NRestarts + 1: the unit's ``Restart=on-failure``, or ``haven serve`` if it restarts it first), until
the new replica answered its version document directly, and until HAProxy's check health counter was
back at its top (``rise`` passed checks after the failed ones: healthy again in HAProxy's eyes), with
the lowest counter seen, and the slowest answer a client had; then the medians.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from haven.lab import ha, lab
from haven.lab.keystone import Account


def run_once(labf: Path, cluster: ha.HaLab, host: str, clients: int) -> dict[str, object]:
    password = (labf / "keystone" / "admin-password").read_text().strip()
    token = Account(cluster.frontend_url("keystone") + "/v3", "admin", password, "admin").token()
    url = cluster.frontend_url("nova-api") + "/v2.1/servers"
    ctl = cluster.controller(host)
    _active, restarts0 = ha.unit_state(ctl, "nova-api.service")
    victim = ha.main_pid(ctl, "nova-api.service")
    done, errors, stop = [0], [], threading.Event()
    slowest = [0.0]

    def client() -> None:
        with httpx.Client(timeout=10.0) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status = http.get(url, headers={"X-Auth-Token": token}).status_code
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                done[0] += 1
                slowest[0] = max(slowest[0], time.monotonic() - sent)
                if status != 200:
                    errors.append(f"HTTP {status}")

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    direct = f"http://{ctl.address}:{cluster.ports['nova-api']}/"
    down_s = restarted_s = answers_s = healthy_s = None
    lowest = ha.HEALTHY
    while time.monotonic() - killed < 60 and healthy_s is None:
        elapsed = time.monotonic() - killed
        op, health = ha.check_health(cluster)[("nova_api", host)]
        lowest = min(lowest, health)
        if down_s is None and op != "up":
            down_s = elapsed
        if restarted_s is None:
            active, restarts = ha.unit_state(ctl, "nova-api.service")
            if active == "active" and restarts > restarts0:
                restarted_s = elapsed
        if restarted_s is not None and answers_s is None and _answers(direct):
            answers_s = elapsed
        if answers_s is not None and lowest < ha.HEALTHY and op == "up" and health == ha.HEALTHY:
            healthy_s = elapsed
        time.sleep(0.1)
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(15)
    seconds = time.monotonic() - killed + 2.0
    return {
        "victim": host, "requests": done[0], "rps": round(done[0] / seconds, 1), "failed": len(errors),
        "down_s": _r(down_s), "restarted_s": _r(restarted_s), "answers_s": _r(answers_s),
        "healthy_s": _r(healthy_s), "lowest_health": lowest, "slowest_s": _r(slowest[0]),
        "first_error": errors[:1],
    }  # fmt: skip


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=None, help="a running HA lab (default: start one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    labf = args.folder or Path(tempfile.mkdtemp(prefix="hv-ha-bench-"))
    if args.folder is None:
        print(f"starting an HA lab in {labf}", flush=True)
        lab.up(labf, computes=1, ha=True, progress=lambda m: print(f"  {m}", flush=True))
    try:
        state = lab.running(labf)
        if state is None or not state.ha:
            print(f"no HA lab runs in {labf}: start one with `haven lab up --ha --folder {labf}`")
            return 2
        cluster = ha.from_state(state.ha)
        rows = []
        for index in range(args.runs):
            row = run_once(labf, cluster, ha.CONTROLLERS[index % 2], args.clients)
            rows.append(row)
            print(row, flush=True)
            time.sleep(3.0)  # the survivor settles; the other replica rises
        print(f"\nkill -9 of one nova-api replica, {args.clients} clients through HAProxy, {args.runs} runs:")
        for key in (
            "rps",
            "failed",
            "down_s",
            "restarted_s",
            "answers_s",
            "healthy_s",
            "lowest_health",
            "slowest_s",
        ):
            values = [float(v) for r in rows if isinstance(v := r[key], int | float)]
            median = statistics.median(values) if values else None
            print(f"  {key:<12} median {median}   all {[r[key] for r in rows]}")
        return 0
    finally:
        if args.folder is None:
            lab.down(labf)


if __name__ == "__main__":
    sys.exit(main())
