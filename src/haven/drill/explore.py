"""A Jepsen-style fault-schedule explorer: random clouds, random faults, invariants after every step.

Called by `haven explore`, bench/explore.py and tests/explore. Each schedule
(haven.drill.explore_schedule: a small seeded cloud and timed fault events) runs in
virtual time over a simulated cloud, a store and one or two engines
(haven.drill.explore_world), and is judged against the simulator's ground truth
after every event and every tick (haven.drill.explore_check). A failing schedule is
shrunk (delta debugging: drop events, shrink the cloud, keep a change while the same
invariant still fails) to a spec small enough to read and to paste into a test:

    from haven.drill.explore import replay
    spec = {"seed": 7, "hosts": 8, "events": [{"at": 3.0, "kind": "hang", "hosts": [2]}]}
    assert not replay(spec).violations
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from multiprocessing import get_context
from typing import Any

from haven.domain.errors import UserError
from haven.drill.explore_schedule import MAX_EVENTS, FaultEvent, Schedule, generate
from haven.drill.explore_world import RunResult, World

MAX_SCHEDULES = 1_000_000
SHRINK_BUDGET = 80  # schedule runs one shrink may spend
SHRINK_CANDIDATES = 12  # failing schedules kept per invariant for shrinking
SHRINK_PER_INVARIANT = 4  # at most this many shrunk per invariant, each with other fault kinds


def run_schedule(schedule: Schedule) -> RunResult:
    """Run one schedule to its end and judge it."""
    return asyncio.run(World(schedule).run())


def replay(spec: Mapping[str, Any] | str) -> RunResult:
    """Run a schedule printed by `haven explore` (its JSON, or the parsed object): for regression tests."""
    parsed = json.loads(spec) if isinstance(spec, str) else spec
    if isinstance(parsed, Mapping) and "schedule" in parsed:
        parsed = parsed["schedule"]  # a whole entry of the report's "shrunk" list
    return run_schedule(Schedule.from_spec(parsed))


# ---- shrinking ------------------------------------------------------------------------------


def shrink(
    schedule: Schedule,
    invariant: str,
    fails: Callable[[Schedule], bool] | None = None,
    budget: int = SHRINK_BUDGET,
) -> Schedule:
    """A smaller schedule on which ``invariant`` still fails (``fails`` decides; by default: run it)."""
    runs = [0]

    def still_fails(candidate: Schedule) -> bool:
        if runs[0] >= budget:
            return False
        runs[0] += 1
        if fails is not None:
            return fails(candidate)
        return invariant in run_schedule(candidate).invariants()

    best = _drop_events(schedule, still_fails)
    best = _shrink_cloud(best, still_fails)
    return _drop_events(best, still_fails)


def _drop_events(schedule: Schedule, still_fails: Callable[[Schedule], bool]) -> Schedule:
    """ddmin over the events: remove chunks, halving the chunk size down to single events."""
    events = list(schedule.events)
    chunk = max(1, len(events) // 2)
    while events:
        i, removed = 0, False
        while i < len(events):
            candidate = events[:i] + events[i + chunk :]
            if still_fails(schedule.with_events(candidate)):
                events, removed = candidate, True
            else:
                i += chunk
        if chunk == 1 and not removed:
            break
        chunk = max(1, chunk // 2)
    return schedule.with_events(events)


def _shrink_cloud(schedule: Schedule, still_fails: Callable[[Schedule], bool]) -> Schedule:
    best = schedule
    tries: list[Callable[[Schedule], Schedule]] = [
        lambda s: replace(s, engines=1, events=tuple(e for e in s.events if e.kind != "leader_change")),
        lambda s: replace(s, zones=1),
        lambda s: replace(s, second_network=True),
        _compact_hosts,
        lambda s: _fewer_hosts(s, max(2, s.hosts // 2)),
        lambda s: _fewer_hosts(s, s.hosts - 2),
        lambda s: _fewer_hosts(s, s.hosts - 1),
        lambda s: replace(s, vms=s.vms // 2),
        lambda s: replace(s, vms=s.vms * 3 // 4),
        lambda s: replace(s, ha_fraction=1.0),
    ]
    once = (tries[0], tries[1], tries[2], tries[3], tries[-1])  # the others repeat while they help
    for make in tries:
        while True:
            candidate = make(best)
            if candidate == best or not _valid(candidate) or not still_fails(candidate):
                break
            best = candidate
            if make in once:
                break
    return best


def _compact_hosts(schedule: Schedule) -> Schedule:
    """In one zone, the hosts the events name renumbered 1, 2, ... (so fewer hosts can keep them)."""
    if schedule.zones != 1:
        return schedule
    named = sorted({h for e in schedule.events for h in e.hosts})
    number = {h: i + 1 for i, h in enumerate(named)}
    events = [replace(e, hosts=tuple(number[h] for h in e.hosts)) for e in schedule.events]
    return schedule.with_events(events)


def _fewer_hosts(schedule: Schedule, hosts: int) -> Schedule:
    events = tuple(e for e in schedule.events if all(h <= hosts for h in e.hosts))
    return replace(
        schedule,
        hosts=hosts,
        zones=min(schedule.zones, hosts),
        vms=min(schedule.vms, 6 * hosts),
        events=events,
    )


def _valid(schedule: Schedule) -> bool:
    try:
        schedule.validate()
    except UserError:
        return False
    return True


# ---- exploring ------------------------------------------------------------------------------


@dataclass(slots=True)
class ExploreReport:
    schedules: int = 0
    events: int = 0
    ticks: int = 0
    simulated_s: float = 0.0
    wall_s: float = 0.0
    violations: Counter[str] = field(default_factory=Counter)  # every violation, by invariant
    failing: Counter[str] = field(default_factory=Counter)  # schedules that broke each invariant
    skipped: Counter[str] = field(default_factory=Counter)  # event kinds the simulator lacks (yet)
    shrunk: list[dict[str, Any]] = field(default_factory=list)
    first_failing: dict[str, list[int]] = field(default_factory=dict)  # invariant -> schedule seeds

    def add(self, result: RunResult) -> None:
        self.schedules += 1
        self.events += result.events
        self.ticks += result.ticks
        self.simulated_s += result.simulated_s
        self.violations.update(v.invariant for v in result.violations)
        self.failing.update(result.invariants())
        self.skipped.update(result.skipped)

    def merge(self, other: ExploreReport) -> None:
        self.schedules += other.schedules
        self.events += other.events
        self.ticks += other.ticks
        self.simulated_s += other.simulated_s
        self.violations.update(other.violations)
        self.failing.update(other.failing)
        self.skipped.update(other.skipped)
        self.shrunk += other.shrunk
        for k, seeds in other.first_failing.items():
            self.first_failing.setdefault(k, []).extend(seeds)

    def to_json(self) -> dict[str, Any]:
        return {
            "schedules": self.schedules,
            "events": self.events,
            "ticks": self.ticks,
            "simulated_s": round(self.simulated_s, 1),
            "wall_s": round(self.wall_s, 3),
            "schedules_per_s": round(self.schedules / self.wall_s, 1) if self.wall_s else None,
            "violations": dict(sorted(self.violations.items())),
            "failing_schedules": dict(sorted(self.failing.items())),
            "skipped_events": dict(sorted(self.skipped.items())),
            "first_failing_seeds": {k: v[:10] for k, v in sorted(self.first_failing.items())},
            "shrunk": self.shrunk,
        }


def check_counts(schedules: int, seed: int) -> None:
    if not 1 <= schedules <= MAX_SCHEDULES:
        raise UserError(
            f"--schedules must be between 1 and {MAX_SCHEDULES:,}, got {schedules}",
            "pass a positive count (bench/explore.py runs large ones in parallel chunks)",
        )
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed must be between 0 and 2**63 - 1, got {seed}")


def schedule_seed(seed: int, index: int) -> int:
    """The generator seed of schedule ``index`` of a run seeded ``seed``."""
    return (seed * 1_000_003 + index) % 2**63


def explore(
    schedules: int,
    seed: int = 0,
    *,
    shrink_failures: bool = True,
    start: int = 0,
    processes: int = 1,
    on_progress: Callable[[ExploreReport], None] | None = None,
    progress_every: int = 1000,
) -> ExploreReport:
    """Generate and run ``schedules`` schedules (indexes ``start``...), shrinking some failing ones.

    With ``processes`` > 1 the schedules run in that many worker processes, in contiguous chunks
    (``on_progress`` is then not called); failing ones are shrunk here afterwards.
    """
    check_counts(schedules, seed)
    began = time.perf_counter()
    if processes > 1 and schedules >= 2 * processes:
        report = explore_in_processes(schedules, seed, processes, start)
    else:
        report = ExploreReport()
        with asyncio.Runner() as runner:
            for index in range(start, start + schedules):
                generator_seed = schedule_seed(seed, index)
                result = runner.run(World(generate(generator_seed)).run())
                report.add(result)
                for invariant in sorted(result.invariants()):
                    report.first_failing.setdefault(invariant, []).append(generator_seed)
                if on_progress is not None and report.schedules % progress_every == 0:
                    report.wall_s = time.perf_counter() - began
                    on_progress(report)
    if shrink_failures:
        candidates = {
            k: [generate(s) for s in seeds[:SHRINK_CANDIDATES]] for k, seeds in report.first_failing.items()
        }
        report.shrunk = shrink_all(candidates)
    report.wall_s = time.perf_counter() - began
    return report


def explore_in_processes(schedules: int, seed: int, processes: int, start: int = 0) -> ExploreReport:
    """Run the schedules in ``processes`` worker processes (contiguous chunks), unshrunk; merged."""
    per = -(-schedules // processes)
    chunks = [
        (first, min(per, start + schedules - first), seed) for first in range(start, start + schedules, per)
    ]
    report = ExploreReport()
    with ProcessPoolExecutor(len(chunks), mp_context=get_context("spawn")) as pool:
        for part in pool.map(_chunk, chunks):
            report.merge(part)
    return report


def _chunk(args: tuple[int, int, int]) -> ExploreReport:
    first, count, seed = args
    return explore(count, seed, shrink_failures=False, start=first)


def shrink_all(failing: Mapping[str, list[Schedule]]) -> list[dict[str, Any]]:
    """Shrink each failing schedule for its invariant; keep distinct ones (by invariant and fault kinds)."""
    shrunk: list[dict[str, Any]] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for invariant, schedules in sorted(failing.items()):
        found: list[set[str]] = []
        for schedule in schedules:
            kinds = {e.kind for e in schedule.events}
            if len(found) >= SHRINK_PER_INVARIANT or any(f <= kinds for f in found):
                continue  # holds the faults of a cause already found: likely the same one
            small = shrink(schedule, invariant)
            key = (invariant, tuple(sorted({e.kind for e in small.events})))
            found.append(set(key[1]))
            if key in seen:
                continue
            seen.add(key)
            result = run_schedule(small)
            shrunk.append(
                {
                    "invariant": invariant,
                    "faults": list(key[1]),
                    "violations": [v.to_spec() for v in result.violations if v.invariant == invariant][:3],
                    "schedule": small.to_spec(),
                    "events_before_shrinking": len(schedule.events),
                }
            )
    return shrunk


__all__ = [
    "MAX_EVENTS",
    "ExploreReport",
    "FaultEvent",
    "Schedule",
    "explore",
    "generate",
    "replay",
    "run_schedule",
    "shrink",
]
