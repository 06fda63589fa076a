"""Shrinking: a failing schedule becomes a minimal one on which the same invariant still fails."""

from __future__ import annotations

from haven.drill.explore import shrink
from haven.drill.explore_schedule import Schedule, ev, generate


def _fails_when_host_3_hangs_and_loses_power(s: Schedule) -> bool:
    """A synthetic failure: needs both events on host 3 (whatever its number became) and 3+ hosts."""
    kinds = {e.kind for e in s.events}
    return {"hang", "power_loss"} <= kinds and s.hosts >= 3


def test_shrinking_keeps_only_what_the_failure_needs() -> None:
    noise = [ev(float(t), "agent_crash", [1 + t % 8], crashed=True) for t in range(20)]
    big = Schedule(seed=5, hosts=12, zones=2, vms=80, engines=2).with_events(
        [*noise, ev(30.0, "hang", [3]), ev(40.0, "power_loss", [3]), ev(50.0, "leader_change", stale_s=0.0)]
    )
    small = shrink(big, "synthetic", fails=_fails_when_host_3_hangs_and_loses_power)
    assert _fails_when_host_3_hangs_and_loses_power(small)
    assert sorted(e.kind for e in small.events) == ["hang", "power_loss"]
    assert small.hosts == 3 and small.zones == 1 and small.engines == 1
    assert small.vms < big.vms


def test_shrinking_a_schedule_that_no_longer_fails_changes_nothing() -> None:
    schedule = generate(3)
    assert shrink(schedule, "synthetic", fails=lambda s: False) == schedule


def test_shrinking_stops_at_its_budget() -> None:
    calls: list[Schedule] = []

    def fails(s: Schedule) -> bool:
        calls.append(s)
        return True

    shrink(generate(11), "synthetic", fails=fails, budget=7)
    assert len(calls) == 7
