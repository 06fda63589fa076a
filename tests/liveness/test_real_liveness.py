"""The liveness source for real clouds (haven.service.liveness): agent leases + Nova + BMC, combined.

The pure part (``combine``) and the source's BMC reads are tested with fakes for Nova, the lease
view and the fencer; the verdicts come from the real detector. The last tests run the source's
entry point on a real etcd with a real agent heartbeat (marker etcd).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from haven.coordination.etcd import EtcdClient
from haven.coordination.leases import ChannelHeartbeat, HostHeartbeat
from haven.detection.detector import assess
from haven.domain.errors import ConfigError, PermanentError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower, ComputeServiceState, HostCondition, HostLiveness
from haven.domain.settings import DetectionSettings
from haven.service.config import CoordinationConfig, HavenConfig, LivenessConfig, load_config
from haven.service.heartbeat_metrics import HeartbeatCollector
from haven.service.liveness import AgentChannels, RealCloudLiveness, combine, open_real_liveness
from servers.etcd import EtcdServer

NOW = 1_800_000_000.0
A, B, C = HostName("compute-1"), HostName("compute-2"), HostName("compute-3")
MGMT = AgentChannels()
S = DetectionSettings(nova_report_interval_s=2.0)


def up(host: HostName, at: float = NOW - 1) -> ComputeServiceState:
    return ComputeServiceState(host, reporting=True, updated_at=at)


def down(host: HostName, at: float = NOW - 12, forced: bool = False) -> ComputeServiceState:
    return ComputeServiceState(host, reporting=False, forced_down=forced, updated_at=at)


def beat(host: str, channel: str = "management", alive: bool = True, at: float = NOW) -> ChannelHeartbeat:
    return ChannelHeartbeat(host, channel, alive, at, ttl_s=3)


def agents(*beats: ChannelHeartbeat) -> dict[str, dict[str, ChannelHeartbeat]]:
    out: dict[str, dict[str, ChannelHeartbeat]] = {}
    for b in beats:
        out.setdefault(b.host, {})[b.channel] = b
    return out


def by_host(readings: Sequence[HostLiveness]) -> dict[HostName, HostLiveness]:
    return {r.host: r for r in readings}


# ---- the pure part ------------------------------------------------------------------------------


def test_beating_hosts_that_nova_counts_up_are_not_news() -> None:
    readings, silent = combine([up(A), up(B)], agents(beat(A), beat(B)), True, NOW, MGMT, 1.0)
    assert readings == [] and silent == []


def test_nova_compute_down_on_a_beating_host_is_a_process_failure_not_a_silent_host() -> None:
    readings, silent = combine([down(A), up(B)], agents(beat(A), beat(B)), True, NOW, MGMT, 1.0)
    (reading,) = readings
    assert reading.failed_processes == {"nova-compute"} and reading.agent_seen == NOW
    assert silent == []  # its BMC is not read
    verdict = assess(reading, NOW, S)
    assert verdict.condition is HostCondition.HEALTHY and verdict.failed_processes == {"nova-compute"}


def test_a_host_just_back_gets_process_grace_for_its_nova_compute_to_report() -> None:
    # Powered on again (or returned to service by haven): the agent beats within seconds,
    # nova-compute needs a while longer to start and report.
    just_back = dataclasses.replace(beat(A), alive_since=NOW - 5)
    assert combine([down(A)], agents(just_back), True, NOW, MGMT, 1.0, process_grace_s=30) == ([], [])
    settled = dataclasses.replace(beat(A), alive_since=NOW - 31)
    (reading,), _ = combine([down(A)], agents(settled), True, NOW, MGMT, 1.0, process_grace_s=30)
    assert reading.failed_processes == {"nova-compute"}


def test_a_beating_host_that_haven_forced_down_is_on_its_way_back_not_a_process_failure() -> None:
    readings, _ = combine([down(A, forced=True)], agents(beat(A)), True, NOW, MGMT, 1.0)
    assert readings == []


def test_a_vanished_lease_dates_the_silence_from_the_first_missed_beat() -> None:
    vanished = NOW - 0.5
    readings, silent = combine([up(A)], agents(beat(A, alive=False, at=vanished)), True, NOW, MGMT, 1.0)
    (reading,) = readings
    assert reading.agent_seen == pytest.approx(vanished - 3 + 1)  # TTL 3 s, one beat interval
    assert silent == [A]


def test_a_host_without_an_agent_is_judged_by_nova_and_its_bmc() -> None:
    readings, silent = combine([down(A), up(B)], agents(beat(B)), True, NOW, MGMT, 1.0)
    assert by_host(readings)[A].agent_seen is None
    assert silent == [A]  # its BMC is read: Nova alone cannot tell a hung host from a crashed nova-compute
    off = dataclasses.replace(by_host(readings)[A], bmc=BmcPower.OFF)
    assert assess(off, NOW, S).condition is HostCondition.DEAD
    for power in (BmcPower.ON, BmcPower.UNKNOWN):
        verdict = assess(dataclasses.replace(off, bmc=power), NOW, S)
        assert verdict.condition is HostCondition.SUSPECT and "not fenced" in verdict.reason


def test_while_the_view_is_out_of_sync_lease_silence_counts_for_nothing() -> None:
    gone = agents(beat(A, alive=False, at=NOW - 30), beat(B, at=NOW - 30))
    readings, silent = combine([up(A), down(B)], gone, False, NOW, MGMT, 1.0)
    # A (lease gone, Nova up) is not news; B is judged by Nova and its BMC, as a host without agent.
    assert [(r.host, r.agent_seen) for r in readings] == [(B, None)]
    assert silent == [B]


def test_a_second_network_that_still_beats_keeps_the_host_isolated_not_silent() -> None:
    two = AgentChannels("management", "storage")
    beats = agents(beat(A, alive=False, at=NOW - 5), beat(A, "storage"))
    readings, silent = combine([up(A, NOW - 20)], beats, True, NOW, two, 1.0)
    (reading,) = readings
    assert reading.second_seen == NOW and silent == []
    assert assess(reading, NOW, S).condition is HostCondition.ISOLATED


def test_an_agent_of_a_host_nova_does_not_know_is_ignored() -> None:
    readings, silent = combine(
        [up(A)], agents(beat(A), beat(C, alive=False, at=NOW - 9)), True, NOW, MGMT, 1.0
    )
    assert readings == [] and silent == []


# ---- the source: Nova + view + BMC -----------------------------------------------------------------


class FakeNova:
    def __init__(self, states: list[ComputeServiceState]) -> None:
        self.states = states

    async def compute_service_states(self) -> Sequence[ComputeServiceState]:
        return self.states


class FakeView:
    def __init__(self, beats: dict[str, dict[str, ChannelHeartbeat]], synced: bool = True) -> None:
        self.beats, self.synced = beats, synced

    def snapshot(self) -> dict[str, dict[str, ChannelHeartbeat]]:
        return self.beats


class FakeFencer:
    def __init__(self, powers: dict[HostName, BmcPower | str]) -> None:
        self.powers = powers
        self.asked: list[HostName] = []
        self.running = self.most = 0

    async def power_off(self, host: HostName) -> None:
        raise AssertionError("the liveness source never powers anything off")

    async def power_on(self, host: HostName) -> None:
        raise AssertionError("the liveness source never powers anything on")

    async def power_status(self, host: HostName) -> BmcPower:
        self.asked.append(host)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            power = self.powers[host]
            if power == "hang":
                await asyncio.sleep(60)
            if power == "error":
                raise PermanentError(f"no fence driver is configured for {host}")
            await asyncio.sleep(0.01)
            assert isinstance(power, BmcPower)
            return power
        finally:
            self.running -= 1


def source(
    nova: list[ComputeServiceState], view: FakeView | None, fencer: FakeFencer, **settings: float
) -> RealCloudLiveness:
    return RealCloudLiveness(
        FakeNova(nova), fencer, view, dataclasses.replace(LivenessConfig(), **settings), 1.0, lambda: NOW
    )


async def test_the_bmc_is_read_only_for_silent_hosts_and_a_powered_off_one_is_dead_after_grace() -> None:
    vanished = NOW - 2.0  # the lease expired 2 s ago: first missed beat at NOW - 4
    view = FakeView(agents(beat(A, alive=False, at=vanished), beat(B), beat(C)))
    fencer = FakeFencer({A: BmcPower.OFF})
    readings = await source([up(A, NOW - 6), up(B), down(C)], view, fencer).liveness_anomalies()
    assert fencer.asked == [A]
    found = by_host(readings)
    assert found[A].bmc is BmcPower.OFF and found[C].failed_processes == {"nova-compute"}
    verdict = assess(found[A], NOW, S)
    assert verdict.condition is HostCondition.DEAD, verdict.reason


async def test_an_agent_killed_on_a_live_host_is_agent_down_not_dead() -> None:
    vanished = NOW - 3.0  # first missed beat at NOW - 5; nova-compute reported since
    view = FakeView(agents(beat(A, alive=False, at=vanished)))
    readings = await source([up(A, NOW - 1)], view, FakeFencer({A: BmcPower.ON})).liveness_anomalies()
    assert assess(readings[0], NOW, S).condition is HostCondition.AGENT_DOWN


async def test_bmcs_that_hang_or_fail_read_unknown_and_reads_are_bounded() -> None:
    hosts = [HostName(f"compute-{n}") for n in range(1, 9)]
    view = FakeView(agents(*(beat(h, alive=False, at=NOW - 1) for h in hosts)))
    powers: dict[HostName, BmcPower | str] = {h: BmcPower.OFF for h in hosts}
    powers[hosts[0]], powers[hosts[1]] = "hang", "error"
    fencer = FakeFencer(powers)
    live = source([up(h, NOW - 9) for h in hosts], view, fencer, bmc_concurrency=3, bmc_timeout_s=0.2)
    started = time.monotonic()
    found = by_host(await live.liveness_anomalies())
    assert time.monotonic() - started < 2
    assert found[hosts[0]].bmc is BmcPower.UNKNOWN and found[hosts[1]].bmc is BmcPower.UNKNOWN
    assert {found[h].bmc for h in hosts[2:]} == {BmcPower.OFF}
    assert fencer.most == 3


async def test_without_a_view_the_source_is_nova_and_the_bmcs_of_the_hosts_nova_says_down() -> None:
    fencer = FakeFencer({A: BmcPower.OFF})
    readings = await source([down(A), up(B)], None, fencer).liveness_anomalies()
    assert [(r.host, r.agent_seen, r.nova_up, r.bmc) for r in readings] == [(A, None, False, BmcPower.OFF)]
    assert fencer.asked == [A]  # only the host Nova says down: a pass is O(anomalies)


# ---- Nova's clock is not haven's ------------------------------------------------------------------


def skewed(host: HostName, age: float, skew: float, reporting: bool = True) -> ComputeServiceState:
    """A state from a Nova whose clock is ``skew`` s off haven's, last reported ``age`` s ago."""
    nova_now = NOW + skew
    return ComputeServiceState(host, reporting=reporting, updated_at=nova_now - age, nova_now=nova_now)


@pytest.mark.parametrize("skew", [-60.0, 60.0])
def test_every_reading_carries_novas_clock_so_a_reports_age_is_taken_on_one_clock(skew: float) -> None:
    beats = agents(beat(A, alive=False, at=NOW - 3), beat(B))
    states = [skewed(A, 1, skew), skewed(B, 20, skew, reporting=False), skewed(C, 30, skew, reporting=False)]
    readings, _ = combine(states, beats, True, NOW, MGMT, 1.0)
    found = by_host(readings)
    assert set(found) == {A, B, C}  # agent silent; nova-compute down on a beating host; no agent
    for reading, age in ((found[A], 1), (found[B], 20), (found[C], 30)):
        assert reading.nova_now == NOW + skew
        assert reading.nova_updated_at is not None and reading.nova_now - reading.nova_updated_at == age


@pytest.mark.parametrize("skew", [-60.0, 60.0])
async def test_a_live_host_whose_agent_died_is_agent_down_whichever_way_novas_clock_is_off(
    skew: float,
) -> None:
    # nova-compute reported 1 s ago by Nova's clock; the agent's first missed beat was 5 s ago.
    view = FakeView(agents(beat(A, alive=False, at=NOW - 3)))
    readings = await source([skewed(A, 1, skew)], view, FakeFencer({A: BmcPower.ON})).liveness_anomalies()
    (reading,) = readings
    assert reading.nova_now == NOW + skew
    verdict = assess(reading, NOW, S)
    assert verdict.condition is HostCondition.AGENT_DOWN, verdict.reason


@pytest.mark.parametrize("skew", [-60.0, 60.0])
async def test_a_dead_host_whose_bmc_is_silent_is_dead_whichever_way_novas_clock_is_off(skew: float) -> None:
    # Power lost 30 s ago (Nova's last report then, by its clock); the BMC does not answer.
    view = FakeView(agents(beat(A, alive=False, at=NOW - 27)))
    fencer = FakeFencer({A: BmcPower.UNKNOWN})
    (reading,) = await source([skewed(A, 30, skew)], view, fencer).liveness_anomalies()
    assert fencer.asked == [A] and reading.bmc is BmcPower.UNKNOWN and reading.nova_now == NOW + skew
    verdict = assess(reading, NOW, S)
    assert verdict.condition is HostCondition.DEAD, verdict.reason


def test_a_date_rounded_down_makes_a_report_look_younger_never_older() -> None:
    # Nova's clock read 10:00:13.9 when it answered, its Date says 10:00:13: the report (at 10:00:12.5
    # by Nova's clock) looks 0.5 s old instead of 1.4 s, so it is placed later on haven's clock, not earlier.
    true_now, report = NOW + 13.9, NOW + 12.5
    rounded = ComputeServiceState(A, reporting=True, updated_at=report, nova_now=float(int(true_now)))
    (reading,), _ = combine([rounded], agents(beat(A, alive=False, at=NOW - 3)), True, NOW, MGMT, 1.0)
    placed = reading.nova_report_local(NOW)
    assert placed is not None and placed >= NOW - (true_now - report)


# ---- config ------------------------------------------------------------------------------------


def test_liveness_section_is_read_and_bad_values_are_named(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[liveness]\nsecond_channel = "storage"\nbmc_concurrency = 2\n')
    config = load_config(tmp_path, good)
    assert config.liveness.second_channel == "storage" and config.liveness.bmc_concurrency == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[liveness]\nmanagement_channel = "a/b"\n')
    with pytest.raises(ConfigError, match="management_channel"):
        load_config(tmp_path, bad)


# ---- the entry point on a real etcd --------------------------------------------------------------


@pytest.mark.etcd
async def test_open_real_liveness_follows_a_real_agent_heartbeat(etcd: EtcdServer, tmp_path: Path) -> None:
    config = HavenConfig(
        home=tmp_path,
        database_url="sqlite://",
        coordination=CoordinationConfig(url=etcd.url, cluster=etcd.cluster),
        liveness=LivenessConfig(process_grace_s=0.0),
    )
    nova = FakeNova([up(A, time.time())])
    fencer = FakeFencer({A: BmcPower.ON})
    client = EtcdClient(etcd.http_url, timeout_s=0.5)
    heartbeat = HostHeartbeat(client, A, "management", cluster=etcd.cluster, ttl_s=2, interval_s=0.5,
                              revoke_on_exit=False)  # fmt: skip
    try:
        async with open_real_liveness(config, nova, fencer) as live:
            agent = asyncio.create_task(heartbeat.run())
            deadline = time.monotonic() + 5
            while "management" not in live.heartbeats().get(A, {}):
                assert time.monotonic() < deadline, "the view never saw the agent"
                await asyncio.sleep(0.05)
            nova.states = [down(A, time.time() - 12)]  # nova-compute crashed, the agent beats on
            (reading,) = await live.liveness_anomalies()
            assert reading.failed_processes == {"nova-compute"}
            agent.cancel()  # a crash: no revoke; the lease expires after its TTL
            with contextlib.suppress(asyncio.CancelledError):
                await agent
            killed = time.monotonic()
            nova.states = [up(A, time.time())]
            silent: Sequence[HostLiveness] = []
            while not silent:
                assert time.monotonic() - killed < 6, "the lease never expired"
                await asyncio.sleep(0.1)
                silent = await live.liveness_anomalies()
            (reading,) = silent
            assert fencer.asked == [A]
            assert reading.agent_seen is not None and reading.bmc is BmcPower.ON
            assert time.time() - reading.agent_seen < 2.5
    finally:
        await client.aclose()


def test_each_agents_last_heartbeat_is_a_gauge_at_scrape() -> None:
    view = FakeView(agents(beat(A), beat(B, alive=False, at=NOW - 7)))
    registry = CollectorRegistry()
    registry.register(HeartbeatCollector(source([up(A), up(B)], view, FakeFencer({}))))
    text = generate_latest(registry).decode()
    assert 'haven_agent_channel_up{channel="management",host="compute-1"} 1.0' in text
    assert 'haven_agent_channel_up{channel="management",host="compute-2"} 0.0' in text
    assert (
        f'haven_agent_heartbeat_timestamp_seconds{{channel="management",host="compute-2"}} {NOW - 7:.9e}'
        in text
    )
    assert "haven_agent_view_synced 1.0" in text


@pytest.mark.etcd
async def test_while_etcd_is_unreachable_lease_silence_declares_nothing(
    etcd: EtcdServer, tmp_path: Path
) -> None:
    config = HavenConfig(
        home=tmp_path,
        database_url="sqlite://",
        coordination=CoordinationConfig(url=etcd.url, cluster=etcd.cluster),
    )
    nova = FakeNova([up(A, time.time())])
    fencer = FakeFencer({A: BmcPower.OFF})
    client = EtcdClient(etcd.http_url, timeout_s=0.5)
    heartbeat = HostHeartbeat(client, A, "management", cluster=etcd.cluster, ttl_s=2, interval_s=0.5)
    try:
        async with open_real_liveness(config, nova, fencer) as live:
            agent = asyncio.create_task(heartbeat.run())
            await until_true(lambda: "management" in live.heartbeats().get(A, {}), 5, "the agent's lease")
            etcd.pause()  # SIGSTOP: the engine's view (and the agent) cannot reach etcd
            try:
                assert live.view is not None
                await until_true(lambda: not live.view.synced, 5, "the view to lose sync")  # type: ignore[union-attr]
                await asyncio.sleep(2.5)  # past the lease's TTL: from etcd's side the agent fell silent
                nova.states = [up(A, time.time())]
                assert await live.liveness_anomalies() == []  # nothing silent, no BMC read
                nova.states = [down(A, time.time() - 12)]
                (reading,) = await live.liveness_anomalies()
                assert reading.agent_seen is None  # Nova and the BMC, as without the agent
                assert fencer.asked == [A] and reading.bmc is BmcPower.OFF
            finally:
                etcd.resume()
            agent.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await agent
    finally:
        await client.aclose()


async def until_true(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        await asyncio.sleep(0.05)
