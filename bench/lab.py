"""Host death to every HA VM ACTIVE elsewhere on the real Nova lab: haven, by hand, the oracle, Masakari.

One run of this script measures, on the same lab and host, ``--runs`` times each, 20 HA servers
(``--vms``) booted on the host first and the clock started at its BMC power-off:
- haven: `haven drill host-power-loss --cloud lab` (haven.drill.cloud_drill): haven detects (its
  agents' leases in etcd, Nova's service state and the BMC, as `haven serve` does), fences
  through Redfish, forces the service down, plans, evacuates and verifies; its phase times are
  haven's own events;
- by hand (bench/lab_rivals.floor_run): wait until Nova marks the service down, force it down,
  evacuate all at once;
- the oracle (lab_rivals.oracle_run): force down and evacuate all at the instant of the power-off,
  no detection at all: the lab's physical limit;
- Masakari 22.0.0 with its shipped defaults (lab_rivals.masakari_run): its API and engine from
  PyPI, one segment holding every compute, told of the failure as masakari-monitors' hostmonitor
  does at the power-off; capped at ``--masakari-timeout`` (a run not done by then counts apart).
Every total is the same event: the moment Nova itself lists every HA VM ACTIVE (no task) on
another host (for haven, "nova all active" as its drill observes Nova; haven's own "verified"
event is printed apart, never in a ratio). A run that never got there is counted apart ("n of N
runs ..."), never as 0 s (bench/figures.py). Goals (issue 15): haven / oracle <= 1.15 and
Masakari / haven >= 15. Each phase is also printed as its share of the total (medians), and the
machine's load (uptime) before and after each sequence, since the lab is CPU-bound.

Run: .venv/bin/python bench/lab.py [--folder LAB] [--computes 3] [--runs 5] [--vms 20]
     [--host compute-1] [--only haven,floor,oracle,masakari] [--masakari-timeout 420]
Without --folder it starts a lab (haven.lab.lab.up, --computes computes) in a temporary folder
and stops it at the end. About 1 min per haven/floor/oracle run and 5-7 min per Masakari run on a
2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from figures import Spread, ratio_text, spread
from lab_rivals import (
    FLOOR_PHASES,
    MASAKARI_PHASES,
    ORACLE_PHASES,
    Times,
    floor_run,
    masakari_run,
    oracle_run,
    say,
)

from haven.cli.cloud_drill import LIVENESS_CHANNELS
from haven.cli.clouds import choose_cloud, open_liveness
from haven.cli.lab_controls import LabPower, running_lab
from haven.cloud.openstack.workload import open_workload
from haven.cloud.sim import CloudSpec
from haven.domain.clock import RealClock
from haven.domain.ids import HostName
from haven.drill.cloud_drill import CloudDrill, run_cloud_drill
from haven.fencing.registry import build_fencer
from haven.lab import lab
from haven.lab.state import LabState
from haven.service.config import load_config

HAVEN_PHASES = ("confirmed", "fenced", "forced down", "evacuate calls", "nova all active")
SEQUENCES = ("haven", "floor", "oracle", "masakari")
TOTAL = {"haven": "nova all active", "floor": "all active", "oracle": "all active", "masakari": "all active"}
TITLES = {
    "haven": "haven (`haven drill host-power-loss --cloud lab`)",
    "floor": "by hand (wait for Nova's down, force down, evacuate all)",
    "oracle": "oracle (force down + evacuate all at the power-off, no detection)",
    "masakari": "Masakari 22.0.0, shipped defaults (hostmonitor-style notification at the power-off)",
}


@contextlib.contextmanager
def a_lab(folder: Path | None, computes: int) -> Iterator[LabState]:
    if folder is not None:
        yield running_lab(folder)
        return
    own = Path(tempfile.mkdtemp(prefix="haven-bench-lab-"))
    try:
        yield lab.up(own, computes, progress=lambda m: say(f"lab: {m}"))
    finally:
        lab.down(own)
        shutil.rmtree(own, ignore_errors=True)


async def haven_run(state: LabState, host: HostName, vms: int) -> tuple[dict[str, float | None], str]:
    config = load_config(Path(state.folder), Path(state.files["haven.toml"]), cloud_name="lab")
    chosen = choose_cloud(config, CloudSpec(), RealClock(), os.environ)
    fencer = build_fencer(config.fencing, os.environ)
    workload = open_workload("lab")
    try:
        async with open_liveness(chosen, config, fencer) as liveness:  # as `haven serve` detects
            drill = CloudDrill(
                "host-power-loss", "lab", chosen.cloud, liveness, fencer, workload, state.flavor,
                state.image_id, power=LabPower(state), vms=vms, host=host, settings=config.engine,
                progress=lambda m: say(f"haven: {m}"),
                liveness_channels=LIVENESS_CHANNELS[config.coordination.url is not None],
            )  # fmt: skip
            report = await run_cloud_drill(drill)
    finally:
        workload.close()
        chosen.close()
    if report.verdict != "recovered":
        say(f"haven: verdict {report.verdict}: {report.checks}")
    ends = {p.name: p.end_s for p in report.phases}
    return {
        "confirmed": ends.get("confirmed"),
        "fenced": ends.get("fenced"),
        "forced down": ends.get("forced down"),
        "evacuate calls": report.evacuate_calls_s,
        "verified": report.recover_s,
        "nova all active": report.nova_all_active_s,
    }, f"liveness from {report.liveness}"


def uptime() -> str:
    """The machine's load averages (1, 5, 15 min): the lab is CPU-bound on a shared machine."""
    one, five, fifteen = Path("/proc/loadavg").read_text().split()[:3]
    return f"load {one} {five} {fifteen}"


def summary(
    name: str, runs: list[Times], keys: tuple[str, ...], total: str, cap: float | None = None
) -> dict[str, Spread]:
    """Per phase: median, min, max, every run's value, and the median phase's share of the total.

    ``cap``: the runs were stopped at ``cap`` s (Masakari's): a phase a run never reached counts as
    "> cap" in the median (bench/figures.py), shown so when the median falls on such runs.
    """
    print(f"\n{name} ({len(runs)} runs; seconds after the BMC power-off):")
    print(f"  {'phase':<22} {'median':>8} {'min':>7} {'max':>7} {'share':>6}   runs")
    spreads = {key: spread((r.get(key) for r in runs), cap) for key in keys}
    whole_bound = spreads[total].median_bound if total in spreads else None
    whole = whole_bound[0] if whole_bound is not None else None
    before, past_total = 0.0, False
    for key in keys:
        found = spreads[key]
        bound = found.median_bound
        if found.missing and cap is not None:
            missed = f"   ({found.missing} of {found.runs} runs not there within the {cap:g} s cap: > cap)"
        else:
            missed = f"   ({found.missing} of {found.runs} runs never got there)" if found.missing else ""
        if bound is None or found.min is None or found.max is None:
            print(f"  {key:<22} {found.median_text():>8}{missed}")
            continue
        # A phase's share: from the phase before it to its own end, up to the total (not after it).
        share = "" if not whole or past_total else f"{max(bound[0] - before, 0.0) / whole:6.0%}"
        before, past_total = max(before, bound[0]), past_total or key == total
        listed = " ".join(f"{v:.1f}" for v in found.measured)
        top = f"> {cap:g}" if found.missing and cap is not None else f"{found.max:.2f}"
        print(f"  {key:<22} {found.median_text():>8} {found.min:7.2f} {top:>7} {share:>6}   "
              f"{listed}{missed}")  # fmt: skip
    return spreads


def comparison(totals: dict[str, Spread]) -> list[str]:
    """Each sequence's total (Nova's own all-ACTIVE time) and the issue's two ratios, like with like.

    A capped sequence's runs not done within the cap count in its median as "> cap"; so does its
    ratio when the median falls on them (bench/figures.py).
    """
    lines = ["", "as Nova lists every HA VM ACTIVE on another host (median, min-max, runs that got there):"]
    for name, found in totals.items():
        capped = found.cap is not None and found.missing > 0
        if found.median_bound is None or found.min is None or found.max is None:
            why = f"not done within the {found.cap:g} s cap" if capped else "never got there"
            lines.append(f"  {name:<9} {found.median_text() if capped else '-'}   "
                         f"({found.missing} of {found.runs} runs {why})")  # fmt: skip
            continue
        if capped:
            missed = f"; {found.missing} of {found.runs} runs counted as > {found.cap:g} s, the cap"
            top = f"> {found.cap:g}"
        else:
            missed = f"; {found.missing} of {found.runs} runs not done in the cap" if found.missing else ""
            top = f"{found.max:.2f}"
        lines.append(f"  {name:<9} {found.median_text():>8} s  ({found.min:.2f}-{top}; "
                     f"{len(found.measured)} of {found.runs}{missed})")  # fmt: skip
    pairs = (("haven", "oracle", "goal <= 1.15"), ("haven", "floor", "by hand"),
             ("masakari", "haven", "goal >= 15"))  # fmt: skip
    for top_name, bottom, goal in pairs:
        if top_name in totals and bottom in totals:
            shown = ratio_text(totals[top_name], totals[bottom])
            lines.append(f"ratio {top_name} / {bottom}: {shown}   ({goal})")
    return lines


async def measured(name: str, run: int, loads: list[str], sequence: Callable[[], Awaitable[Times]]) -> Times:
    before = uptime()
    times = await sequence()
    after = uptime()
    loads.append(f"  {name:<9} run {run}: before {before}, after {after}")
    say(f"{name} run {run}: {times}; {before} -> {after}")
    return times


async def bench(state: LabState, args: argparse.Namespace, only: tuple[str, ...]) -> None:
    host, vms, runs = HostName(args.host), args.vms, args.runs
    results: dict[str, list[Times]] = {name: [] for name in only}
    loads: list[str] = []
    liveness = ""
    sequences: dict[str, Callable[[], Awaitable[Times]]] = {
        "floor": lambda: floor_run(state, host, vms),
        "oracle": lambda: oracle_run(state, host, vms),
        "masakari": lambda: masakari_run(state, host, vms, args.masakari_timeout),
    }
    for run in range(1, runs + 1):
        for name in only:
            say(f"run {run}/{runs}: {name}")
            if name == "haven":
                before = uptime()
                haven_times, liveness = await haven_run(state, host, vms)
                results[name].append(haven_times)
                loads.append(f"  haven     run {run}: before {before}, after {uptime()}")
            else:
                results[name].append(await measured(name, run, loads, sequences[name]))
    print(f"\nlab: {len(state.computes)} computes, {vms} HA servers on {host}, {runs} runs each; "
          f"haven's {liveness}")  # fmt: skip
    keys = {"haven": (*HAVEN_PHASES, "verified"), "floor": FLOOR_PHASES, "oracle": ORACLE_PHASES,
            "masakari": MASAKARI_PHASES}  # fmt: skip
    totals = {}
    for name in only:
        cap = args.masakari_timeout if name == "masakari" else None  # its runs stop at the cap
        spreads = summary(TITLES[name], results[name], keys[name], TOTAL[name], cap)
        totals[name] = spreads[TOTAL[name]]
    if "haven" in only:
        own = spread(r.get("verified") for r in results["haven"])
        print(f"\nhaven's own 'verified' event (haven's view, in no ratio): {own.describe('never')}")
    for line in comparison(totals):
        print(line)
    print("\nmachine load (1/5/15 min) around each run:")
    for line in loads:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a running lab's folder (default: start one)")
    parser.add_argument("--computes", type=int, default=3, help="computes of the lab started (default 3)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--host", default="compute-1")
    parser.add_argument("--only", default=",".join(SEQUENCES),
                        help=f"sequences to run, in this order (default {','.join(SEQUENCES)})")  # fmt: skip
    parser.add_argument("--masakari-timeout", type=float, default=420.0,
                        help="seconds a Masakari run may take before it counts as not done")  # fmt: skip
    args = parser.parse_args()
    only = tuple(name.strip() for name in args.only.split(",") if name.strip())
    unknown = [name for name in only if name not in SEQUENCES]
    if unknown or not only:
        parser.error(f"--only: unknown sequence(s) {', '.join(unknown) or '(none given)'}; "
                     f"choose from {', '.join(SEQUENCES)}")  # fmt: skip
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {uptime()} at the start")
    with a_lab(args.folder, args.computes) as state:
        os.environ["OS_CLIENT_CONFIG_FILE"] = state.files["clouds.yaml"]
        asyncio.run(bench(state, args, only))
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {uptime()} at the end")


if __name__ == "__main__":
    main()
