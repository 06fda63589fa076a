"""The simulated cloud's guests: Nova's stop, start and hard reboot, guest faults, the agents' reports."""

from __future__ import annotations

import pytest
from test_sim_cloud import A, advance, tiny_cloud

from haven.domain.cloud import PowerState, TaskState, VmState
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import ServerId

VM = ServerId("vm-0")


async def test_stop_then_start_takes_effect_after_their_timings_and_is_recorded() -> None:
    cloud, clock = tiny_cloud(1)
    t0 = clock.now()
    await cloud.stop_server(VM)
    assert (await cloud.get_server(VM)).task_state is TaskState.POWERING_OFF
    assert cloud.guest_healthy(VM)  # still running until the stop lands
    await advance(cloud, clock, t0 + cloud.timings.vm_stop_s)
    stopped = await cloud.get_server(VM)
    assert (stopped.vm_state, stopped.power_state, stopped.task_state) == (
        VmState.STOPPED,
        PowerState.SHUTDOWN,
        TaskState.NONE,
    )
    assert cloud.hosts_running(VM) == set()
    await cloud.start_server(VM)
    await advance(cloud, clock, clock.now() + cloud.timings.vm_start_s)
    assert (await cloud.get_server(VM)).is_running and cloud.hosts_running(VM) == {A}
    assert [a.action for a in await cloud.server_actions(VM, since=t0)] == ["stop", "start"]
    assert await cloud.server_actions(VM, since=clock.now() + 1) == []
    assert cloud.action_counts(VM, t0, clock.now()) == {"stop": 1, "start": 1}


async def test_nova_refuses_actions_in_the_wrong_state_and_records_nothing() -> None:
    cloud, _clock = tiny_cloud(1)
    with pytest.raises(Conflict, match="Cannot 'start' instance vm-0 while it is in vm_state active"):
        await cloud.start_server(VM)
    await cloud.stop_server(VM)
    with pytest.raises(Conflict, match="task_state powering-off"):
        await cloud.reboot_server(VM)
    assert [a.action for a in cloud.vm_actions] == ["stop"]
    with pytest.raises(NotFound):
        await cloud.server_actions(ServerId("nope"), since=0.0)


async def test_a_hard_reboot_cycles_the_guest_and_clears_a_hang() -> None:
    cloud, clock = tiny_cloud(1)
    cloud.fire_watchdog(VM)
    assert not cloud.guest_healthy(VM) and (await cloud.get_server(VM)).is_running  # Nova sees nothing
    await cloud.reboot_server(VM)
    assert cloud.hosts_running(VM) == set()  # the old guest is gone at once
    await advance(cloud, clock, clock.now() + cloud.timings.vm_reboot_s)
    assert cloud.guest_healthy(VM)


async def test_a_crash_shows_in_nova_and_is_reported_by_the_hosts_agent() -> None:
    cloud, _clock = tiny_cloud(2)
    cloud.crash_guest(VM)
    cloud.crash_guest(ServerId("vm-1"), shows_error=True)
    assert (await cloud.get_server(VM)).vm_state is VmState.STOPPED
    shown = await cloud.get_server(ServerId("vm-1"))
    assert (shown.vm_state, shown.power_state) == (VmState.ERROR, PowerState.CRASHED)
    assert cloud.take_agent_reports() == [
        (A, {"event": "LIFECYCLE", "instance_uuid": VM, "vir_domain_event": "STOPPED_FAILED"}),
        (A, {"event": "LIFECYCLE", "instance_uuid": "vm-1", "vir_domain_event": "STOPPED_FAILED"}),
    ]
    assert cloud.take_agent_reports() == []


async def test_a_stopped_agent_keeps_its_reports_until_it_runs_again() -> None:
    cloud, _clock = tiny_cloud(1)
    cloud.crash_agent(A)
    cloud.fire_watchdog(VM)
    assert cloud.take_agent_reports() == []
    cloud.crash_agent(A, crashed=False)
    assert cloud.take_agent_reports() == [
        (A, {"event": "WATCHDOG", "instance_uuid": VM, "vir_domain_event": "WATCHDOG_RESET"})
    ]


async def test_a_crash_looping_guest_crashes_again_after_each_boot_as_often_as_told() -> None:
    cloud, clock = tiny_cloud(1)
    cloud.crash_guest(VM, again=1)
    cloud.take_agent_reports()
    await cloud.start_server(VM)
    await advance(cloud, clock, clock.now() + cloud.timings.vm_start_s)
    assert cloud.guest_healthy(VM)
    await advance(cloud, clock, clock.now() + cloud.timings.crash_again_after_s)
    assert not cloud.guest_healthy(VM) and len(cloud.take_agent_reports()) == 1
    await cloud.start_server(VM)
    await advance(cloud, clock, clock.now() + cloud.timings.vm_start_s + cloud.timings.crash_again_after_s)
    assert cloud.guest_healthy(VM) and cloud.take_agent_reports() == []  # its crashes are used up


async def test_a_crash_scheduled_for_an_earlier_boot_is_dropped() -> None:
    cloud, clock = tiny_cloud(1)
    cloud.crash_guest(VM, again=1)
    await cloud.start_server(VM)
    await advance(cloud, clock, clock.now() + cloud.timings.vm_start_s)
    await cloud.reboot_server(VM)  # a new boot before the scheduled crash
    await advance(cloud, clock, clock.now() + cloud.timings.crash_again_after_s)
    assert cloud.guest_healthy(VM)


async def test_a_guest_destroyed_outside_nova_is_reported_while_nova_still_says_active() -> None:
    cloud, _clock = tiny_cloud(1)
    cloud.destroy_guest(VM)
    shown = await cloud.get_server(VM)
    assert (shown.vm_state, shown.power_state) == (VmState.ACTIVE, PowerState.SHUTDOWN)
    assert not cloud.guest_healthy(VM) and cloud.vm_actions == []  # nobody asked Nova
    assert cloud.take_agent_reports() == [
        (A, {"event": "LIFECYCLE", "instance_uuid": VM, "vir_domain_event": "STOPPED_DESTROYED"})
    ]


async def test_a_stop_through_nova_is_reported_once_the_guest_is_down_and_only_if_it_ran() -> None:
    cloud, clock = tiny_cloud(2)
    await cloud.stop_server(VM)
    assert cloud.take_agent_reports() == []  # still shutting down
    await advance(cloud, clock, clock.now() + cloud.timings.vm_stop_s)
    assert cloud.take_agent_reports() == [
        (A, {"event": "LIFECYCLE", "instance_uuid": VM, "vir_domain_event": "STOPPED_SHUTDOWN"})
    ]
    other = ServerId("vm-1")
    cloud.crash_guest(other, shows_error=True)
    cloud.take_agent_reports()
    await cloud.stop_server(other)  # Nova's stop of a guest that is already gone: libvirt says nothing
    await advance(cloud, clock, clock.now() + cloud.timings.vm_stop_s)
    assert cloud.take_agent_reports() == []
