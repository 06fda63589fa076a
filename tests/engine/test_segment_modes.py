"""Segment modes: dry run decides and plans but does nothing; notify records the failure for others."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_engine import Rig, victim_of

from haven.domain.incidents import NotificationStatus, NotificationType, SegmentMode
from haven.domain.liveness import HostCondition


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await Rig.build(f"sqlite:///{tmp_path}/haven.db")
    yield made
    made.close()


def set_mode(rig: Rig, mode: SegmentMode) -> None:
    (segment,) = rig.store.list_segments()
    rig.store.update_segment(segment.id, mode=mode)


async def test_dry_run_says_what_it_would_do_and_does_nothing(rig: Rig) -> None:
    set_mode(rig, SegmentMode.DRY_RUN)
    victim = victim_of(rig)
    ha = await rig.ha_vms(victim)
    rig.cloud.hang(victim)  # powered on: a real recovery would have to power it off
    await rig.run_until(rig.recovery_over, limit_s=120.0)
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.FINISHED
    would = note.payload["recovery"]["dry_run"]
    assert would.startswith(f"would fence {victim} (BMC reports power on)")
    assert f"evacuate {len(ha)} VM(s) to " in would and "did nothing (dry run)" in would
    # Nothing happened to the cloud: still powered, not forced down, service enabled, nothing moved.
    host = await rig.host(victim)
    assert rig.cloud.is_powered(victim)
    assert not host.forced_down and host.service_enabled
    assert rig.cloud.evacuations == [] and rig.cloud.live_hosts_fenced == []
    assert not rig.store.get_host(victim).disabled_by_haven


async def test_notify_mode_records_the_failure_and_leaves_recovery_to_others(rig: Rig) -> None:
    set_mode(rig, SegmentMode.NOTIFY)
    victim = victim_of(rig)
    rig.cloud.fail_power(victim)
    await rig.run_for(30.0)
    assert rig.engine.condition(victim) is HostCondition.DEAD
    (note,) = rig.store.list_notifications()
    assert note.type is NotificationType.COMPUTE_HOST and note.hostname == victim
    assert note.status is NotificationStatus.NEW  # waiting for an external system to claim it
    assert note.payload["recovery_mode"] == "notify"
    assert rig.store.list_steps(note.id) == []
    assert rig.cloud.evacuations == [] and not (await rig.host(victim)).forced_down
    # The same failure reported again is a duplicate, and a restarted engine does not pick it up.
    assert rig.engine.submit(NotificationType.COMPUTE_HOST, victim, {"event": "STOPPED"}) is None
    assert rig.restart() == 0
    await rig.run_for(30.0)
    assert [n.status for n in rig.store.list_notifications()] == [NotificationStatus.NEW]
    assert rig.cloud.evacuations == []
