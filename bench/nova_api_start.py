"""How long a killed nova-api replica of the HA lab takes to serve again, and the CPU it burns meanwhile.

    nice -n 19 .venv/bin/python bench/nova_api_start.py --folder LAB [--runs 5] [--host ctl-1]
                                                        [--token warm|cold]

No haven runs: nothing but the unit's ``Restart=`` and ``RestartSec=1`` brings the replica back (run it on
an HA lab with no ``haven serve``). Per run it SIGKILLs the unit's main process (gunicorn's master, as the
kill drill does), then reads, for systemd's new main process:

- ``exec_s``: when it was started (its start time in ``/proc/PID/stat``, seconds after the kill: systemd's
  ``RestartSec`` and its own work);
- ``root_s``: when it first answered ``GET /`` (the version document, HAProxy's check) directly on the
  replica, seconds after its exec; ``servers_s``: when it then first answered an authenticated
  ``GET /v2.1/servers`` (the kill drill's request), seconds after its exec;
- ``root_cpu_s``, ``servers_cpu_s``: the CPU seconds (user + system) its processes had burnt by then:
  gunicorn's master, its worker(s) and any child already reaped (the master's ``cutime``/``cstime``), read
  from ``/proc`` right after each answer. Unlike wall seconds, CPU seconds do not shrink on a quieter
  machine: they are the floor of the restart on this hardware whatever the load;
- ``fork_s``: when gunicorn's worker was forked, seconds after the exec (the master's own start).

``--token warm`` (default): the authenticated request carries a token every replica validated before the
kill (in the controllers' memcached: keystonemiddleware finds it there); ``cold``: a token fetched from
Keystone right after the kill, never validated anywhere, so the new process has it validated by Keystone.
Medians at the end. docs/controlplane.md ("The floor of a nova-api restart") has the figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import ha_lab  # bench/, on sys.path when run as a script
import httpx

from haven.lab import ha, lab
from haven.lab.process import LabServiceError

UNIT = "nova-api.service"
TICK = os.sysconf("SC_CLK_TCK")
KEYS = ("exec_s", "fork_s", "root_s", "servers_s", "root_cpu_s", "servers_cpu_s", "worker_cpu_s",
        "runq_wait_s", "blocked_s")  # fmt: skip


def stat_fields(pid: int) -> list[str]:
    """``/proc/PID/stat`` from its third field on (state, ppid, ...): the command may hold spaces."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def started_at(pid: int) -> float:
    """When ``pid`` started, on CLOCK_BOOTTIME (the clock ``/proc/PID/stat``'s start time counts in)."""
    return int(stat_fields(pid)[19]) / TICK


def cpu_s(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (with ``reaped``: its waited-for children's too)."""
    fields = stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of ``pid``'s main thread (the kernel's
    ``/proc/PID/schedstat``): the rest of its life it was blocked (I/O, a connect, a lock, a sleep)."""
    on_cpu, waiting, _slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    return int(on_cpu) / 1e9, int(waiting) / 1e9


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu(master: int) -> tuple[float, float]:
    """(the master's, its live workers' and reaped children's CPU seconds; the live workers' alone)."""
    workers = 0.0
    for child in children(master):
        try:
            workers += cpu_s(child)
        except OSError:
            continue
    return cpu_s(master, reaped=True) + workers, workers


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _new_main_pid(controller: ha.Controller, old: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            pid = ha.main_pid(controller, UNIT)
        except (LabServiceError, OSError):
            pid = 0
        if pid and pid != old:
            return pid
        time.sleep(0.05)
    raise SystemExit(f"{UNIT} on {controller.host} has no new main process {timeout_s:g} s after the kill")


def _first_answer(url: str, token: str | None, deadline: float) -> None:
    """Send until ``url`` answers 200: a refused connect is retried at once (20 ms); an accepted one
    waits in the replica's backlog until its worker takes it, so the answer marks the first moment."""
    headers = {"X-Auth-Token": token} if token else {}
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, headers=headers, timeout=120.0, trust_env=False)
        except httpx.TransportError:
            time.sleep(0.02)
            continue
        if response.status_code == 200:
            return
        time.sleep(0.02)
    raise SystemExit(f"{url} did not answer 200 in time")


def run(labf: Path, cluster: ha.HaLab, host: str, cold: bool) -> dict[str, object]:
    controller = cluster.controller(host)
    ha_lab._settled(cluster)
    base = f"http://{controller.address}:{cluster.ports['nova-api']}"
    token = ha_lab._token(labf, cluster)
    if not cold:  # validated on every replica first: keystonemiddleware's cache (memcached) has it
        for c in cluster.active:
            ha_lab._warm(f"http://{c.address}:{cluster.ports['nova-api']}/v2.1/servers", token)
    old = ha.main_pid(controller, UNIT)
    killed = _now()
    os.kill(old, signal.SIGKILL)
    if cold:
        token = ha_lab._token(labf, cluster)  # new, validated nowhere
    master = _new_main_pid(controller, old)
    exec_at = started_at(master)
    deadline = time.monotonic() + 120.0
    _first_answer(base + "/", None, deadline)
    root_at = _now()
    root_cpu, _ = tree_cpu(master)
    workers = children(master)
    fork_at = started_at(workers[0]) if workers else None
    # The worker's main thread imports nova and loads the app: from its fork to the first answer it was
    # on a CPU, waiting for one (the machine's load), or blocked; the same for the master before it.
    master_cpu, master_wait = schedstat(master)
    worker_cpu, worker_wait = schedstat(workers[0]) if workers else (0.0, 0.0)
    worker_wall = root_at - fork_at if fork_at is not None else 0.0
    _first_answer(base + "/v2.1/servers", token, deadline)
    servers_at = _now()
    servers_cpu, workers_cpu = tree_cpu(master)
    return {
        "victim": host, "token": "cold" if cold else "warm", "master": master, "workers": workers,
        "exec_s": round(exec_at - killed, 2),
        "fork_s": round(fork_at - exec_at, 2) if fork_at is not None else None,
        "root_s": round(root_at - exec_at, 2), "servers_s": round(servers_at - exec_at, 2),
        "root_cpu_s": round(root_cpu, 2), "servers_cpu_s": round(servers_cpu, 2),
        "worker_cpu_s": round(workers_cpu, 2),
        # at the first GET / answer: the master's main thread (it forks, then only watches), the
        # worker's main thread from its fork: on a CPU, waiting for one, blocked
        "master_main": (round(master_cpu, 2), round(master_wait, 2)),
        "worker_main": (round(worker_cpu, 2), round(worker_wait, 2),
                        round(worker_wall - worker_cpu - worker_wait, 2)),
        "runq_wait_s": round(master_wait + worker_wait, 2),
        "blocked_s": round(worker_wall - worker_cpu - worker_wait, 2),
        "load": ha_lab._loadavg(),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, required=True, help="a running HA lab, no haven serve on it")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--host", choices=ha.CONTROLLERS, default=None,
                        help="the victim (default: ctl-1 and ctl-2 in turn)")  # fmt: skip
    parser.add_argument("--token", choices=("warm", "cold"), default="warm")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    state = lab.running(args.folder)
    if state is None or not state.ha:
        print(f"no HA lab runs in {args.folder}: start one with `haven lab up --ha --folder {args.folder}`")
        return 2
    cluster = ha.from_state(state.ha)
    rows = []
    for index in range(args.runs):
        host = args.host or ha.CONTROLLERS[index % 2]
        row = run(args.folder, cluster, host, args.token == "cold")
        rows.append(row)
        print(row, flush=True)
        time.sleep(3.0)
    print(f"\nkill -9 of nova-api's main process, {len(rows)} runs, token {args.token}:")
    for key in KEYS:
        values = [float(v) for r in rows if isinstance(v := r[key], int | float)]
        median = round(statistics.median(values), 2) if values else None
        print(f"  {key:<14} median {median}   all {[r[key] for r in rows]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
