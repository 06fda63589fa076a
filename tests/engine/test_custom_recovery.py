"""Custom recovery in the engine: VMs whose metadata leaves them to their owner, and claimed notifications.

A real Engine over the simulated cloud in virtual time; what happened is judged by the cloud's ground
truth (evacuation records, where each VM runs) and the store.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_engine import Rig, victim_of

from haven.domain.cloud import HA_MODE_KEY
from haven.domain.events import EventKind
from haven.domain.ids import ServerId
from haven.domain.incidents import NotificationStatus, NotificationType, SegmentMode
from haven.domain.liveness import HostCondition


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await Rig.build(f"sqlite:///{tmp_path}/haven.db")
    yield made
    made.close()


def leave_to_owner(rig: Rig, *servers: ServerId) -> None:
    for server in servers:
        rig.cloud.sim_server(server).metadata[HA_MODE_KEY] = "Notify"  # the value is read case-blind


def vm_failure(server: ServerId) -> dict[str, str]:
    return {"event": "LIFECYCLE", "instance_uuid": server, "vir_domain_event": "STOPPED_FAILED"}


async def test_vms_left_to_their_owner_are_reported_not_evacuated(rig: Rig) -> None:
    victim = victim_of(rig)
    ha = await rig.ha_vms(victim)
    owned, haven_recovers = ha[:2], ha[2:]
    assert haven_recovers, "the victim needs VMs of both kinds"
    leave_to_owner(rig, *owned)
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.FINISHED  # haven's part is done; the rest is the owner's
    summary = note.payload["recovery"]
    assert sorted(v["server"] for v in summary["left_to_owner"]) == sorted(owned)
    assert summary["planned"] == summary["evacuated"] == len(haven_recovers)
    assert summary["unplaced"] == []  # the planner never saw the owners' VMs
    # Ground truth: the owners' VMs were never evacuated and are still on the dead host; the rest moved.
    for server in owned:
        assert rig.cloud.evacuation_count(server) == 0 and rig.cloud.sim_server(server).host == victim
    for server in haven_recovers:
        assert rig.cloud.evacuation_count(server) == 1 and rig.cloud.hosts_running(server) - {victim}
    (finished,) = rig.kinds(EventKind.NOTIFICATION_FINISHED)
    assert sorted(v["server"] for v in finished.detail["left_to_owner"]) == sorted(owned)


async def test_a_vm_notification_is_handed_to_the_owner_when_its_metadata_asks(rig: Rig) -> None:
    victim = victim_of(rig)
    owned, other = (await rig.ha_vms(victim))[:2]
    leave_to_owner(rig, owned)
    for_owner = rig.engine.submit(NotificationType.VM, victim, vm_failure(owned))
    recovered = rig.engine.submit(NotificationType.VM, victim, vm_failure(other))
    unknown = rig.engine.submit(NotificationType.VM, victim, vm_failure(ServerId(str(uuid.uuid4()))))
    assert for_owner and recovered and unknown
    await rig.run_until(lambda: not rig.engine.open_notifications(), limit_s=30.0)
    handed = rig.store.get_notification(for_owner.id)
    assert (
        handed.status is NotificationStatus.NEW and handed.mode is SegmentMode.NOTIFY and handed.awaits_owner
    )
    assert handed.payload["recovery"]["left_to_owner"] == [
        {"server": owned, "name": rig.cloud.sim_server(owned).name}
    ]
    # Not the owner's: haven restarts it (Nova's running power state lags a crash, so it is not trusted).
    assert rig.store.get_notification(recovered.id).status is NotificationStatus.FINISHED
    assert [a.action for a in rig.cloud.vm_actions if a.server_id == other] == ["stop", "start"]
    assert rig.store.get_notification(unknown.id).payload["recovery"]["note"] == "the VM does not exist"
    (left,) = rig.kinds(EventKind.NOTIFICATION_LEFT_TO_OWNER)
    assert left.notification_id == for_owner.id
    # Nothing was done to either VM; the owner's notification waits, even across a restart.
    assert rig.cloud.evacuations == []
    assert rig.restart() == 0
    claimed = rig.engine.custom.claim(for_owner.id, "vm-owner")
    assert claimed.status is NotificationStatus.RUNNING and claimed.claimed_by == "vm-owner"


async def test_a_claimed_notification_is_done_once_its_owner_finishes_it(rig: Rig) -> None:
    (segment,) = rig.store.list_segments()
    rig.store.update_segment(segment.id, mode=SegmentMode.NOTIFY)
    victim = victim_of(rig)
    rig.cloud.fail_power(victim)
    await rig.run_for(30.0)
    assert rig.engine.condition(victim) is HostCondition.DEAD
    (note,) = rig.store.list_notifications()
    custom = rig.engine.custom
    custom.claim(note.id, "ext-recovery", "taking it")
    custom.progress(note.id, "ext-recovery", "fenced by our own PDU", 30.0)
    # While the owner works, the same failure reported again is a duplicate and a restart leaves it alone.
    assert rig.engine.submit(NotificationType.COMPUTE_HOST, victim, {"event": "STOPPED"}) is None
    assert rig.restart() == 0
    custom = rig.engine.custom
    finished = custom.finish(note.id, "ext-recovery", "all VMs rebuilt elsewhere")
    assert finished.status is NotificationStatus.FINISHED
    assert finished.payload["recovery"]["external"] == {
        "owner": "ext-recovery",
        "outcome": "finished",
        "message": "all VMs rebuilt elsewhere",
    }
    assert [s.detail["event"] for s in rig.store.list_steps(note.id)] == ["claim", "progress", "finish"]
    assert rig.restart() == 0  # finished: never resumed
    await rig.run_for(30.0)
    assert rig.cloud.evacuations == [] and not (await rig.host(victim)).forced_down
    # Done: a new report of the failure is a new notification, not a duplicate of the finished one.
    again = rig.engine.submit(NotificationType.COMPUTE_HOST, victim, {"event": "STOPPED"})
    assert again is not None and again.id != note.id
    claimed = [e for e in rig.events if e.kind is EventKind.NOTIFICATION_CLAIMED]
    progress = [e for e in rig.events if e.kind is EventKind.NOTIFICATION_PROGRESS]
    assert [e.detail["owner"] for e in claimed] == ["ext-recovery"] and progress[0].detail[
        "percentage"
    ] == 30.0
    closing = [
        e for e in rig.events if e.kind is EventKind.NOTIFICATION_FINISHED and e.detail.get("external")
    ]
    assert [(e.notification_id, e.detail["status"]) for e in closing] == [(note.id, "finished")]


async def test_a_dry_run_says_which_vms_it_would_leave_to_their_owner(rig: Rig) -> None:
    (segment,) = rig.store.list_segments()
    rig.store.update_segment(segment.id, mode=SegmentMode.DRY_RUN)
    victim = victim_of(rig)
    ha = await rig.ha_vms(victim)
    leave_to_owner(rig, ha[0])
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    (note,) = rig.store.list_notifications()
    would = note.payload["recovery"]["dry_run"]
    assert f"evacuate {len(ha) - 1} VM(s) to " in would
    assert "leave 1 VM(s) to their owner (HA_Mode=notify)" in would and would.endswith(
        "did nothing (dry run)"
    )
    vm_note = rig.engine.submit(NotificationType.VM, victim, vm_failure(ha[0]))
    assert vm_note is not None
    await rig.run_until(lambda: not rig.engine.open_notifications(), limit_s=30.0)
    vm_would = rig.store.get_notification(vm_note.id).payload["recovery"]["dry_run"]
    assert vm_would.startswith("would leave VM ") and "to its owner" in vm_would
    assert rig.cloud.evacuations == []
