"""The explorer end to end: deterministic runs, replay, the CLI, and a CI-sized exploration."""

from __future__ import annotations

import json

import pytest

from haven.cli.main import main
from haven.drill.explore import explore, generate, replay, run_schedule

CI_SCHEDULES = 500


def _outline(seed: int) -> tuple[object, ...]:
    r = run_schedule(generate(seed))
    return r.events, r.ticks, r.simulated_s, sorted((v.invariant, round(v.at, 3)) for v in r.violations)


@pytest.mark.parametrize("seed", [0, 3, 35])
def test_a_schedule_runs_the_same_way_twice(seed: int) -> None:
    """Shrinking relies on it: the same schedule, the same run."""
    assert _outline(seed) == _outline(seed)


def test_replay_reads_a_printed_spec() -> None:
    schedule = generate(4)
    direct = run_schedule(schedule)
    replayed = replay(json.dumps(schedule.to_spec()))
    assert (replayed.events, replayed.ticks) == (direct.events, direct.ticks)
    assert replay({"schedule": schedule.to_spec()}).events == direct.events  # a "shrunk" entry as printed


def test_the_cli_refuses_a_bad_count(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "--schedules", "0"]) == 2
    assert "--schedules must be between 1 and" in capsys.readouterr().err
    assert main(["explore", "--schedules", "5000000"]) == 2
    assert main(["explore", "--schedules", "5", "--processes", "0"]) == 2


def test_two_processes_run_the_same_schedules_as_one() -> None:
    one = explore(6, seed=5, shrink_failures=False)
    two = explore(6, seed=5, shrink_failures=False, processes=2)
    assert (two.schedules, two.events, two.ticks, two.violations) == (
        one.schedules,
        one.events,
        one.ticks,
        one.violations,
    )


def test_the_cli_prints_counts_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explore", "--schedules", "4", "--seed", "9", "--json", "--no-shrink"])
    report = json.loads(capsys.readouterr().out)
    assert report["schedules"] == 4 and report["events"] > 0
    assert {"violations", "shrunk", "wall_s", "schedules_per_s"} <= report.keys()
    assert code == (1 if report["violations"] else 0)


@pytest.mark.slow
def test_a_ci_sized_exploration_breaks_no_invariant() -> None:
    # How fast it runs is bench/explore.py's business, not an assertion's.
    report = explore(CI_SCHEDULES, seed=2026, shrink_failures=False, processes=2)
    assert report.schedules == CI_SCHEDULES
    assert not report.violations, f"{dict(report.violations)}; first failing seeds: {report.first_failing}"
