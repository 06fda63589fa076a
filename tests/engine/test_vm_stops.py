"""A guest that stops behind Nova's back is restarted; a stop its owner asked Nova for is not.

The simulated cloud reports what libvirt would: STOPPED_DESTROYED for a guest destroyed outside Nova
(``virsh destroy``, a killed QEMU), STOPPED_SHUTDOWN for a guest Nova stopped. Nova's instance actions
tell the engine which stop its owner asked for (haven.recovery.vm_policy).
"""

from __future__ import annotations

from vm_rig import MakeRig

from haven.domain.cloud import VmState
from haven.domain.incidents import AlertKind, NotificationStatus, NotificationType


async def test_a_guest_destroyed_outside_nova_is_stopped_started_and_confirmed(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    rig.cloud.destroy_guest(vm)
    shown = rig.cloud.sim_server(vm)
    assert shown.vm_state is VmState.ACTIVE and not rig.cloud.guest_healthy(vm)  # Nova still says active
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["stop", "start"] and rig.cloud.guest_healthy(vm)
    (note,) = rig.notifications_of(vm)  # haven's own stop was reported too: the same failure, not a second
    assert note.payload["vir_domain_event"] == "STOPPED_DESTROYED"
    assert note.status is NotificationStatus.FINISHED
    assert rig.steps(note) == [
        ("check_vm", "done"),
        ("stop_vm", "done"),
        ("start_vm", "done"),
        ("confirm_vm", "done"),
    ]
    summary = note.payload["recovery"]
    assert summary["restarted"] is True
    assert summary["note"].endswith("stopped unexpectedly: stop, start; running again")


async def test_a_stop_its_owner_asked_nova_for_is_not_undone(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    await rig.cloud.stop_server(vm)  # the owner's os-stop
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["stop"] and rig.cloud.sim_server(vm).vm_state is VmState.STOPPED
    (note,) = rig.notifications_of(vm)
    assert note.payload["vir_domain_event"] == "STOPPED_SHUTDOWN"  # the agent did report it
    assert note.status is NotificationStatus.IGNORED
    assert note.payload["recovery"]["note"].endswith("was stopped through Nova (os-stop): not restarted")


async def test_nova_s_own_power_sync_after_the_event_is_not_taken_for_the_owner(make_rig: MakeRig) -> None:
    """The agent's report arrives late: by then Nova has synced the power state (its own stop, later)."""
    rig = await make_rig()
    vm = rig.ha_vm()
    host = rig.host_of(vm)
    rig.cloud.crash_agent(host)  # the report waits in the agent's spool
    stopped_at = rig.clock.now()
    rig.cloud.destroy_guest(vm)
    await rig.run_for(15.0)  # nova-compute's lifecycle event delay
    await rig.cloud.stop_server(vm)  # Nova's power-state sync calls its stop API
    await rig.run_for(5.0)
    assert rig.cloud.sim_server(vm).vm_state is VmState.STOPPED
    rig.cloud.take_agent_reports()  # dropped: submitted below with the time the agent saw the stop
    rig.cloud.crash_agent(host, crashed=False)
    payload = {"event": "LIFECYCLE", "instance_uuid": vm, "vir_domain_event": "STOPPED_DESTROYED"}
    assert rig.engine.submit(NotificationType.VM, host, payload, generated_at=stopped_at) is not None
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["stop", "start"] and rig.cloud.guest_healthy(vm)
    (note,) = rig.notifications_of(vm)
    assert note.status is NotificationStatus.FINISHED


async def test_a_guest_destroyed_again_and_again_is_left_stopped_at_the_limit(make_rig: MakeRig) -> None:
    rig = await make_rig(crash_loop_max_restarts=2, crash_loop_window_s=300.0)
    vm = rig.ha_vm()
    for _ in range(3):
        rig.cloud.destroy_guest(vm)
        await rig.run_for(40.0)
    assert rig.actions(vm) == ["stop", "start"] * 2 and not rig.cloud.guest_healthy(vm)
    newest, *older = rig.notifications_of(vm)
    assert [n.status for n in older] == [NotificationStatus.FINISHED] * 2
    assert newest.status is NotificationStatus.FAILED
    assert newest.payload["recovery"]["note"] == "restarted 2 times in 5 min; left stopped"
    (alert,) = rig.store.list_alerts()
    assert alert.kind is AlertKind.CRASH_LOOP and alert.host == rig.host_of(vm)
