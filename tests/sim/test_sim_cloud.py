"""The simulated cloud as a stand-in for Nova, the BMCs and the liveness channels, plus its ground truth."""

from __future__ import annotations

import pytest

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, SimTimings, build_cloud
from haven.cloud.sim.channels import SimChannel
from haven.cloud.sim.state import SimHost, SimServer
from haven.domain.clock import VirtualClock
from haven.domain.cloud import Capacity, Flavor, PowerState, TaskState, VmState
from haven.domain.errors import Conflict, NotFound, TemporaryError, UserError
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower

T0 = 1_800_000_000.0
SMALL = Flavor("m1.small", 1, 2048, 20)
CAP = Capacity(vcpus=48, ram_mb=196_608, disk_gb=4_000)
A, B, C = HostName("compute-a"), HostName("compute-b"), HostName("compute-c")


def tiny_cloud(vms_on_a: int = 3, phase: float = 0.25) -> tuple[SimCloud, VirtualClock]:
    """Three hosts in one zone; ``vms_on_a`` running servers on A."""
    clock = VirtualClock(T0)
    hosts = [SimHost(name, "az1", "az1-rack01", CAP, heartbeat_phase=phase) for name in (A, B, C)]
    servers = [SimServer(ServerId(f"vm-{i}"), f"vm-{i}", A, SMALL) for i in range(vms_on_a)]
    return SimCloud(clock, hosts, servers), clock


async def advance(cloud: SimCloud, clock: VirtualClock, to: float) -> None:
    clock.advance_to(to)
    cloud.settle()


# ---- heartbeat channels ---------------------------------------------------------------------


def test_channel_last_beat_falls_on_the_phase_while_flowing() -> None:
    channel = SimChannel()
    assert channel.last_beat(10.9, 0.25, 1.0) == 10.25
    assert channel.last_beat(10.25, 0.25, 1.0) == 10.25  # a beat exactly now counts
    assert channel.last_beat(10.2, 0.25, 1.0) == 9.25
    assert channel.last_beat(100.0, 0.5, 10.0) == 90.5  # Nova's 10 s report interval


def test_channel_last_beat_freezes_when_it_stops() -> None:
    channel = SimChannel()
    channel.set_flowing(False, 5.6)
    assert not channel.flowing
    assert channel.last_beat(5.6, 0.25, 1.0) == 5.25
    assert channel.last_beat(500.0, 0.25, 1.0) == 5.25
    channel.set_flowing(False, 9.0)  # stopping again does not move the time it stopped
    assert channel.last_beat(500.0, 0.25, 1.0) == 5.25


def test_channel_beats_at_once_when_it_resumes() -> None:
    channel = SimChannel()
    channel.set_flowing(False, 5.6)
    channel.set_flowing(True, 7.1)
    assert channel.flowing
    assert channel.last_beat(7.1, 0.25, 1.0) == 7.1  # the resume beat
    assert channel.last_beat(7.2, 0.25, 1.0) == 7.1  # before the next phase beat at 7.25
    assert channel.last_beat(7.3, 0.25, 1.0) == 7.25
    assert channel.last_beat(9.0, 0.25, 1.0) == 8.25


# ---- liveness --------------------------------------------------------------------------------


async def test_liveness_anomalies_list_only_touched_hosts() -> None:
    cloud, clock = tiny_cloud()
    assert await cloud.liveness_anomalies() == []
    cloud.fail_power(B)
    await advance(cloud, clock, T0 + 2.0)
    (only,) = await cloud.liveness_anomalies()
    assert only.host == B
    assert only.agent_seen == T0 - 0.75  # the last beat on phase 0.25 before the power went
    assert only.second_seen == T0 - 0.75
    assert only.bmc is BmcPower.OFF
    assert only.nova_up  # Nova has not noticed yet: 60 s service_down_time
    # It stays news while it is down.
    assert [r.host for r in await cloud.liveness_anomalies()] == [B]


async def test_a_host_plainly_healthy_again_drops_out_of_the_anomalies() -> None:
    cloud, clock = tiny_cloud()
    cloud.partition_management(C)
    await advance(cloud, clock, T0 + 5.0)
    (reading,) = await cloud.liveness_anomalies()
    assert reading.host == C and reading.agent_seen == T0 - 0.75
    assert reading.second_seen == T0 + 4.25  # the second network still beats
    cloud.partition_management(C, cut=False)
    await advance(cloud, clock, T0 + 6.0)
    (back,) = await cloud.liveness_anomalies()  # reported once more, healthy...
    assert back.agent_seen == T0 + 5.25
    assert await cloud.liveness_anomalies() == []  # ...then no longer news


async def test_crashed_nova_compute_is_a_failed_process_on_a_live_host() -> None:
    cloud, clock = tiny_cloud()
    cloud.crash_nova_compute(B)
    await advance(cloud, clock, T0 + 70.0)
    (reading,) = await cloud.liveness_anomalies()
    assert reading.failed_processes == frozenset({"nova-compute"})
    assert reading.agent_seen == T0 + 69.25
    assert not reading.nova_up  # no report for more than 60 s
    assert not (await cloud.get_host(B)).service_up


# ---- evacuation -------------------------------------------------------------------------------


async def test_evacuate_is_refused_while_the_source_service_is_up() -> None:
    cloud, clock = tiny_cloud()
    cloud.fail_power(A)
    await advance(cloud, clock, T0 + 30.0)
    with pytest.raises(Conflict, match="still in use"):
        await cloud.evacuate(ServerId("vm-0"), B)
    assert cloud.evacuations == []
    assert (await cloud.get_server(ServerId("vm-0"))).host == A


async def test_evacuate_is_accepted_once_nova_notices_by_itself() -> None:
    cloud, clock = tiny_cloud()
    cloud.fail_power(A)
    # The last report was at T0 - 9.75 (phase 0.25, every 10 s); down 60 s later.
    await advance(cloud, clock, T0 - 9.75 + 60.0)
    assert (await cloud.get_host(A)).service_up
    await advance(cloud, clock, T0 - 9.75 + 60.01)
    assert not (await cloud.get_host(A)).service_up
    await cloud.evacuate(ServerId("vm-0"), B)
    assert len(cloud.evacuations) == 1


async def test_rebuilds_complete_after_admit_and_boot_one_admission_at_a_time() -> None:
    cloud, clock = tiny_cloud()
    t = cloud.timings
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    assert not (await cloud.get_host(A)).service_up
    for i in range(3):
        await cloud.evacuate(ServerId(f"vm-{i}"), B)
    moved = await cloud.list_servers(B)
    assert [s.task_state for s in moved] == [TaskState.REBUILDING] * 3
    assert await cloud.list_servers(A) == []
    host_b = await cloud.get_host(B)
    assert host_b.used_vcpus == 3 and host_b.used_ram_mb == 3 * SMALL.ram_mb
    assert (await cloud.get_host(A)).used_vcpus == 0
    for i in range(3):
        finish = T0 + (i + 1) * t.evacuate_admit_s + t.evacuate_boot_s
        await advance(cloud, clock, finish - 0.01)
        server = await cloud.get_server(ServerId(f"vm-{i}"))
        assert server.task_state is TaskState.REBUILDING
        assert cloud.hosts_running(server.id) == set()
        await advance(cloud, clock, finish)
        server = await cloud.get_server(ServerId(f"vm-{i}"))
        assert server.is_running and server.host == B
        assert cloud.hosts_running(server.id) == {B}
    assert cloud.servers_running_twice() == []
    assert [(e.source, e.target, e.source_powered, e.source_failed_by_fault) for e in cloud.evacuations] == [
        (A, B, False, True)
    ] * 3
    assert cloud.next_event_time() is None


async def test_a_second_evacuate_during_the_rebuild_is_refused() -> None:
    cloud, _ = tiny_cloud()
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    await cloud.evacuate(ServerId("vm-0"), B)
    with pytest.raises(Conflict, match="rebuilding"):
        await cloud.evacuate(ServerId("vm-0"), C)
    assert cloud.evacuation_count(ServerId("vm-0")) == 1


async def test_evacuate_to_a_host_without_room_puts_the_server_in_error() -> None:
    cloud, _ = tiny_cloud()
    cloud.sim_host(B).capacity = Capacity(vcpus=1, ram_mb=1024, disk_gb=10)
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    await cloud.evacuate(ServerId("vm-0"), B)
    server = await cloud.get_server(ServerId("vm-0"))
    assert server.vm_state is VmState.ERROR and server.host == A


async def test_unknown_objects_are_not_found() -> None:
    cloud, _ = tiny_cloud()
    with pytest.raises(NotFound):
        await cloud.get_server(ServerId("nope"))
    with pytest.raises(NotFound):
        await cloud.get_host(HostName("nope"))
    with pytest.raises(NotFound):
        await cloud.list_servers(HostName("nope"))


# ---- BMC ---------------------------------------------------------------------------------------


async def test_bmc_power_off_is_applied_after_bmc_power_off_s() -> None:
    cloud, clock = tiny_cloud()
    fencer = SimFencer(cloud)
    assert await fencer.power_status(A) is BmcPower.ON
    await fencer.power_off(A)
    assert cloud.next_event_time() == T0 + cloud.timings.bmc_power_off_s
    clock.advance_to(T0 + cloud.timings.bmc_power_off_s - 0.01)
    assert await fencer.power_status(A) is BmcPower.ON
    assert cloud.hosts_running(ServerId("vm-0")) == {A}
    clock.advance_to(T0 + cloud.timings.bmc_power_off_s)
    assert await fencer.power_status(A) is BmcPower.OFF
    assert not cloud.is_powered(A)
    assert cloud.hosts_running(ServerId("vm-0")) == set()
    assert not cloud.sim_host(A).failed_by_fault  # fenced, not failed on its own


async def test_bmc_power_on_boots_the_host_and_stops_its_leftover_guests() -> None:
    cloud, clock = tiny_cloud()
    fencer = SimFencer(cloud)
    cloud.fail_power(A)
    await fencer.power_on(A)
    on_at = T0 + cloud.timings.bmc_power_off_s
    await advance(cloud, clock, on_at)
    assert cloud.is_powered(A) and cloud.sim_host(A).booting_until == on_at + cloud.timings.host_boot_s
    await advance(cloud, clock, on_at + cloud.timings.host_boot_s)
    server = await cloud.get_server(ServerId("vm-0"))
    assert server.vm_state is VmState.STOPPED and server.power_state is PowerState.SHUTDOWN
    assert cloud.hosts_running(server.id) == set()  # Nova does not resume guests on boot


async def test_unreachable_bmc_reports_unknown_and_refuses_power_requests() -> None:
    cloud, _ = tiny_cloud()
    fencer = SimFencer(cloud)
    cloud.sim_host(A).bmc_reachable = False
    assert await fencer.power_status(A) is BmcPower.UNKNOWN
    with pytest.raises(TemporaryError, match="did not answer"):
        await fencer.power_off(A)
    with pytest.raises(TemporaryError):
        await fencer.power_on(A)
    assert cloud.next_event_time() is None
    assert cloud.is_powered(A)


async def test_an_observer_cut_makes_the_bmc_unknown_too() -> None:
    cloud, _ = tiny_cloud()
    cloud.cut_observer([A])
    assert cloud.bmc_power_state(A) is BmcPower.UNKNOWN
    with pytest.raises(TemporaryError):
        cloud.bmc_request_power(A, on=False)


# ---- ground truth -------------------------------------------------------------------------------


async def test_evacuating_off_a_powered_host_makes_a_vm_run_twice() -> None:
    cloud, clock = tiny_cloud()
    # force_down without fencing: Nova believes it, but the host and its guests run on.
    await cloud.force_down(A, True)
    await cloud.evacuate(ServerId("vm-1"), C)
    await advance(cloud, clock, T0 + 10.0)
    assert cloud.hosts_running(ServerId("vm-1")) == {A, C}
    assert cloud.servers_running_twice() == [ServerId("vm-1")]
    (record,) = cloud.evacuations
    assert record.source_powered and not record.source_failed_by_fault


async def test_servers_running_twice_is_empty_after_a_fenced_evacuation() -> None:
    cloud, clock = tiny_cloud()
    fencer = SimFencer(cloud)
    await fencer.power_off(A)
    await advance(cloud, clock, T0 + 1.0)
    await cloud.force_down(A, True)
    await cloud.evacuate(ServerId("vm-1"), C)
    await advance(cloud, clock, T0 + 10.0)
    assert cloud.hosts_running(ServerId("vm-1")) == {C}
    assert cloud.servers_running_twice() == []
    assert not cloud.evacuations[0].source_powered


# ---- building a cloud ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (CloudSpec(hosts=0), ["--hosts", "0"]),
        (CloudSpec(hosts=-3), ["--hosts", "-3"]),
        (CloudSpec(vms=-1), ["--vms", "-1"]),
        (CloudSpec(hosts=2, zones=3), ["zones", "3"]),
        (CloudSpec(ha_fraction=1.5), ["ha fraction", "1.5"]),
        (CloudSpec(hosts=3, zones=3, reserved_per_zone=1), ["reserved"]),
        (CloudSpec(hosts=2, vms=200, zones=1), ["cannot hold", "--vms"]),
    ],
)
def test_build_cloud_rejects_impossible_specs_with_a_message(spec: CloudSpec, words: list[str]) -> None:
    with pytest.raises(UserError) as caught:
        build_cloud(spec, VirtualClock())
    text = str(caught.value)
    assert caught.value.message
    for word in words:
        assert word in text


async def _fingerprint(cloud: SimCloud) -> list[tuple[object, ...]]:
    hosts = [
        (h, cloud.sim_host(h).zone, cloud.sim_host(h).aggregate, cloud.sim_host(h).heartbeat_phase)
        for h in cloud.host_names()
    ]
    servers = [
        (s.id, s.name, s.host, s.flavor.name, tuple(sorted(s.metadata.items())), s.group)
        for s in await cloud.list_servers()
    ]
    groups = sorted((g.id, g.policy, tuple(sorted(g.members))) for g in await cloud.list_server_groups())
    return [*hosts, *servers, *groups]


async def test_build_cloud_is_deterministic_per_seed() -> None:
    spec = CloudSpec(hosts=12, vms=120, zones=2, seed=7)
    one, topo_one = build_cloud(spec, VirtualClock())
    two, topo_two = build_cloud(spec, VirtualClock())
    assert await _fingerprint(one) == await _fingerprint(two)
    assert topo_one == topo_two
    other, _ = build_cloud(CloudSpec(hosts=12, vms=120, zones=2, seed=8), VirtualClock())
    assert await _fingerprint(other) != await _fingerprint(one)


async def test_build_cloud_honours_the_spec() -> None:
    spec = CloudSpec(hosts=12, vms=120, zones=2, ha_fraction=1.0, reserved_per_zone=1, seed=3)
    cloud, topology = build_cloud(spec, VirtualClock())
    hosts = await cloud.list_hosts()
    servers = await cloud.list_servers()
    assert len(hosts) == 12 and len(servers) == 120
    assert sorted(topology.zones) == ["az1", "az2"] and all(len(v) == 6 for v in topology.zones.values())
    assert all(s.ha_enabled for s in servers)
    assert len(topology.reserved) == 2
    for h in hosts:
        assert h.service_enabled is (h.name not in topology.reserved)
    assert not any(s.host in topology.reserved for s in servers)
    assert all(cloud.hosts_running(s.id) == {s.host} for s in servers)


def test_timings_are_injected() -> None:
    timings = SimTimings(bmc_power_off_s=2.0)
    cloud, _ = build_cloud(CloudSpec(hosts=3, vms=3, zones=1), VirtualClock(), timings)
    assert cloud.timings.bmc_power_off_s == 2.0
