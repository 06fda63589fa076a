"""Galera recovery on a real 3-node MariaDB Galera cluster on loopback: medians over several runs.

    .venv/bin/python bench/galera.py [--runs 5] [--json]

Each run, on one cluster formed once (Debian's mariadbd + galera-4, haven.stateful.cluster):
1. node loss: a writer commits through every node in turn; one node (rotating) is killed -9; haven's
   recovery loop restarts it. Measured: seconds until it is Synced in a 3-node primary component again,
   and the client writes that failed.
2. full outage: the writer runs; one node (rotating) dies first, the other two 20 acknowledged writes
   later (a power cut: no clean stop anywhere). Then "power returns": haven's loop starts. Measured:
   seconds until a write is served again, until all three are Synced, acknowledged writes missing
   afterwards on every node, and whether the bootstrapped node had the highest seqno (read by
   ``mariadbd --wsrep-recover`` independently of haven).
Issue 12's targets: node back <= 60 s; writes served <= 120 s after power returns; 0 writes lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from haven.domain.clock import RealClock
from haven.stateful.cluster import LoopbackCluster
from haven.stateful.galera import DecisionKind
from haven.stateful.galera_node import MARIADBD, LocalGaleraNode
from haven.stateful.galera_recovery import GaleraRecovery
from haven.stateful.writer import Writer, missing, prepare
from haven.store import Store


def _recovery(cluster: LoopbackCluster) -> tuple[GaleraRecovery, Store]:
    """The loop as haven runs it: its journal and alerts in a store (here in memory)."""
    store = Store.open("sqlite://")
    return GaleraRecovery.on_store(cluster.nodes, store, "haven", RealClock()), store


def _seqno(node: LocalGaleraNode) -> int:
    layout = node.layout
    text = (layout.data / "grastate.dat").read_text()
    seqno = int(re.search(r"seqno:\s*(-?\d+)", text).group(1))  # type: ignore[union-attr]
    if seqno != -1:
        return seqno
    log = layout.folder / "bench-recover.log"
    argv = [str(MARIADBD), f"--defaults-file={layout.cnf}", "--wsrep-recover", f"--log-error={log}"]
    subprocess.run(argv, capture_output=True, check=True, timeout=120)
    return int(re.findall(r"Recovered position: [0-9a-f-]+:(-?\d+)", log.read_text())[-1])


def _wait(check: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out waiting")
        time.sleep(0.05)


def _size(node: LocalGaleraNode) -> int:
    try:
        return asyncio.run(node.live()).cluster_size
    except Exception:
        return 0


def node_loss(cluster: LoopbackCluster, run: int) -> dict[str, float]:
    victim = cluster.nodes[run % 3]
    others = [n for n in cluster.nodes if n is not victim]
    writer = Writer([n.layout.socket for n in others], start_id=10_000_000 * (run + 1)).start()
    time.sleep(0.5)
    cluster.kill([victim.name])
    killed = time.monotonic()
    recovery, _ = _recovery(cluster)
    decisions = asyncio.run(recovery.run_until_synced(timeout_s=120, interval_s=0.2))
    back = time.monotonic() - killed
    writer.stop()
    assert decisions[-1].kind is DecisionKind.NOTHING, decisions
    lost = len(missing(victim.layout.socket, writer.acked))
    return {"back_s": back, "failed_writes": writer.failed, "writes_lost": lost}


def full_outage(cluster: LoopbackCluster, run: int) -> dict[str, float]:
    first = cluster.nodes[run % 3]
    last_two = [n for n in cluster.nodes if n is not first]
    writer = Writer([n.layout.socket for n in last_two], start_id=10_000_000 * (run + 1) + 5_000_000).start()
    time.sleep(0.5)
    cluster.kill([first.name])
    _wait(lambda: _size(last_two[0]) == 2)
    acked = len(writer.acked)
    _wait(lambda: len(writer.acked) >= acked + 20)
    cluster.kill([n.name for n in last_two])
    writer.stop()
    seqnos = {n.name: _seqno(n) for n in cluster.nodes}
    probe = Writer([n.layout.socket for n in cluster.nodes], start_id=10_000_000 * (run + 1) + 8_000_000)
    recovery, store = _recovery(cluster)
    power_back = time.monotonic()
    probe.start()
    served: list[float] = []

    async def drive() -> None:
        while True:
            decision = await recovery.run_pass()
            if probe.acked and not served:
                served.append(time.monotonic() - power_back)
            if decision.kind in (DecisionKind.NOTHING, DecisionKind.HOLD):
                return
            if time.monotonic() - power_back > 180:
                raise SystemExit("bench: the cluster did not recover in 180 s")
            await asyncio.sleep(0.2)

    asyncio.run(drive())
    synced = time.monotonic() - power_back
    _wait(lambda: bool(probe.acked))
    if not served:
        served.append(time.monotonic() - power_back)
    probe.stop()
    bootstrapped = next(
        a.node for a in store.galera_actions_since("haven") if a.kind == DecisionKind.BOOTSTRAP
    )
    lost = max(len(missing(n.layout.socket, writer.acked)) for n in cluster.nodes)
    return {
        "writes_served_s": served[0], "all_synced_s": synced, "writes_lost": lost, "acked": len(writer.acked),
        "bootstrap_highest": float(seqnos[bootstrapped] == max(seqnos.values())),
        "first_down": float(run % 3 + 1),
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="haven-galera-bench-"))
    started = time.monotonic()
    cluster = LoopbackCluster.create(folder)
    formed = time.monotonic() - started
    try:
        prepare(cluster.nodes[0].layout.socket)
        losses, outages = [], []
        for run in range(args.runs):
            losses.append(node_loss(cluster, run))
            outages.append(full_outage(cluster, run))
            print(f"run {run + 1}: node loss {losses[-1]}  full outage {outages[-1]}", file=sys.stderr)
    finally:
        cluster.remove()

    def med(rows: list[dict[str, float]], key: str) -> float:
        return round(statistics.median(r[key] for r in rows), 2)

    highest = sum(r["bootstrap_highest"] for r in outages)
    result = {
        "runs": args.runs, "cluster_formed_s": round(formed, 2),
        "node_loss": {"back_s_median": med(losses, "back_s"),
                      "back_s_max": round(max(r["back_s"] for r in losses), 2),
                      "failed_writes_total": sum(r["failed_writes"] for r in losses),
                      "writes_lost_total": sum(r["writes_lost"] for r in losses)},
        "full_outage": {"writes_served_s_median": med(outages, "writes_served_s"),
                        "writes_served_s_max": round(max(r["writes_served_s"] for r in outages), 2),
                        "all_synced_s_median": med(outages, "all_synced_s"),
                        "writes_lost_total": sum(r["writes_lost"] for r in outages),
                        "acked_total": sum(r["acked"] for r in outages),
                        "bootstrap_from_highest": f"{highest:.0f}/{args.runs}"},
        "targets": {"node_back_s": 60, "writes_served_s": 120, "writes_lost": 0},
    }  # fmt: skip
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
