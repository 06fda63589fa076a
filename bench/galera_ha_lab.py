"""Galera as systemd units on the HA lab's controllers, recovered by haven through systemd: medians.

    nice -n 19 .venv/bin/python bench/galera_ha_lab.py [--runs 5] [--json]      (root)

Starts two controllers (Debian's systemd as PID 1 of their own namespaces, no OpenStack units: what
``haven lab up --ha`` runs Galera on) and the lab's 3-node cluster as units on them
(haven.lab.ha_stateful), then, the node rotating each run:
1. node loss: a writer commits through another node; the node's unit is killed (SIGKILL to mariadbd
   through systemd, Restart=no); haven's recovery loop (systemd driver, journal in a store) starts it.
   Measured from the kill: seconds until every server reports a 3-node primary component, Synced;
   the client writes that failed; acknowledged rows missing afterwards.
2. full outage: a writer runs; the node dies first, the other two 20 acknowledged writes later (no
   unit stopped cleanly). Then haven's loop starts. Measured from its start: seconds until a write is
   acknowledged again, until all three are Synced; rows missing on any node; whether the one
   bootstrap was on the node with the highest seqno (read by the bench from grastate.dat or its own
   ``--wsrep-recover``), and new clusters formed (Galera's own log).
The machine's load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from haven.domain.clock import RealClock
from haven.domain.errors import HavenError
from haven.lab import ha, ha_stateful
from haven.lab.ha_stateful import HaGalera
from haven.stateful.drills import NEW_GROUP
from haven.stateful.galera import DecisionKind, GaleraDecision
from haven.stateful.galera_node import MARIADBD
from haven.stateful.galera_recovery import GaleraRecovery
from haven.stateful.galera_systemd import SystemdGaleraNode
from haven.stateful.writer import Writer, missing, prepare
from haven.store import Store


def _size(node: SystemdGaleraNode) -> int:
    try:
        return asyncio.run(node.live()).cluster_size
    except HavenError:
        return 0


def _synced(galera: HaGalera) -> bool:
    for node in galera.nodes:
        try:
            live = asyncio.run(node.live())
        except HavenError:
            return False
        if not (live.primary and live.local_state == "Synced" and live.cluster_size == 3):
            return False
    return True


def _until(check: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"no {what} in {timeout_s:g} s")
        time.sleep(0.1)


def _check(decision: GaleraDecision, since: float, timeout_s: float = 240.0) -> None:
    """A hold, or no recovery in ``timeout_s``, ends the bench with the reason (never a silent hang)."""
    if decision.kind is DecisionKind.HOLD:
        raise SystemExit(f"haven held: {decision.alert}")
    if time.monotonic() - since > timeout_s:
        raise SystemExit(
            f"not recovered in {timeout_s:g} s; last decision {decision.kind}: {decision.reason}"
        )


def _seqno(node: SystemdGaleraNode) -> int:
    layout = node.layout
    found = re.search(r"seqno:\s*(-?\d+)", (layout.data / "grastate.dat").read_text())
    seqno = int(found.group(1)) if found else -1
    if seqno != -1:
        return seqno
    log = layout.folder / "bench-recover.log"
    subprocess.run(
        [str(MARIADBD), f"--defaults-file={layout.cnf}", "--wsrep-recover", f"--log-error={log}"],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    return int(re.findall(r"Recovered position: [0-9a-f-]+:(-?\d+)", log.read_text())[-1])


def _marks(galera: HaGalera) -> dict[str, int]:
    return {n.name: (n.layout.folder / "error.log").stat().st_size for n in galera.nodes}


def _new_groups(galera: HaGalera, marks: dict[str, int]) -> int:
    total = 0
    for node in galera.nodes:
        with open(node.layout.folder / "error.log", "rb") as log:
            log.seek(marks[node.name])
            total += log.read().count(NEW_GROUP)
    return total


def node_loss(galera: HaGalera, name: str, start_id: int) -> dict[str, Any]:
    victim = galera.node(name)
    other = next(n for n in galera.nodes if n.name != name)
    writer = Writer([other.layout.socket], start_id=start_id).start()
    try:
        _until(lambda: len(writer.acked) >= 10, "10 writes")
        killed = time.monotonic()
        asyncio.run(victim.kill())
        recovery = GaleraRecovery.on_store(galera.nodes, Store.open("sqlite://"), "bench", RealClock())

        async def heal() -> None:
            while not await asyncio.to_thread(_synced, galera):
                _check(await recovery.run_pass(), killed)
                await asyncio.sleep(0.5)

        asyncio.run(heal())
        back = time.monotonic() - killed
    finally:
        writer.stop()
    lost = sum(len(missing(n.layout.socket, writer.acked)) for n in galera.nodes)
    return {"node": name, "back_s": round(back, 2), "failed_writes": writer.failed, "rows_missing": lost}


def full_outage(galera: HaGalera, name: str, start_id: int) -> dict[str, Any]:
    first = galera.node(name)
    last_two = [n for n in galera.nodes if n is not first]
    writer = Writer([n.layout.socket for n in last_two], start_id=start_id).start()
    try:
        _until(lambda: len(writer.acked) >= 10, "10 writes")
        asyncio.run(first.kill())
        _until(lambda: _size(last_two[0]) == 2, "the survivors evicting the first node down")
        acked = len(writer.acked)
        _until(lambda: len(writer.acked) >= acked + 20, "20 writes without the first node")

        async def cut() -> None:
            await asyncio.gather(*(n.kill() for n in last_two))

        asyncio.run(cut())
    finally:
        writer.stop()
    seqnos = {n.name: _seqno(n) for n in galera.nodes}
    marks = _marks(galera)
    store = Store.open("sqlite://")
    recovery = GaleraRecovery.on_store(galera.nodes, store, "bench", RealClock())
    probe = Writer([n.layout.socket for n in galera.nodes], start_id=start_id + 50_000, timeout_s=2.0)
    started = time.monotonic()
    served: float | None = None

    async def heal() -> None:
        nonlocal served
        probe.start()
        while not await asyncio.to_thread(_synced, galera):
            _check(await recovery.run_pass(), started)
            if served is None and probe.acked:
                served = time.monotonic() - started
            await asyncio.sleep(0.5)

    try:
        asyncio.run(heal())
        synced = time.monotonic() - started
    finally:
        probe.stop()
    if served is None and probe.acked:
        served = synced
    bootstraps = [a.node for a in store.galera_actions_since("bench", 0.0) if a.kind == "bootstrap"]
    lost = sum(len(missing(n.layout.socket, writer.acked + probe.acked)) for n in galera.nodes)
    return {
        "first_down": name, "writes_served_s": round(served or -1.0, 2), "all_synced_s": round(synced, 2),
        "rows_missing": lost, "acked": len(writer.acked), "seqnos": seqnos, "bootstraps": bootstraps,
        "from_highest": len(bootstraps) == 1 and seqnos[bootstraps[0]] == max(seqnos.values()),
        "new_clusters": _new_groups(galera, marks),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: systemd runs as PID 1 of its own namespace", file=sys.stderr)
        return 2
    folder = Path(tempfile.mkdtemp(prefix="haven-galera-ha-bench-"))
    folder.chmod(0o755)
    controllers: list[ha.Controller] = []
    losses: list[dict[str, Any]] = []
    outages: list[dict[str, Any]] = []
    loads: list[float] = []
    try:
        for index, host in enumerate(ha.CONTROLLERS, start=1):
            controllers.append(
                ha._start_controller(folder / host, host, f"127.0.1.{index}", folder, {}, (), {}, "no")
            )
        for controller in controllers:
            ha._wait_for_bus(controller, 15.0)
        galera = ha_stateful.start_galera(controllers, folder / "galera", lambda _m: None)
        prepare(galera.nodes[0].layout.socket)
        for run in range(args.runs):
            name = galera.nodes[run % 3].name
            loads.append(os.getloadavg()[0])
            losses.append(node_loss(galera, name, 100_000_000 * (run + 1)))
            print(f"run {run + 1}: node loss {losses[-1]}", file=sys.stderr)
            outages.append(full_outage(galera, name, 100_000_000 * (run + 1) + 10_000_000))
            print(f"run {run + 1}: full outage {outages[-1]}", file=sys.stderr)
            loads.append(os.getloadavg()[0])
    finally:
        ha.stop(ha.HaLab(folder, controllers, (), {}, {}))
        shutil.rmtree(folder, ignore_errors=True)
    summary = {
        "cluster_formed_s": galera.started_in_s,
        "node_loss_back_s_median": statistics.median(r["back_s"] for r in losses),
        "node_loss_back_s_max": max(r["back_s"] for r in losses),
        "node_loss_failed_writes_total": sum(r["failed_writes"] for r in losses),
        "node_loss_rows_missing_total": sum(r["rows_missing"] for r in losses),
        "full_outage_writes_served_s_median": statistics.median(r["writes_served_s"] for r in outages),
        "full_outage_all_synced_s_median": statistics.median(r["all_synced_s"] for r in outages),
        "full_outage_all_synced_s_max": max(r["all_synced_s"] for r in outages),
        "full_outage_rows_missing_total": sum(r["rows_missing"] for r in outages),
        "full_outage_acked_total": sum(r["acked"] for r in outages),
        "bootstrap_from_highest": f"{sum(r['from_highest'] for r in outages)}/{len(outages)}",
        "new_clusters_per_outage": [r["new_clusters"] for r in outages],
        "load_average_1m": f"{min(loads):.1f}-{max(loads):.1f}",
        "runs": args.runs,
    }
    if args.json:
        print(json.dumps({"summary": summary, "node_loss": losses, "full_outage": outages}, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
