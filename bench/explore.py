"""Fault-schedule explorer at scale: at least 20,000 random schedules; prints figures, asserts nothing.

Each schedule is a small simulated cloud (8-12 hosts, 40-80 VMs) with one to five fault incidents,
run in virtual time and judged after every event and tick (haven.drill.explore). The schedules are
split into contiguous chunks run by ``--processes`` worker processes (each one core); progress is
printed every 1,000 schedules, then the totals: schedules, events, violations by invariant, wall
time and schedules/s, and the first failing generator seeds of each invariant (replay one with
``haven.drill.explore.run_schedule(generate(seed))``). Failing schedules are not shrunk here (use
``haven explore`` on a few, or ``--shrink``).

Run: .venv/bin/python bench/explore.py [--schedules 20000] [--seed 0] [--processes 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from haven.drill.explore import ExploreReport, check_counts, explore

PROGRESS_EVERY = 1000


def _chunk(args: tuple[int, int, int, bool, int]) -> ExploreReport:
    start, count, seed, shrink, workers = args
    step = max(1, PROGRESS_EVERY // workers)  # together, the workers report about every 1,000

    def progress(report: ExploreReport) -> None:
        rate = report.schedules / report.wall_s if report.wall_s else 0.0
        bad = sum(report.failing.values())
        print(
            f"  worker #{start}: {report.schedules:,} schedules ({rate:.1f}/s), {bad} invariant failures",
            file=sys.stderr,
            flush=True,
        )

    return explore(
        count, seed, shrink_failures=shrink, start=start, on_progress=progress, progress_every=step
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--shrink", action="store_true", help="shrink a few failing schedules per invariant")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    check_counts(args.schedules, args.seed)
    processes = max(1, min(args.processes, args.schedules))
    per = -(-args.schedules // processes)
    chunks = [
        (start, min(per, args.schedules - start), args.seed, args.shrink, processes)
        for start in range(0, args.schedules, per)
    ]
    began = time.perf_counter()
    total = ExploreReport()
    with ProcessPoolExecutor(len(chunks), mp_context=get_context("spawn")) as pool:
        for part in pool.map(_chunk, chunks):
            total.merge(part)
    total.wall_s = time.perf_counter() - began
    figures = total.to_json()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"schedules:   {total.schedules:,} in {len(chunks)} process(es)")
    hours = total.simulated_s / 3600
    print(f"events:      {total.events:,} ({hours:,.1f} simulated hours, {total.ticks:,} ticks)")
    print(f"wall time:   {total.wall_s:.1f} s ({figures['schedules_per_s']} schedules/s)")
    print(f"violations:  {sum(total.violations.values()):,}")
    for invariant, count in sorted(total.violations.items()):
        seeds = figures["first_failing_seeds"][invariant][:3]
        print(
            f"  {invariant:32} {count:6,} in {total.failing[invariant]:,} schedules; e.g. generate({seeds})"
        )
    if total.skipped:
        print(f"skipped:     {dict(sorted(total.skipped.items()))} (fault kinds the simulator lacks yet)")
    for entry in total.shrunk:
        print(f"shrunk {entry['invariant']}: {json.dumps(entry['schedule'])}")


if __name__ == "__main__":
    main()
