"""A small fault catalogue on the real lab: canaries fail, the explainer ranks causes, AC@1 / AC@3.

Each fault is a hung service (SIGSTOP of the lab process group of one service, SIGCONT to heal), its
true root cause the topology node of that service. For each injection (all faults in random order,
``--runs`` each): a healthy canary round first (its baseline, and proof the lab is whole), the fault
injected, one canary round (token, server list, each catalog endpoint, Nova's service list, one boot
with ``--boot-timeout``), the failed canary's stored explanation judged against the root cause, the
fault healed and a healthy round awaited before the next. No Prometheus: the evidence is what the
canary sees (probes, endpoints, Nova's service list) plus anything haven stored.

Prints per fault type: injections, AC@1 (the top explanation names the root cause), AC@3 (one of the
top three does), the misses with what was ranked instead, and the median seconds from the symptom to
its stored explanation; overall AC@1 / AC@3.

Run: .venv/bin/python bench/explain.py [--folder LAB] [--runs 1] [--seed 1] [--only glance-hung,...]
     [--boot-timeout 40] [--json]
Without --folder it starts a lab (haven.lab.lab.up, 2 computes) in a temporary folder and stops it at
the end (about 7 minutes on a loaded 2-core machine), then about 1-2 minutes per injection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from haven.canary.model import CanarySettings, Outcome
from haven.canary.runner import CanaryRunner
from haven.cloud.openstack.canary import open_canary
from haven.controlplane.catalogue import CATALOGUE
from haven.domain.clock import RealClock
from haven.explain.explainer import Explainer
from haven.lab import lab
from haven.lab.state import LabState, load_state
from haven.store import Store
from haven.topology import openstack_topology

# fault name → (the lab process hung, the root cause's topology node)
FAULTS: dict[str, tuple[str, str]] = {
    "glance-hung": ("glance-api", "glance-api"),
    "placement-hung": ("placement-api", "placement-api"),
    "keystone-hung": ("keystone", "keystone"),
    "nova-api-hung": ("nova-api", "nova-api"),
    "scheduler-hung": ("nova-scheduler", "nova-scheduler"),
    "conductor-hung": ("nova-conductor", "nova-conductor"),
    "database-hung": ("mariadb", "mariadb"),
}


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Outcome1:
    fault: str
    root: str
    canary: str  # the canary's outcome under the fault
    ranked: list[str] = field(default_factory=list)
    explained_after_s: float | None = None
    summary: str = ""

    @property
    def top1(self) -> bool:
        return bool(self.ranked) and self.ranked[0] == self.root

    @property
    def top3(self) -> bool:
        return self.root in self.ranked[:3]


@contextlib.contextmanager
def a_lab(folder: Path | None) -> Iterator[LabState]:
    if folder is not None:
        state = load_state(folder)
        if state is None:
            raise SystemExit(f"no lab in {folder}: start one with `haven lab up --folder {folder}`")
        yield state
        return
    own = Path(tempfile.mkdtemp(prefix="haven-bench-explain-"))
    try:
        yield lab.up(own, 2, progress=lambda m: say(f"lab: {m}"))
    finally:
        lab.down(own)
        shutil.rmtree(own, ignore_errors=True)


def process_group(folder: Path, name: str) -> int:
    for entry in lab.status(folder)["processes"]:
        if entry["name"] == name and entry["alive"]:
            return os.getpgid(int(entry["pid"]))
    raise SystemExit(f"the lab runs no {name!r} process")


async def healthy_round(runner: CanaryRunner, within_s: float = 180.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        found = await runner.round()
        if found.runs and all(r.outcome is Outcome.OK for r in found.runs):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the lab did not come back healthy within {within_s:g} s")
        await asyncio.sleep(3.0)


async def inject(state: LabState, store: Store, fault: str, boot_timeout_s: float) -> Outcome1:
    process, root = FAULTS[fault]
    folder = Path(state.folder)
    clock = RealClock()
    explainer = Explainer(store, openstack_topology(CATALOGUE.values()), clock)
    settings = CanarySettings(
        flavor=state.flavor, image=state.image_id, poll_s=0.5, boot_timeout_s=boot_timeout_s,
        delete_timeout_s=30.0, endpoint_timeout_s=3.0, slow_s=boot_timeout_s,
    )  # fmt: skip
    cloud = open_canary("lab", clouds_yaml=Path(state.files["clouds.yaml"]), timeout_s=20.0)
    try:
        runner = CanaryRunner(cloud, store, clock, settings, explainer.open_and_explain)
        await healthy_round(runner)
        group = process_group(folder, process)
        os.killpg(group, signal.SIGSTOP)
        say(f"{fault}: {process} stopped (SIGSTOP of process group {group})")
        try:
            found = await runner.round()
        finally:
            os.killpg(group, signal.SIGCONT)
        failed = [r for r in found.runs if r.outcome is not Outcome.OK]
        result = Outcome1(fault, root, ",".join(str(r.outcome) for r in found.runs) or "no run")
        if failed:
            record = store.get_explanation(f"canary:{failed[0].id}")
            if record.diagnosis is not None and record.explained_at is not None:
                result.ranked = [e.node for e in record.diagnosis.explanations]
                result.explained_after_s = record.explained_at - record.symptom.at
                result.summary = record.diagnosis.summary
        say(f"{fault}: canary {result.canary}; ranked {result.ranked[:3]}; {result.summary}")
        await healthy_round(runner)
        return result
    finally:
        cloud.close()


def report(results: list[Outcome1]) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for fault in sorted({r.fault for r in results}):
        mine = [r for r in results if r.fault == fault]
        after = [r.explained_after_s for r in mine if r.explained_after_s is not None]
        per[fault] = {
            "root_cause": mine[0].root,
            "injections": len(mine),
            "ac1": sum(r.top1 for r in mine) / len(mine),
            "ac3": sum(r.top3 for r in mine) / len(mine),
            "explained_after_s_median": statistics.median(after) if after else None,
            "misses": [{"canary": r.canary, "ranked": r.ranked[:3]} for r in mine if not r.top1],
        }
    return {
        "injections": len(results),
        "ac1": sum(r.top1 for r in results) / len(results),
        "ac3": sum(r.top3 for r in results) / len(results),
        "per_fault": per,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = args.only.split(",") if args.only else sorted(FAULTS)
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(unknown)}: known are {', '.join(sorted(FAULTS))}")
    order = [n for n in names for _ in range(args.runs)]
    random.Random(args.seed).shuffle(order)
    results = []
    with (
        a_lab(args.folder) as state,
        tempfile.TemporaryDirectory() as tmp,
        Store.open(f"sqlite:///{tmp}/haven.db") as store,
    ):
        for i, fault in enumerate(order, 1):
            say(f"[{i}/{len(order)}] {fault}")
            results.append(await inject(state, store, fault, args.boot_timeout))
    return report(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="a running lab (default: start one)")
    parser.add_argument("--runs", type=int, default=1, help="injections of each fault (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", help="comma-separated fault names")
    parser.add_argument("--boot-timeout", type=float, default=40.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    found = asyncio.run(main_async(args))
    found["wall_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(found, indent=2))
        return
    print(
        f"{'fault':<16} {'root cause':<16} {'n':>3} {'AC@1':>5} {'AC@3':>5} {'explained after':>16}  misses"
    )
    for fault, row in found["per_fault"].items():
        after = row["explained_after_s_median"]
        shown = "-" if after is None else f"{after:.2f} s"
        misses = "; ".join(f"{m['canary']}: {m['ranked'] or 'nothing ranked'}" for m in row["misses"])
        scores = f"{row['injections']:>3} {row['ac1']:>5.2f} {row['ac3']:>5.2f}"
        print(f"{fault:<16} {row['root_cause']:<16} {scores} {shown:>16}  {misses}")
    overall = f"AC@1 {found['ac1']:.2f}, AC@3 {found['ac3']:.2f}"
    print(f"overall: {found['injections']} injections, {overall}, {found['wall_s']} s")


if __name__ == "__main__":
    main()
