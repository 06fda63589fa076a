"""Fault-schedule explorer at scale: at least 20,000 random schedules; prints figures, asserts nothing.

Each schedule is a small simulated cloud (8-12 hosts, 40-80 VMs) with one to five fault incidents,
run in virtual time and judged after every event and tick (haven.drill.explore). The schedules are
split into ``--processes`` worker processes (one core each), each running contiguous blocks of
1,000, so progress is printed about every 1,000 schedules; then the totals: schedules, events,
violations by invariant, wall time and schedules/s, and the first failing generator seeds of each
invariant (replay one with ``haven.drill.explore.run_schedule(generate(seed))``). ``--shrink``
shrinks a few failing schedules per invariant at the end.

Run: .venv/bin/python bench/explore.py [--schedules 20000] [--seed 0] [--processes 2] [--shrink] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from haven.drill.explore import SHRINK_CANDIDATES, ExploreReport, check_counts, explore, generate, shrink_all

BLOCK = 1000


def _block(args: tuple[int, int, int]) -> ExploreReport:
    start, count, seed = args
    return explore(count, seed, shrink_failures=False, start=start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--shrink", action="store_true", help="shrink a few failing schedules per invariant")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    check_counts(args.schedules, args.seed)
    blocks = [(s, min(BLOCK, args.schedules - s), args.seed) for s in range(0, args.schedules, BLOCK)]
    began = time.perf_counter()
    total = ExploreReport()
    with ProcessPoolExecutor(max(1, args.processes), mp_context=get_context("spawn")) as pool:
        pending = {pool.submit(_block, b) for b in blocks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                total.merge(future.result())
            wall = time.perf_counter() - began
            bad = dict(sorted(total.failing.items()))
            print(
                f"  {total.schedules:,} schedules, {total.schedules / wall:.1f}/s, failing: {bad}",
                file=sys.stderr,
            )
    if args.shrink:
        seeds = total.first_failing
        total.shrunk = shrink_all({k: [generate(s) for s in v[:SHRINK_CANDIDATES]] for k, v in seeds.items()})
    total.wall_s = time.perf_counter() - began
    figures = total.to_json()
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    hours = total.simulated_s / 3600
    print(f"schedules:   {total.schedules:,} in {args.processes} process(es)")
    print(f"events:      {total.events:,} ({hours:,.1f} simulated hours, {total.ticks:,} ticks)")
    print(f"wall time:   {total.wall_s:.1f} s ({figures['schedules_per_s']} schedules/s)")
    print(f"violations:  {sum(total.violations.values()):,}")
    for invariant, count in sorted(total.violations.items()):
        first = figures["first_failing_seeds"][invariant][:3]
        schedules = total.failing[invariant]
        print(f"  {invariant:32} {count:6,} in {schedules:,} schedules; e.g. generate(seed) for {first}")
    if total.skipped:
        print(f"skipped:     {dict(sorted(total.skipped.items()))} (fault kinds the simulator lacks yet)")
    for entry in total.shrunk:
        print(f"shrunk {entry['invariant']}: {json.dumps(entry['schedule'])}")


if __name__ == "__main__":
    main()
