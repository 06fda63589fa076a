"""OpenStack on the HA lab's Galera and RabbitMQ clusters: what Nova's API clients see when a node dies.

    nice -n 19 .venv/bin/haven lab up --ha --folder LAB
    nice -n 19 .venv/bin/python bench/stateful_openstack.py --folder LAB [--runs 3] [--json]   (root)

If the lab's OpenStack is not on its clusters yet, the bench moves it there first
(haven.lab.ha_openstack.use_clusters: Keystone, Nova, Placement and Glance on Galera through HAProxy's
writer port, Nova on the 3-node RabbitMQ cluster). Then, for each run and each fault:
- a client lists servers through HAProxy's nova-api frontend every 0.25 s (``GET /v2.1/servers``,
  10 s timeout; its token taken before the fault), and boots one server 2 s after the fault (then
  waits for ACTIVE, up to 180 s);
- ``galera``: SIGKILL to g1's mariadbd through its unit (g1 is HAProxy's writer, the node every
  OpenStack service writes to); haven's Galera recovery loop (systemd driver, its journal in a store,
  as bench/galera_ha_lab.py runs it) starts it again and it rejoins;
- ``rabbitmq``: SIGKILL to one RabbitMQ node's server through its unit (the node rotates over runs);
  haven's RabbitMQ recovery loop starts it again.
Measured from the kill: the client's failed list requests, the longest gap between two successful
ones (including the request in flight at the kill), seconds until the node is back (Galera: every
node Synced in a 3-node primary component; RabbitMQ: every node's cluster_status lists the three
running), the boot's outcome, and rows lost: every server the API accepted (this bench's boots) must
be in ``nova_api.instance_mappings`` (written before the 202) on each of the three Galera nodes
afterwards, read over each node's socket.
The machine's 1-minute load average is printed with the figures.
Anchor: OpenStack performance-docs, killing one MySQL node cost 14.7 s of API downtime.

    nice -n 19 .venv/bin/python bench/stateful_openstack.py --folder LAB --drills all [--runs 5] [--json]

``--drills`` (``all``, or a comma list of galera-node-loss, galera-full-outage, rabbitmq-node-loss,
rabbitmq-partition) runs ``haven drill NAME --cloud lab --lab-folder LAB --json`` instead, ``--runs``
times each, one after another, the node rotating (g1, g2, g3 / rabbit-1, rabbit-2, rabbit-3): each
run's verdict, ``recover_s`` (the drill's own figure: Galera node loss from the kill, full outage from
power back, RabbitMQ node loss from the kill, partition from its first report), the Galera drills'
``writes_lost`` and ``writes_served_s``, the partition's cut and haven's passes, Nova's answers after
the heal, the whole command's seconds and the 1-minute load before and after; medians per drill.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from haven.domain.clock import RealClock
from haven.domain.errors import HavenError
from haven.lab import ha_openstack, ha_stateful
from haven.lab.ha_stateful import HaGalera, HaRabbit
from haven.lab.keystone import Account
from haven.lab.state import load_state
from haven.stateful.galera_node import sql_connect
from haven.stateful.galera_recovery import GaleraRecovery
from haven.stateful.rabbitmq_cluster import healthy
from haven.stateful.rabbitmq_recovery import RabbitRecovery
from haven.store import Store

PERIOD_S = 0.25
HEADERS = {"OpenStack-API-Version": "compute 2.79"}


class Lister:
    """A client listing servers at a steady rate: each request's (start, end, ok)."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.results: list[tuple[float, float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Lister:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    answer = client.get(
                        f"{self.url}/servers", headers={**HEADERS, "X-Auth-Token": self.token}
                    )
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.results.append((began, time.monotonic(), ok))
                self._stop.wait(max(0.0, PERIOD_S - (time.monotonic() - began)))

    def figures(self, since: float) -> dict[str, Any]:
        after = [r for r in self.results if r[1] >= since]
        failed = sum(1 for r in after if not r[2])
        last_ok_before = max((r[1] for r in self.results if r[2] and r[1] < since), default=since)
        ok_ends = [last_ok_before] + [r[1] for r in after if r[2]]
        if after and not after[-1][2]:
            ok_ends.append(after[-1][1])  # no success since: the gap lasts to the last request
        gap, gap_from = max(((b - a, a) for a, b in itertools.pairwise(ok_ends)), default=(0.0, since))
        return {
            "requests": len(after), "failed": failed, "longest_gap_s": round(gap, 2),
            "gap_from_s": round(gap_from - since, 2),  # the gap's start, from the kill (<0: before it)
        }  # fmt: skip


def boot(url: str, token: str, image: str, flavor: str, name: str) -> dict[str, Any]:
    """One boot: POST /servers (retried until accepted, up to 60 s), then wait for ACTIVE (180 s)."""
    headers = {**HEADERS, "X-Auth-Token": token}
    body = {"server": {"name": name, "imageRef": image, "flavorRef": flavor, "networks": "none"}}
    started = time.monotonic()
    server_id, attempts, last = "", 0, ""
    with httpx.Client(timeout=30.0) as client:
        while not server_id and time.monotonic() - started < 60:
            attempts += 1
            try:
                answer = client.post(f"{url}/servers", json=body, headers=headers)
                if answer.status_code == 202:
                    server_id = answer.json()["server"]["id"]
                    break
                last = f"{answer.status_code} {answer.text[:120]}"
            except httpx.HTTPError as exc:
                last = str(exc)[:120]
            time.sleep(1.0)
        if not server_id:
            return {"accepted": False, "attempts": attempts, "last": last}
        status = ""
        while time.monotonic() - started < 180:
            try:
                answer = client.get(f"{url}/servers/{server_id}", headers=headers)
                if answer.status_code == 200:
                    status = answer.json()["server"]["status"]
                    if status in ("ACTIVE", "ERROR"):
                        break
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
    return {
        "accepted": True, "id": server_id, "attempts": attempts, "status": status,
        "active_s": round(time.monotonic() - started, 1) if status == "ACTIVE" else None,
    }  # fmt: skip


def delete(url: str, token: str, server_id: str) -> None:
    with httpx.Client(timeout=30.0) as client:
        client.delete(f"{url}/servers/{server_id}", headers={**HEADERS, "X-Auth-Token": token})


def galera_synced(galera: HaGalera) -> bool:
    for node in galera.nodes:
        try:
            live = asyncio.run(node.live())
        except HavenError:
            return False
        if not (live.primary and live.local_state == "Synced" and live.cluster_size == 3):
            return False
    return True


def rabbit_whole(rabbit: HaRabbit) -> bool:
    names = {n.name for n in rabbit.nodes}
    for node in rabbit.nodes:
        try:
            if not healthy(asyncio.run(node.status()), names):
                return False
        except HavenError:
            return False
    return True


def rows_missing(galera: HaGalera, ids: list[str]) -> int:
    """Accepted servers missing from nova_api.instance_mappings, summed over the three nodes."""
    missing = 0
    for node in galera.nodes:
        connection = sql_connect(node.layout.socket, 10.0, autocommit=True)
        try:
            with connection.cursor() as cursor:
                # written by nova-api before its 202 (the server's build request and mapping), kept
                # after the instance is built
                cursor.execute("SELECT instance_uuid FROM nova_api.instance_mappings")
                present = {row[0] for row in cursor.fetchall()}
        finally:
            connection.close()
        missing += sum(1 for i in ids if i not in present)
    return missing


def fault(kind: str, victim: str, galera: HaGalera, rabbit: HaRabbit, lab: dict[str, Any]) -> dict[str, Any]:
    lister = Lister(lab["compute"], lab["token"]).start()
    time.sleep(5.0)  # a steady rate before the fault
    store = Store.open("sqlite://")
    booted: dict[str, Any] = {}
    try:
        killed, killed_at = time.monotonic(), time.strftime("%H:%M:%S", time.gmtime())
        if kind == "galera":
            asyncio.run(galera.node(victim).kill())
            recovery: Any = GaleraRecovery.on_store(galera.nodes, store, "bench", RealClock())
            whole = lambda: galera_synced(galera)  # noqa: E731
        else:
            asyncio.run(rabbit.node(victim).kill())
            recovery = RabbitRecovery.on_store(rabbit.nodes, store, "haven-lab", RealClock())
            whole = lambda: rabbit_whole(rabbit)  # noqa: E731
        name = f"bench-{kind}-{int(time.time())}"
        booter = threading.Thread(
            target=lambda: booted.update(
                boot(lab["compute"], lab["token"], lab["image"], lab["flavor"], name)
            ),
            daemon=True,
        )
        threading.Timer(2.0, booter.start).start()

        async def heal() -> float:
            while not await asyncio.to_thread(whole):
                await recovery.run_pass()
                if time.monotonic() - killed > 240:
                    raise SystemExit(f"{kind} {victim}: not back in 240 s")
                await asyncio.sleep(0.5)
            return time.monotonic() - killed

        back = asyncio.run(heal())
        time.sleep(2.0)
        booter.join(200)
        time.sleep(3.0)  # the client's rate after recovery
    finally:
        lister.stop()
    ids = [booted["id"]] if booted.get("id") else []
    lost = rows_missing(galera, ids)
    for server_id in ids:
        delete(lab["compute"], lab["token"], server_id)
    return {
        "fault": kind, "node": victim, "killed_at_utc": killed_at, "back_s": round(back, 2),
        **lister.figures(killed),
        "boot": booted, "rows_missing": lost,
    }  # fmt: skip


DRILLS = ("galera-node-loss", "galera-full-outage", "rabbitmq-node-loss", "rabbitmq-partition")


def drill(name: str, victim: str, folder: Path) -> dict[str, Any]:
    """One ``haven drill NAME --cloud lab`` run (its own process, as an operator runs it)."""
    option = "--galera-node" if name.startswith("galera") else "--rabbitmq-node"
    haven = Path(sys.executable).with_name("haven")
    argv = [
        str(haven),
        "drill",
        name,
        "--cloud",
        "lab",
        "--lab-folder",
        str(folder),
        option,
        victim,
        "--json",
    ]
    load = os.getloadavg()[0]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    row: dict[str, Any] = {
        "drill": name, "node": victim, "exit": done.returncode,
        "command_s": round(time.monotonic() - started, 1),
        "load_1m": [round(load, 1), round(os.getloadavg()[0], 1)],
    }  # fmt: skip
    try:
        report = json.loads(done.stdout)
    except ValueError:
        row["verdict"] = "no report"
        row["stderr"] = done.stderr.strip()[-600:]
        return row
    keys = (
        "verdict", "recover_s", "writes_served_s", "writes_lost", "writes_acked", "failed_writes",
        "bootstrap_node", "bootstrap_from_highest", "restarted", "messages_ok", "cut", "problems",
    )  # fmt: skip
    row.update({k: report[k] for k in keys if k in report})
    if report.get("passes"):  # the partition's: where its seconds went (passes that were not a short wait)
        row["passes"] = [p for p in report["passes"] if p[2] != "wait" or p[1] - p[0] > 1.0]
    seen = report.get("openstack")
    row["openstack"] = None if seen is None else {"ok": seen["ok"], "seconds": seen["seconds"]}
    return row


def drills(folder: Path, names: list[str], runs: int) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for run in range(runs):
        for name in names:
            victim = f"g{run % 3 + 1}" if name.startswith("galera") else f"rabbit-{run % 3 + 1}"
            rows.append({"run": run + 1, **drill(name, victim, folder)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    summary: dict[str, Any] = {}
    for name in names:
        mine = [r for r in rows if r["drill"] == name]
        passed = [r for r in mine if r.get("verdict") == "recovered"]
        summary[name] = {
            "recovered": f"{len(passed)}/{len(mine)}",
            "recover_s": [r.get("recover_s") for r in mine],
            "recover_s_median_of_recovered": (
                statistics.median(r["recover_s"] for r in passed) if passed else None
            ),
            "command_s_median": statistics.median(r["command_s"] for r in mine),
            # Nova answered after the heal (None: the lab's OpenStack is not on the clusters)
            "openstack_ok": f"{sum(1 for r in mine if (r.get('openstack') or {}).get('ok'))}/{len(mine)}",
            "problems": [p for r in mine for p in r.get("problems") or []],
        }  # fmt: skip
        if name.startswith("galera"):
            summary[name]["writes_lost_total"] = sum(r.get("writes_lost", 0) for r in mine)
        if name == "galera-full-outage":
            served = [r["writes_served_s"] for r in passed if r.get("writes_served_s") is not None]
            summary[name]["writes_served_s_median"] = statistics.median(served) if served else None
            summary[name]["bootstrap_from_highest"] = (
                f"{sum(1 for r in mine if r.get('bootstrap_from_highest'))}/{len(mine)}"
            )
    loads = [x for r in rows for x in r["load_1m"]]
    summary["load_average_1m"] = f"{min(loads):.1f}-{max(loads):.1f}"
    summary["runs"] = runs
    return {"summary": summary, "runs": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True, help="a running `haven lab up --ha` folder")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--faults", default="galera,rabbitmq")
    parser.add_argument("--drills", default="", help="all, or a comma list of: " + ", ".join(DRILLS))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    names = list(DRILLS) if args.drills == "all" else [d for d in args.drills.split(",") if d]
    unknown = [d for d in names if d not in DRILLS]
    if unknown:
        print(f"unknown drill {', '.join(unknown)}: one of {', '.join(DRILLS)}, or all", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("needs root: the lab's units run under systemd as PID 1 of its own namespace", file=sys.stderr)
        return 2
    state = load_state(args.folder)
    if state is None or "stateful" not in state.ha:
        print(f"no HA lab in {args.folder}: start one with `haven lab up --ha --folder ...`", file=sys.stderr)
        return 2
    if names:
        result = drills(args.folder, names, args.runs)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            for key, value in result["summary"].items():
                print(f"{key}: {value}")
        return 0
    if not (args.folder / "nova" / "nova.conf.plain").exists():
        started = time.monotonic()
        ha_openstack.use_clusters(args.folder, lambda m: print(f"  {m}", file=sys.stderr))
        print(f"OpenStack moved onto the clusters in {time.monotonic() - started:.1f} s", file=sys.stderr)
    galera = ha_stateful.from_state(state.ha["stateful"]["galera"])
    rabbit = ha_stateful.rabbit_from_state(state.ha["stateful"]["rabbitmq"])
    password = (args.folder / "keystone" / "admin-password").read_text().strip()
    token = Account(state.urls["keystone"], "admin", password, "admin").token()
    flavors = httpx.get(
        f"{state.urls['compute']}/flavors", headers={**HEADERS, "X-Auth-Token": token}, timeout=30
    )
    flavor = next(f["id"] for f in flavors.json()["flavors"] if f["name"] == state.flavor)
    lab = {"compute": state.urls["compute"], "token": token, "image": state.image_id, "flavor": flavor}
    results: list[dict[str, Any]] = []
    loads: list[float] = []
    faults = [f for f in args.faults.split(",") if f]
    for run in range(args.runs):
        for kind in faults:
            victim = "g1" if kind == "galera" else rabbit.nodes[run % 3].name
            loads.append(os.getloadavg()[0])
            results.append({"run": run + 1, **fault(kind, victim, galera, rabbit, lab)})
            loads.append(os.getloadavg()[0])
            print(json.dumps(results[-1]), file=sys.stderr)
    summary: dict[str, Any] = {}
    for kind in faults:
        mine = [r for r in results if r["fault"] == kind]
        boots = [r["boot"] for r in mine]
        summary[kind] = {
            "failed_requests_median": statistics.median(r["failed"] for r in mine),
            "failed_requests": [r["failed"] for r in mine],
            "longest_gap_s_median": statistics.median(r["longest_gap_s"] for r in mine),
            "longest_gap_s": [r["longest_gap_s"] for r in mine],
            "back_s_median": statistics.median(r["back_s"] for r in mine),
            "back_s": [r["back_s"] for r in mine],
            "boots_active": f"{sum(1 for b in boots if b.get('status') == 'ACTIVE')}/{len(boots)}",
            "boot_active_s": [b.get("active_s") for b in boots],
            "rows_missing_total": sum(r["rows_missing"] for r in mine),
        }
    summary["load_average_1m"] = f"{min(loads):.1f}-{max(loads):.1f}"
    summary["runs"] = args.runs
    summary["anchor"] = "OpenStack performance-docs: one MySQL node killed, 14.7 s of API downtime"
    if args.json:
        print(json.dumps({"summary": summary, "runs": results}, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
