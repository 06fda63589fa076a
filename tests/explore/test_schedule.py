"""The schedule generator: deterministic per seed, replayable through its JSON spec, fair to the engine."""

from __future__ import annotations

import json

import pytest

from haven.domain.errors import UserError
from haven.drill.explore_schedule import (
    FAIR_STAGGER_S,
    KINDS,
    Schedule,
    ev,
    generate,
    zone_hosts,
)


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert generate(42) == generate(42)
    assert generate(42) != generate(43)


@pytest.mark.parametrize("seed", range(200))
def test_a_spec_reads_back_as_the_same_schedule(seed: int) -> None:
    schedule = generate(seed)
    assert Schedule.from_spec(json.loads(json.dumps(schedule.to_spec()))) == schedule


def test_generated_schedules_stay_within_the_stated_shape() -> None:
    kinds = set()
    for seed in range(300):
        s = generate(seed)
        s.validate()
        assert 8 <= s.hosts <= 12 and 40 <= s.vms <= 80 and s.zones in (1, 2)
        assert list(s.events) == sorted(s.events, key=lambda e: e.at)
        assert (s.engines == 2) == any(e.kind == "leader_change" for e in s.events)
        kinds |= {e.kind for e in s.events}
    assert kinds == set(KINDS), f"never drawn: {set(KINDS) - kinds}"


def test_an_observer_cut_with_bmcs_answering_takes_more_than_half_a_zone_at_once() -> None:
    """One host cut off while its BMC answers is a dead host to anyone: the generator never asks that."""
    checked = 0
    for seed in range(2000):
        s = generate(seed)
        zones = zone_hosts(s.hosts, s.zones)
        cuts = [e for e in s.events if e.kind == "observer_cut" and e.arg("cut") and e.arg("bmc_reachable")]
        for zone in zones:
            mine = [e for e in cuts if set(e.hosts) <= set(zone)]
            if not mine:
                continue
            checked += 1
            # Group cuts of one incident: those within FAIR_STAGGER_S of the first.
            first = min(e.at for e in mine)
            burst = {h for e in mine if e.at - first <= FAIR_STAGGER_S for h in e.hosts}
            assert 2 * len(burst) > len(zone), (seed, zone, [e.to_spec() for e in mine])
    assert checked > 20


def test_zone_hosts_matches_the_simulated_cloud_s_layout() -> None:
    assert zone_hosts(11, 2) == [list(range(1, 7)), list(range(7, 12))]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"hosts": 10}, "not a schedule spec"),
        ({"seed": 1, "hosts": 1000}, "2 to 40 hosts"),
        ({"seed": 1, "engines": 3}, "1 or 2 engines"),
        ({"seed": 1, "events": [{"at": 1, "kind": "meteor"}]}, "unknown fault kind"),
        ({"seed": 1, "events": [{"at": 1, "kind": "hang", "hosts": [99]}]}, "outside the schedule"),
        ({"seed": 1, "events": [{"at": 1, "kind": "hang", "colour": "red"}]}, "unknown keys"),
    ],
)
def test_a_bad_spec_is_refused_with_a_clear_message(spec: dict[str, object], words: str) -> None:
    with pytest.raises(UserError, match=words):
        Schedule.from_spec(spec)


def test_ev_keeps_arguments_in_declared_order() -> None:
    e = ev(1.0, "observer_cut", [1, 2], bmc_reachable=True, cut=True)
    assert e.args == (("cut", True), ("bmc_reachable", True))
    assert e.to_spec() == {
        "at": 1.0,
        "kind": "observer_cut",
        "hosts": [1, 2],
        "cut": True,
        "bmc_reachable": True,
    }
