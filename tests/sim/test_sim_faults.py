"""The simulated cloud's adversarial faults: what each makes the observer see, and its ground truth."""

from __future__ import annotations

import pytest

from haven.cloud.sim import SimCloud, SimFencer
from haven.cloud.sim.state import EvacuationStatus, SimHost, SimServer
from haven.domain.clock import VirtualClock
from haven.domain.cloud import Capacity, Flavor, PowerState, TaskState, VmState
from haven.domain.errors import Conflict, TemporaryError
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower

T0 = 1_800_000_000.0
SMALL = Flavor("m1.small", 1, 2048, 20)
CAP = Capacity(vcpus=48, ram_mb=196_608, disk_gb=4_000)
A, B, C = HostName("compute-a"), HostName("compute-b"), HostName("compute-c")
VM0 = ServerId("vm-0")


def tiny_cloud(vms_on_a: int = 3, phase: float = 0.25) -> tuple[SimCloud, VirtualClock]:
    clock = VirtualClock(T0)
    hosts = [SimHost(name, "az1", "az1-rack01", CAP, heartbeat_phase=phase) for name in (A, B, C)]
    servers = [SimServer(ServerId(f"vm-{i}"), f"vm-{i}", A, SMALL) for i in range(vms_on_a)]
    return SimCloud(clock, hosts, servers), clock


async def advance(cloud: SimCloud, clock: VirtualClock, to: float) -> None:
    clock.advance_to(to)
    cloud.settle()


# ---- the observer and the host's own networks -------------------------------------------------


async def test_an_observer_cut_with_bmcs_reachable_silences_the_networks_but_the_bmc_answers() -> None:
    cloud, clock = tiny_cloud()
    cloud.cut_observer([A], bmc_reachable=True)
    await advance(cloud, clock, T0 + 100.0)
    (r,) = [r for r in await cloud.liveness_anomalies() if r.host == A]
    assert r.agent_seen is not None and r.agent_seen < T0 + 1 and r.second_seen is not None
    assert r.second_seen < T0 + 1 and not r.nova_up and r.bmc is BmcPower.ON
    await SimFencer(cloud).power_off(A)
    await advance(cloud, clock, T0 + 101.0)
    assert not cloud.is_powered(A)
    assert cloud.live_hosts_fenced == [A]  # the host had not failed: fencing it was wrong
    assert not cloud.sim_host(A).failed_by_fault


async def test_undoing_an_observer_cut_clears_the_out_of_band_bmc_too() -> None:
    cloud, _ = tiny_cloud()
    cloud.cut_observer([A], bmc_reachable=True)
    cloud.cut_observer([A], cut=False)
    assert not cloud.sim_host(A).observer_cut and not cloud.sim_host(A).observer_reaches_bmc
    cloud.cut_observer([A])
    assert cloud.bmc_power_state(A) is BmcPower.UNKNOWN  # today's behaviour by default


async def test_failed_networks_are_the_hosts_failure_its_guests_run_on_until_fenced() -> None:
    cloud, clock = tiny_cloud()
    cloud.fail_networks(A)
    await advance(cloud, clock, T0 + 100.0)
    (r,) = [r for r in await cloud.liveness_anomalies() if r.host == A]
    assert r.agent_seen is not None and r.agent_seen < T0 + 1 and not r.nova_up and r.bmc is BmcPower.ON
    assert cloud.hosts_running(VM0) == {A}
    await cloud.force_down(A, True)
    await cloud.evacuate(VM0, B)  # unfenced: the VM will run twice
    (record,) = cloud.evacuations
    assert record.source_powered and record.source_failed_by_fault
    await advance(cloud, clock, T0 + 110.0)
    assert cloud.servers_running_twice() == [VM0]
    await SimFencer(cloud).power_off(A)
    await advance(cloud, clock, T0 + 111.0)
    assert cloud.live_hosts_fenced == []  # it had failed: fencing it was right
    cloud.fail_networks(A, failed=False)
    assert not cloud.sim_host(A).network_failed


# ---- BMC faults ---------------------------------------------------------------------------------


async def test_an_unreachable_bmc_by_set_bmc() -> None:
    cloud, _ = tiny_cloud()
    cloud.set_bmc(A, reachable=False)
    assert cloud.bmc_power_state(A) is BmcPower.UNKNOWN
    with pytest.raises(TemporaryError):
        await SimFencer(cloud).power_off(A)
    cloud.set_bmc(A)
    assert cloud.bmc_power_state(A) is BmcPower.ON


async def test_a_slow_bmc_applies_power_off_late() -> None:
    cloud, clock = tiny_cloud()
    cloud.set_bmc(A, apply_delay_s=30.0)
    await SimFencer(cloud).power_off(A)
    await advance(cloud, clock, T0 + 29.9)
    assert cloud.is_powered(A) and cloud.bmc_power_state(A) is BmcPower.ON
    await advance(cloud, clock, T0 + 30.0)
    assert not cloud.is_powered(A) and cloud.bmc_power_state(A) is BmcPower.OFF


async def test_a_stale_bmc_answers_the_power_state_of_a_while_ago_never_an_invented_one() -> None:
    cloud, clock = tiny_cloud()
    cloud.set_bmc(A, stale_for_s=20.0)
    assert cloud.bmc_power_state(A) is BmcPower.ON  # never off: ON, whatever the staleness
    cloud.fail_power(A)
    await advance(cloud, clock, T0 + 19.0)
    assert cloud.bmc_power_state(A) is BmcPower.ON  # it was on 20 s ago
    await advance(cloud, clock, T0 + 20.0)
    assert cloud.bmc_power_state(A) is BmcPower.OFF
    cloud.bmc_request_power(A, on=True)
    await advance(cloud, clock, T0 + 30.0)
    assert cloud.is_powered(A) and cloud.bmc_power_state(A) is BmcPower.OFF  # stale: still off
    await advance(cloud, clock, T0 + 50.5)
    assert cloud.bmc_power_state(A) is BmcPower.ON


# ---- Nova call faults -----------------------------------------------------------------------------


async def test_a_nova_call_times_out_without_its_effect() -> None:
    cloud, _ = tiny_cloud()
    cloud.fail_nova_calls("disable_service", count=2, delay_s=3.0)
    for _ in range(2):
        with pytest.raises(TemporaryError, match="timed out") as raised:
            await cloud.disable_service(A, "why")
        assert raised.value.delay == 3.0
    assert cloud.sim_host(A).service_enabled
    await cloud.force_down(A, True)  # other calls are not touched
    await cloud.disable_service(A, "why")  # the count is spent
    assert not cloud.sim_host(A).service_enabled


async def test_a_nova_call_whose_answer_is_lost_still_took_effect() -> None:
    cloud, _ = tiny_cloud()
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    cloud.fail_nova_calls("evacuate", effect_applied=True)
    with pytest.raises(TemporaryError):
        await cloud.evacuate(VM0, B)
    assert cloud.evacuation_count(VM0) == 1
    assert (await cloud.get_server(VM0)).task_state is TaskState.REBUILDING


async def test_any_call_fault_and_unknown_kinds() -> None:
    cloud, _ = tiny_cloud()
    cloud.fail_nova_calls("*", count=1)
    with pytest.raises(TemporaryError):
        await cloud.stop_server(VM0)
    assert cloud.vm_actions == []
    await cloud.stop_server(VM0)
    with pytest.raises(ValueError, match="unknown Nova call"):
        cloud.fail_nova_calls("delete")


# ---- rebuild failures and the evacuation records -------------------------------------------------


async def test_a_failed_rebuild_leaves_the_server_in_error_on_its_source_running_nowhere() -> None:
    cloud, clock = tiny_cloud()
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    cloud.fail_rebuild(VM0)
    await cloud.evacuate(VM0, B)
    (record,) = cloud.evacuations
    assert record.status is EvacuationStatus.ACCEPTED
    (action,) = await cloud.server_actions(VM0, T0)
    assert action.action == "evacuate" and action.result is None
    await advance(cloud, clock, T0 + 10.0)
    server = await cloud.get_server(VM0)
    assert (server.vm_state, server.task_state, server.host) == (VmState.ERROR, TaskState.NONE, A)
    assert server.power_state is PowerState.NOSTATE and cloud.hosts_running(VM0) == set()
    assert cloud.evacuations[0].status is EvacuationStatus.ERROR
    (action,) = await cloud.server_actions(VM0, T0)
    assert action.result == "Error"
    # A retry after the failure is what is wanted, not a double evacuation.
    await cloud.reset_state(VM0, VmState.ACTIVE)
    await cloud.evacuate(VM0, B)
    await advance(cloud, clock, T0 + 20.0)
    assert cloud.hosts_running(VM0) == {B}
    assert [e.status for e in cloud.evacuations] == [EvacuationStatus.ERROR, EvacuationStatus.DONE]
    assert cloud.unsafe_double_evacuations() == []
    assert [a.result for a in await cloud.server_actions(VM0, T0)] == ["Error", "Success"]


async def test_an_evacuation_while_the_first_rebuild_is_in_flight_is_an_unsafe_double() -> None:
    cloud, clock = tiny_cloud()
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    await cloud.evacuate(VM0, B)
    await cloud.reset_state(VM0, VmState.ERROR)  # Nova's reset clears the task: its guard is gone
    with pytest.raises(Conflict):  # B reports: Nova refuses to move it off B
        await cloud.evacuate(VM0, C)
    await cloud.force_down(B, True)
    await cloud.evacuate(VM0, C)
    await advance(cloud, clock, T0 + 20.0)
    (double,) = cloud.unsafe_double_evacuations()
    assert double.target == C
    assert cloud.servers_running_twice() == [VM0]


async def test_a_second_evacuation_after_its_new_host_failed_is_not_a_double() -> None:
    cloud, clock = tiny_cloud()
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    await cloud.evacuate(VM0, B)
    await advance(cloud, clock, T0 + 10.0)
    cloud.fail_power(B)
    await cloud.force_down(B, True)
    await cloud.evacuate(VM0, C)
    await advance(cloud, clock, T0 + 20.0)
    assert cloud.unsafe_double_evacuations() == [] and cloud.hosts_running(VM0) == {C}


async def test_moving_a_recovered_vm_off_a_live_host_is_an_unsafe_double() -> None:
    cloud, clock = tiny_cloud()
    cloud.fail_power(A)
    await cloud.force_down(A, True)
    await cloud.evacuate(VM0, B)
    await advance(cloud, clock, T0 + 10.0)
    await cloud.force_down(B, True)  # wrongly: B lives
    await cloud.evacuate(VM0, C)
    assert len(cloud.unsafe_double_evacuations()) == 1
    assert cloud.evacuations_from_powered_sources() == 1


# ---- the control plane --------------------------------------------------------------------------


async def test_a_control_plane_outage_downs_every_service_and_refuses_mutations_but_reads_answer() -> None:
    cloud, clock = tiny_cloud()
    cloud.control_plane_outage()
    with pytest.raises(TemporaryError, match="control plane"):
        await cloud.disable_service(A, "x")
    cloud.fail_nova_calls("disable_service")  # not spent while the control plane is down
    await advance(cloud, clock, T0 + 30.0)
    assert all(h.service_up for h in await cloud.list_hosts())
    await advance(cloud, clock, T0 + 80.0)
    assert not any(h.service_up for h in await cloud.list_hosts())
    readings = {r.host: r for r in await cloud.liveness_anomalies()}
    assert set(readings) == {A, B, C}
    assert all(r.agent_seen is not None and r.agent_seen > T0 + 78 for r in readings.values())
    # As the real liveness source says it: the agent beats, Nova counts nova-compute down.
    assert all(r.failed_processes == {"nova-compute"} for r in readings.values())
    assert cloud.hosts_running(VM0) == {A}
    cloud.control_plane_outage(down=False)
    assert all(h.service_up for h in await cloud.list_hosts())
    with pytest.raises(TemporaryError):
        await cloud.disable_service(A, "x")  # the injected fault, now
    await cloud.disable_service(A, "x")
    assert not cloud.sim_host(A).service_enabled


# ---- Nova's clock ---------------------------------------------------------------------------------


async def test_a_skewed_nova_clock_shows_in_raw_nova_times_with_nova_now() -> None:
    cloud, clock = tiny_cloud()
    cloud.nova_clock_skew_s = -60.0
    cloud.crash_agent(A)
    await advance(cloud, clock, T0 + 25.0)
    (r,) = [r for r in await cloud.liveness_anomalies() if r.host == A]
    assert r.nova_now == T0 + 25.0 - 60.0
    assert r.nova_updated_at == T0 + 20.25 - 60.0  # Nova's report at 20.25 s, on Nova's clock
    assert r.nova_up
    assert r.nova_report_local(T0 + 25.0) == T0 + 20.25


async def test_nova_calls_keep_every_call_that_took_effect() -> None:
    cloud, _ = tiny_cloud()
    await cloud.disable_service(A, "x")
    cloud.fail_nova_calls("enable_service")
    with pytest.raises(TemporaryError):
        await cloud.enable_service(A)  # no effect: not kept
    cloud.fail_nova_calls("force_down", effect_applied=True)
    with pytest.raises(TemporaryError):
        await cloud.force_down(A, True)  # took effect, answer lost: kept
    assert [(c.kind, c.subject) for c in cloud.nova_calls] == [
        ("disable_service", A),
        ("force_down", f"{A} down=True"),
    ]
