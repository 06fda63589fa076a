"""`haven serve` with [stateful.galera] recovering a real 3-node Galera after a full outage: medians.

    .venv/bin/python bench/galera_serve.py [--runs 3] [--json]

A loopback cluster (haven.stateful.cluster) is formed once; a real `haven serve` process runs with a
haven.toml whose [stateful.galera] names the cluster's nodes (driver local, a pass every second). Each
run: a writer commits through the nodes, every server is killed at once (a power cut, while serve keeps
running), and the bench waits until all three are Synced in one primary component of 3. Judged from
the servers and the client, as the drills are (haven.stateful.drills): seconds from the cut to all
synced, acknowledged writes missing on any node, bootstraps counted in the servers' logs. Then serve
is stopped (Ctrl-C) and its journal read back. Every server is stopped at the end: the ones this bench
started and, found by its temporary folder in /proc, the ones haven serve started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from haven.domain.errors import HavenError
from haven.stateful.cluster import LoopbackCluster
from haven.stateful.drills import log_sizes, new_groups, wait
from haven.stateful.galera_node import LocalGaleraNode
from haven.stateful.writer import Writer, missing, prepare
from haven.store import Store

CLUSTER = "bench"


def _synced(nodes: list[LocalGaleraNode]) -> bool:
    try:
        lives = [asyncio.run(n.live()) for n in nodes]
    except HavenError:
        return False
    return all(x.primary and x.local_state == "Synced" and x.cluster_size == len(nodes) for x in lives)


def _kill_all(nodes: list[LocalGaleraNode]) -> None:
    pids = [p for p in (n.pid() for n in nodes) if p is not None]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait(lambda: all(n.pid() is None for n in nodes), "every server gone after SIGKILL", 20)


def one_run(cluster: LoopbackCluster, run: int) -> dict[str, float]:
    nodes = [LocalGaleraNode(n.layout) for n in cluster.nodes]  # serve's servers are not ours: read only
    wait(lambda: _synced(nodes), "a synced cluster before the run", 120)
    writer = Writer([n.layout.socket for n in nodes], start_id=10_000_000 * (run + 1)).start()
    wait(lambda: len(writer.acked) >= 50, "50 acknowledged writes")
    _kill_all(nodes)
    cut = time.monotonic()
    writer.stop()
    marks = log_sizes(cluster)
    wait(lambda: _synced(nodes), "all synced under haven serve", 240)
    synced = time.monotonic() - cut
    lost = max(len(missing(n.layout.socket, writer.acked)) for n in nodes)
    bootstraps = sum(new_groups(n, marks[n.name]) for n in cluster.nodes)
    return {"all_synced_s": synced, "writes_lost": lost, "acked": len(writer.acked), "bootstraps": bootstraps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="haven-galera-serve-bench-"))
    cluster = LoopbackCluster.create(folder)
    serve: subprocess.Popen[bytes] | None = None
    runs: list[dict[str, float]] = []
    journal: list[str] = []
    try:
        prepare(cluster.nodes[0].layout.socket)
        home = folder / "home"
        home.mkdir()
        body = f'[stateful.galera]\ncluster = "{CLUSTER}"\ninterval_s = 1.0\n'
        for n in cluster.nodes:
            body += f'[[stateful.galera.nodes]]\nname = "{n.name}"\nfolder = "{n.layout.folder}"\n'
        (home / "haven.toml").write_text(body)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        haven = str(Path(sys.executable).with_name("haven"))
        with open(folder / "serve.out", "wb") as out:
            serve = subprocess.Popen(
                [haven, "serve", "--bind", f"127.0.0.1:{port}"], env={**os.environ, "HAVEN_HOME": str(home)},
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait(lambda: b"galera: cluster" in (folder / "serve.out").read_bytes(), "haven serve up", 120)
        for run in range(args.runs):
            runs.append(one_run(cluster, run))
            print(f"run {run + 1}: {runs[-1]}", file=sys.stderr)
    finally:
        if serve is not None:
            serve.send_signal(signal.SIGINT)
            serve.wait(60)
            with Store.open(f"sqlite:///{folder / 'home' / 'haven.db'}") as store:
                journal = [f"{a.kind} {a.node} {a.state}" for a in store.galera_actions_since(CLUSTER)]
        cluster.stop()
        _kill_leftovers(folder)
        shutil.rmtree(folder, ignore_errors=True)
    result = {
        "runs": args.runs,
        "all_synced_s_median": round(statistics.median(r["all_synced_s"] for r in runs), 2),
        "all_synced_s_max": round(max(r["all_synced_s"] for r in runs), 2),
        "writes_lost_total": sum(r["writes_lost"] for r in runs),
        "acked_total": sum(r["acked"] for r in runs),
        "bootstraps_per_outage": [r["bootstraps"] for r in runs],
        "serve_exit": None if serve is None else serve.returncode,
        "journal": journal,
    }
    print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


def _kill_leftovers(folder: Path) -> None:
    """The servers haven serve started (they outlive it by design), found by this bench's folder."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if str(folder).encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue
    time.sleep(1.0)


if __name__ == "__main__":
    raise SystemExit(main())
