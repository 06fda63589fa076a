"""Each invariant checker fails on a hand-made violating world, and stays quiet on its excused twin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haven.cloud.sim import CloudSpec, SimCloud, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.ids import HostName
from haven.drill.explore_check import (
    ENGINE_CRASH,
    LIVE_FENCED,
    NOT_RECOVERED,
    POWERED_SOURCE,
    RAN_TWICE,
    Ledger,
    SafetyJudge,
    liveness,
    looks_dead,
)
from haven.drill.explore_schedule import Schedule, ev
from haven.drill.explore_world import World
from haven.service.engine import Engine


@pytest.fixture
def cloud() -> SimCloud:
    made, _ = build_cloud(CloudSpec(hosts=4, vms=12, zones=1, ha_fraction=1.0, seed=3), VirtualClock())
    return made


def _judge(cloud: SimCloud) -> tuple[SafetyJudge, Ledger]:
    ledger = Ledger()
    return SafetyJudge(cloud, cloud.clock.now(), ledger), ledger


def _later(cloud: SimCloud, seconds: float) -> None:
    assert isinstance(cloud.clock, VirtualClock)
    cloud.clock.advance_to(cloud.clock.now() + seconds)
    cloud.settle()


async def test_an_evacuation_from_a_powered_host_and_the_vm_running_twice_are_caught(cloud: SimCloud) -> None:
    judge, _ = _judge(cloud)
    source = cloud.host_names()[0]
    vm = cloud.servers_on(source)[0]
    await cloud.force_down(source, True)  # Nova believes it down; it runs on
    await cloud.evacuate(vm.id, None)
    assert [v.invariant for v in judge.check()] == [POWERED_SOURCE]
    _later(cloud, 10.0)  # the rebuild finishes: the guest now runs on both hosts
    assert [v.invariant for v in judge.check()] == [RAN_TWICE]
    assert judge.check() == [], "each violation is reported once"


def test_a_live_host_powered_off_by_a_fence_is_caught(cloud: SimCloud) -> None:
    judge, _ = _judge(cloud)
    cloud.bmc_request_power(cloud.host_names()[1], on=False)
    _later(cloud, 1.0)
    assert [v.invariant for v in judge.check()] == [LIVE_FENCED]


def test_a_dead_host_fenced_is_no_violation(cloud: SimCloud) -> None:
    judge, _ = _judge(cloud)
    host = cloud.host_names()[1]
    cloud.hang(host)
    cloud.bmc_request_power(host, on=False)
    _later(cloud, 1.0)
    assert judge.check() == []


def test_a_host_silent_on_every_channel_for_its_own_reasons_may_be_fenced(cloud: SimCloud) -> None:
    """Agent and nova-compute both dead on a live host: to the observer it is a hung host (STONITH)."""
    judge, _ = _judge(cloud)
    host = cloud.host_names()[2]
    cloud.crash_agent(host)
    assert not looks_dead(cloud, host)
    cloud.crash_nova_compute(host)
    assert looks_dead(cloud, host)
    judge.note_silence([host])
    cloud.bmc_request_power(host, on=False)
    _later(cloud, 0.5)
    assert judge.check() == []


def test_an_observer_cut_host_counts_as_dead_only_while_no_more_than_half_its_zone_is_cut(
    cloud: SimCloud,
) -> None:
    a, b, c, _ = cloud.host_names()
    cloud.cut_observer([a, b])
    assert looks_dead(cloud, a), "2 of 4 cut: each may be a dead host"
    cloud.cut_observer([c])
    assert not looks_dead(cloud, a), "3 of 4 cut: the observer's own fault is the likely one"


def test_a_fence_that_lands_long_after_the_host_looked_dead_is_caught(cloud: SimCloud) -> None:
    judge, _ = _judge(cloud)
    host = cloud.host_names()[2]
    cloud.partition_management(host)
    cloud.sim_host(host).second_up = False
    cloud.crash_agent(host, crashed=False)  # refresh its channels
    judge.note_silence([host])
    _later(cloud, 30.0)
    cloud.partition_management(host, cut=False)
    cloud.sim_host(host).second_up = True
    cloud.crash_agent(host, crashed=False)
    judge.note_silence([host])
    cloud.bmc_request_power(host, on=False)  # decided on a 30 s old picture
    _later(cloud, 1.0)
    assert [v.invariant for v in judge.check()] == [LIVE_FENCED]


# ---- the engine's own failures and liveness, through a whole World -------------------------------


@pytest.fixture
def idle_engine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every engine does nothing at all (so no VM of a dead host is ever recovered)."""

    async def tick(self: Engine) -> None:
        return None

    monkeypatch.setattr(Engine, "tick", tick)
    monkeypatch.setattr(Engine, "next_wake", _a_second_later)
    yield


def _a_second_later(self: Engine) -> float:
    return self._clock.now() + 1.0


def _schedule(*events: object) -> Schedule:
    return Schedule(seed=3, hosts=4, zones=1, vms=12, ha_fraction=1.0).with_events(events)  # type: ignore[arg-type]


async def test_an_exception_escaping_a_tick_is_caught_and_the_engine_rebuilt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []

    async def tick(self: Engine) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")

    monkeypatch.setattr(Engine, "tick", tick)
    monkeypatch.setattr(Engine, "next_wake", _a_second_later)
    result = await World(_schedule()).run()
    assert [v.invariant for v in result.violations] == [ENGINE_CRASH]
    assert "RuntimeError escaped Engine.tick: boom" in result.violations[0].detail
    assert len(calls) > 3, "the schedule went on with a new engine"


async def test_ha_vms_of_a_dead_host_not_running_again_are_caught(idle_engine: None) -> None:
    result = await World(_schedule(ev(10.0, "power_loss", [2]))).run()
    lost = [v for v in result.violations if v.invariant == NOT_RECOVERED]
    assert lost and all("compute-00002" in v.detail for v in lost)
    assert {v.invariant for v in result.violations} == {NOT_RECOVERED}


async def test_a_dead_host_whose_bmc_is_unreachable_is_excused(idle_engine: None) -> None:
    """No fence can be confirmed, so not evacuating is right."""
    cut = ev(5.0, "observer_cut", [2], cut=True, bmc_reachable=False)
    result = await World(_schedule(cut, ev(10.0, "power_loss", [2]))).run()
    assert result.violations == []


async def test_a_host_that_came_back_is_excused(idle_engine: None) -> None:
    result = await World(_schedule(ev(10.0, "power_loss", [2]), ev(30.0, "power_on", [2]))).run()
    assert result.violations == []


def test_no_room_in_the_zone_excuses_the_vms(cloud: SimCloud) -> None:
    ledger = Ledger()
    dead = cloud.host_names()[0]
    for vm in cloud.servers_on(dead):
        ledger.lost[vm.id] = (dead, cloud.clock.now())
    cloud.fail_power(dead)
    for other in cloud.host_names()[1:]:
        cloud.fail_power(other)  # nowhere to go
    _later(cloud, 700.0)
    assert liveness(cloud, ledger, 0.0, [], {}, {}) == []
    cloud.bmc_request_power(HostName(cloud.host_names()[1]), on=True)
    _later(cloud, 1.0)
    _later(cloud, 70.0)  # one host back: now there is room, and the VMs should run again
    assert {v.invariant for v in liveness(cloud, ledger, 0.0, [], {}, {})} == {NOT_RECOVERED}
