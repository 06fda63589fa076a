"""`haven explore --schedules N --seed S [--json]`: run random fault schedules and report broken invariants.

Called by haven.cli.main, which registers the command with ``add_explore_command``. The work is
haven.drill.explore's; this module parses the options and prints the counts (a table, or one JSON
object with the shrunk failing schedules). Exit status 1 when any invariant was broken.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.domain.errors import UserError
from haven.drill.explore import ExploreReport, explore

EXIT_VIOLATIONS = 1
MAX_PROCESSES = 64


def add_explore_command(sub: Any) -> None:
    """Register ``haven explore`` on the top-level sub-parser set."""
    parser = sub.add_parser(
        "explore",
        help="run random fault schedules on small simulated clouds and check haven's safety invariants",
    )
    parser.add_argument("--schedules", type=int, default=100, help="how many schedules (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the schedule generator (default 0)")
    parser.add_argument(
        "--processes", type=int, default=1, help="worker processes, one core each (default 1)"
    )
    parser.add_argument("--no-shrink", action="store_true", help="do not shrink failing schedules")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(handler=_explore)


def _explore(args: argparse.Namespace, out: Console, err: Console) -> int:
    if not 1 <= args.processes <= MAX_PROCESSES:
        raise UserError(f"--processes must be between 1 and {MAX_PROCESSES}, got {args.processes}")
    report = explore(args.schedules, args.seed, shrink_failures=not args.no_shrink, processes=args.processes)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        _print(report, out)
    return EXIT_VIOLATIONS if report.violations else 0


def _print(report: ExploreReport, out: Console) -> None:
    rate = report.schedules / report.wall_s if report.wall_s else 0.0
    out.print(
        f"{report.schedules} schedules, {report.events} fault events, {report.simulated_s:,.0f} simulated s "
        f"in {report.wall_s:.1f} s wall ({rate:.1f} schedules/s)"
    )
    if report.skipped:
        skipped = ", ".join(f"{k} x{n}" for k, n in sorted(report.skipped.items()))
        out.print(f"skipped (the simulator lacks them yet): {escape(skipped)}", highlight=False)
    if not report.violations:
        out.print("[green]no invariant broken[/]")
        return
    table = Table("invariant", "violations", "failing schedules", title="broken invariants")
    for invariant, count in sorted(report.violations.items()):
        table.add_row(invariant, str(count), str(report.failing[invariant]))
    out.print(table)
    for entry in report.shrunk:
        out.print(
            f"\n[bold red]{entry['invariant']}[/] shrunk from {entry['events_before_shrinking']} to "
            f"{len(entry['schedule']['events'])} events; replay with haven.drill.explore.replay(spec):"
        )
        for v in entry["violations"]:
            out.print(f"  +{v['at']:.1f} s: {escape(v['detail'])}", highlight=False)
        print(json.dumps(entry["schedule"]))
