"""Guest recovery in the engine: a crashed VM restarted in place, a crash loop held, watchdog policies.

A real Engine over the simulated cloud in virtual time, every host's agent reporting what it saw of its
guests (as the drill does); what happened is judged by the cloud's ground truth (the actions asked of each
VM, whether its guest runs and is not hung) and by the store (statuses, summaries, alerts).
"""

from __future__ import annotations

import pytest
from vm_rig import MakeRig

from haven.domain.cloud import VmState
from haven.domain.errors import Conflict
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind, NotificationStatus, NotificationType, SegmentMode


async def test_a_crashed_ha_vm_is_started_once_and_confirmed_running(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    rig.cloud.crash_guest(vm)
    assert not rig.cloud.guest_healthy(vm)
    await rig.run_for(30.0)
    assert rig.cloud.guest_healthy(vm)
    assert rig.actions(vm) == ["start"]  # Nova already shows it stopped: no stop needed, one start
    (note,) = rig.notifications_of(vm)
    assert note.type is NotificationType.VM and note.status is NotificationStatus.FINISHED
    assert rig.steps(note) == [
        ("check_vm", "done"),
        ("stop_vm", "done"),
        ("start_vm", "done"),
        ("confirm_vm", "done"),
    ]
    summary = note.payload["recovery"]
    assert summary["restarted"] is True and summary["action"] == "restart"
    assert summary["note"].endswith("running again")
    assert rig.store.list_alerts() == []


async def test_a_crash_nova_shows_as_error_is_stopped_then_started(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    rig.cloud.crash_guest(vm, shows_error=True)
    assert rig.cloud.sim_server(vm).vm_state is VmState.ERROR
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["stop", "start"]
    assert rig.cloud.guest_healthy(vm)
    (note,) = rig.notifications_of(vm)
    assert note.status is NotificationStatus.FINISHED


async def test_hard_reboot_is_used_when_configured(make_rig: MakeRig) -> None:
    rig = await make_rig(vm_restart_method="hard_reboot")
    vm = rig.ha_vm()
    rig.cloud.crash_guest(vm, shows_error=True)
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["reboot"]
    assert rig.cloud.guest_healthy(vm)
    (note,) = rig.notifications_of(vm)
    assert [k for k, _ in rig.steps(note)] == ["check_vm", "reboot_vm", "confirm_vm"]


async def test_a_refused_stop_falls_back_to_a_hard_reboot(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()

    async def refuse(server_id: ServerId) -> None:
        raise Conflict(f"Cannot 'stop' instance {server_id}: the hypervisor refused")

    rig.cloud.stop_server = refuse  # type: ignore[method-assign]  # Nova refuses the stop (one fake)
    rig.cloud.crash_guest(vm, shows_error=True)
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["reboot"]
    assert rig.cloud.guest_healthy(vm)
    (note,) = rig.notifications_of(vm)
    stop = next(s for s in rig.all_steps(note) if s.kind == "stop_vm")
    assert stop.detail["stopped"] is False and "refused" in stop.detail["stop_error"]
    assert note.status is NotificationStatus.FINISHED


async def test_a_vm_without_ha_enabled_is_ignored_unless_process_all_instances(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.plain_vm()
    rig.cloud.crash_guest(vm)
    await rig.run_for(20.0)
    assert rig.actions(vm) == [] and not rig.cloud.guest_healthy(vm)
    (note,) = rig.notifications_of(vm)
    assert note.status is NotificationStatus.IGNORED
    assert "not HA_Enabled" in note.payload["recovery"]["note"]

    everyone = await make_rig(process_all_instances=True)
    vm = everyone.plain_vm()
    everyone.cloud.crash_guest(vm)
    await everyone.run_for(20.0)
    assert everyone.actions(vm) == ["start"] and everyone.cloud.guest_healthy(vm)


async def test_a_crash_loop_is_restarted_n_times_then_left_stopped_with_an_alert(make_rig: MakeRig) -> None:
    rig = await make_rig(crash_loop_max_restarts=2, crash_loop_window_s=300.0)
    vm = rig.ha_vm()
    rig.cloud.crash_guest(vm, again=5)
    await rig.run_for(200.0)
    assert rig.actions(vm) == ["start", "start"]
    assert not rig.cloud.guest_healthy(vm)
    newest, *older = rig.notifications_of(vm)
    assert [n.status for n in older] == [NotificationStatus.FINISHED] * 2
    assert newest.status is NotificationStatus.FAILED
    summary = newest.payload["recovery"]
    assert summary["note"] == "restarted 2 times in 5 min; left stopped"
    assert summary["crash_loop"] is True and summary["action"] == "left_stopped"
    (alert,) = rig.store.list_alerts()
    assert alert.kind is AlertKind.CRASH_LOOP and alert.host == rig.host_of(vm)
    assert "restarted 2 times in 5 min; left stopped" in alert.message
    # Nothing more: the VM stays stopped, no further notification.
    await rig.run_for(120.0)
    assert len(rig.notifications_of(vm)) == 3 and rig.actions(vm) == ["start", "start"]


async def test_restarts_older_than_the_window_do_not_count(make_rig: MakeRig) -> None:
    rig = await make_rig(crash_loop_max_restarts=1, crash_loop_window_s=60.0)
    vm = rig.ha_vm()
    rig.cloud.crash_guest(vm)
    await rig.run_for(90.0)  # restarted once; the window moves past it
    rig.cloud.crash_guest(vm)
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["start", "start"] and rig.cloud.guest_healthy(vm)
    assert [n.status for n in rig.notifications_of(vm)] == [NotificationStatus.FINISHED] * 2


async def test_a_fired_watchdog_is_reset_by_a_hard_reboot_by_default(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    rig.cloud.fire_watchdog(vm)
    assert not rig.cloud.guest_healthy(vm)  # hung, though Nova shows it active and running
    await rig.run_for(30.0)
    assert rig.actions(vm) == ["reboot"] and rig.cloud.guest_healthy(vm)
    (note,) = rig.notifications_of(vm)
    assert note.payload["vir_domain_event"] == "WATCHDOG_RESET"
    assert note.status is NotificationStatus.FINISHED
    assert "hw:watchdog_action=reset: hard reboot" in note.payload["recovery"]["note"]


@pytest.mark.parametrize("policy", ["notify", "none", "poweroff"])
async def test_a_watchdog_policy_other_than_reset_is_recorded_and_left(
    make_rig: MakeRig, policy: str
) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    rig.cloud.sim_server(vm).watchdog_action = policy  # the flavor's extra spec or the image's property
    rig.cloud.fire_watchdog(vm)
    await rig.run_for(30.0)
    assert rig.actions(vm) == []
    (note,) = rig.notifications_of(vm)
    assert note.status is NotificationStatus.FINISHED
    assert note.payload["recovery"]["note"] == (
        f"watchdog fired; hw:watchdog_action={policy}: recorded, left as it is"
    )


async def test_the_default_watchdog_policy_is_configurable(make_rig: MakeRig) -> None:
    rig = await make_rig(watchdog_default_action="notify")
    vm = rig.ha_vm()
    rig.cloud.fire_watchdog(vm)
    await rig.run_for(30.0)
    assert rig.actions(vm) == []
    other = rig.ha_vm(1)
    rig.cloud.sim_server(other).watchdog_action = "reset"
    rig.cloud.fire_watchdog(other)
    await rig.run_for(30.0)
    assert rig.actions(other) == ["reboot"]


async def test_events_that_are_not_failures_are_ignored(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    payload = {"event": "LIFECYCLE", "instance_uuid": vm, "vir_domain_event": "CRASHED_CRASHLOADED"}
    note = rig.engine.submit(NotificationType.VM, rig.host_of(vm), payload)
    assert note is not None
    await rig.run_until(rig.settled, 30.0)
    done = rig.store.get_notification(note.id)
    assert done.status is NotificationStatus.IGNORED
    assert done.payload["recovery"]["note"] == "LIFECYCLE CRASHED_CRASHLOADED is not a failure haven recovers"
    assert rig.actions(vm) == []


async def test_a_dry_run_segment_says_what_it_would_do_to_a_crashed_vm(make_rig: MakeRig) -> None:
    rig = await make_rig()
    vm = rig.ha_vm()
    for segment in rig.store.list_segments():
        rig.store.update_segment(segment.id, mode=SegmentMode.DRY_RUN)
    rig.cloud.crash_guest(vm)
    await rig.run_for(20.0)
    assert rig.actions(vm) == []
    (note,) = rig.notifications_of(vm)
    (step,) = rig.all_steps(note)
    assert step.kind == "dry_run" and step.detail["action"] == "restart"
    name = rig.cloud.sim_server(vm).name
    assert step.detail["would"] == f"{name} crashed: start; would restart it; did nothing (dry run)"
