"""Epoch fencing on a real PostgreSQL: a deposed leader with a stale epoch cannot commit a step, nor act.

The database claim (haven.store.fencing) is what stops an engine that still believes it leads
(a process paused past its lease, then woken): leadership here is a controllable stand-in for
the elector (``Term``), since what is under test is the store's test-and-set, not the election.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.errors import Deposed
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import Notification, NotificationStatus, NotificationType, Step, StepState
from haven.domain.settings import EngineSettings, RecoverySettings
from haven.recovery.workflows import EVACUATE
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store

pytestmark = pytest.mark.postgres


class Term:
    """A leadership whose epoch the test sets: what an elector answers, without etcd."""

    def __init__(self, epoch: int | None) -> None:
        self.current = epoch

    def is_leader(self) -> bool:
        return self.current is not None

    def epoch(self) -> int | None:
        return self.current


def _notification() -> tuple[Notification, list[Step]]:
    note = Notification(
        NotificationId("n-1"), NotificationType.COMPUTE_HOST, HostName("compute-1"),
        NotificationStatus.NEW, {"event": "STOPPED"}, 1.0, 1.0, 1.0,
    )  # fmt: skip
    return note, [Step(note.id, 0, "fence", "compute-1"), Step(note.id, 1, "force_down", "compute-1")]


def test_a_commit_with_an_older_epoch_is_refused_and_saves_nothing(pg_store_url: Callable[[], str]) -> None:
    url = pg_store_url()
    with Store.open(url) as old, Store.open(url) as new:
        note, steps = _notification()
        old.create_notification(note, steps)
        running = dataclasses.replace(steps[0], state=StepState.RUNNING, attempts=1)
        old.save_progress(note.id, steps=[running], now=2.0, epoch=5)  # the old leader's intent
        assert new.owner_epoch(note.id) == 5
        assert new.claim_unfinished(6) == 1  # a new leader takes over every unfinished recovery

        done = dataclasses.replace(running, state=StepState.DONE)
        with pytest.raises(Deposed) as refused:
            old.save_progress(note.id, steps=[done], status=NotificationStatus.RUNNING, now=3.0, epoch=5)
        assert (refused.value.epoch, refused.value.owner_epoch) == (5, 6)
        assert "epoch 6" in str(refused.value)
        assert [s.state for s in new.list_steps(note.id)] == [StepState.RUNNING, StepState.PENDING]
        assert new.get_notification(note.id).status is NotificationStatus.NEW  # nothing of it was saved

        new.save_progress(note.id, steps=[done], now=4.0, epoch=6)  # the owner's own commit goes through
        new.save_progress(note.id, steps=[], now=5.0, epoch=7)  # and a newer epoch may always take it
        assert new.owner_epoch(note.id) == 7


async def test_the_deposed_executor_s_next_step_is_refused_and_nothing_happens_in_the_cloud(
    pg_store_url: Callable[[], str],
) -> None:
    """Engines with epochs 5 and 6 on one store: 5 leads mid-evacuation, 6 takes over, 5 wakes late."""
    url = pg_store_url()
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=4, vms=24, zones=1, ha_fraction=1.0, seed=3), clock)
    settings = EngineSettings(recovery=RecoverySettings(max_parallel_evacuations=1))
    wake = [cloud.next_event_time]
    with Store.open(url) as store_5, Store.open(url) as store_6:
        segments_per_zone(store_5, await cloud.list_hosts())
        term_5, term_6 = Term(5), Term(None)
        engine_5 = Engine(cloud, cloud, SimFencer(cloud), store_5, clock, settings, leadership=term_5)
        engine_6 = Engine(cloud, cloud, SimFencer(cloud), store_6, clock, settings, leadership=term_6)
        await run_until(engine_5, clock, clock.now() + 5.0, wake_sources=wake)
        victim = cloud.host_names()[1]
        ha_vms = [s.id for s in await cloud.list_servers(victim) if s.ha_enabled]
        assert len(ha_vms) >= 3
        cloud.fail_power(victim)
        # Epoch 5 runs until its first evacuation is issued; then it "pauses" (is simply not ticked).
        await run_until(
            engine_5, clock, clock.now() + 60.0, done=lambda: bool(cloud.evacuations), wake_sources=wake
        )
        assert len(cloud.evacuations) == 1

        term_6.current = 6  # etcd elected engine 6 (engine 5's lease expired while it was paused)
        await engine_6.tick()  # its first tick as leader claims the unfinished notification
        assert engine_6.term == 6
        note = store_6.list_notifications(type=NotificationType.COMPUTE_HOST)[0]
        assert store_6.owner_epoch(note.id) == 6

        # Engine 5 wakes up late, still believing it leads with epoch 5, with steps due.
        evacuations_before, steps_before = len(cloud.evacuations), store_6.list_steps(note.id)
        clock.advance_to(clock.now() + 2.0)
        await engine_5.tick()
        assert len(cloud.evacuations) == evacuations_before, "the deposed engine acted on the cloud"
        assert store_6.list_steps(note.id) == steps_before, "the deposed engine committed a step"
        assert not engine_5.open_notifications(), "the deposed engine keeps no recovery after the refusal"
        await engine_5.tick()  # and stays out of it
        assert len(cloud.evacuations) == evacuations_before

        # Engine 6 finishes the recovery: every HA VM evacuated exactly once.
        def finished() -> bool:
            return store_6.get_notification(note.id).status is NotificationStatus.FINISHED

        await run_until(engine_6, clock, clock.now() + 300.0, done=finished, wake_sources=wake)
        assert finished()
        assert all(cloud.evacuation_count(s) == 1 for s in ha_vms), [
            cloud.evacuation_count(s) for s in ha_vms
        ]
        assert not cloud.servers_running_twice()
        evacuations = [s for s in store_6.list_steps(note.id) if s.kind == EVACUATE]
        assert all(s.state is StepState.DONE for s in evacuations)


async def test_a_deposed_engine_s_late_detection_writes_nothing_and_it_stands_by(
    pg_store_url: Callable[[], str],
) -> None:
    """Engine 5 pauses, engine 6 takes over, a host dies, engine 5 wakes and sees it first: refused.

    Its detection would open the host's notification, record the host's condition and raise alerts;
    the store's leader fence refuses the first of those writes, and engine 5 stands by for good.
    """
    url = pg_store_url()
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=4, vms=8, zones=1, seed=3), clock)
    settings = EngineSettings()
    wake = [cloud.next_event_time]
    with Store.open(url) as store_5, Store.open(url) as store_6:
        segments_per_zone(store_5, await cloud.list_hosts())
        term_5, term_6 = Term(5), Term(None)
        events_5: list[EngineEvent] = []
        engine_5 = Engine(cloud, cloud, SimFencer(cloud), store_5, clock, settings,
                          on_event=events_5.append, leadership=term_5)  # fmt: skip
        engine_6 = Engine(cloud, cloud, SimFencer(cloud), store_6, clock, settings, leadership=term_6)
        await run_until(engine_5, clock, clock.now() + 5.0, wake_sources=wake)
        term_6.current = 6  # engine 5 paused past its lease; etcd elected engine 6
        await engine_6.tick()
        assert store_6.leader_epoch() == 6

        victim = cloud.host_names()[1]
        cloud.fail_power(victim)
        clock.advance_to(clock.now() + 120.0)  # engine 6 has not looked yet; engine 5 wakes up first
        await engine_5.tick()
        assert store_6.list_notifications() == [], "the deposed engine opened a notification"
        assert store_6.get_host(victim).condition == "healthy", "the deposed engine recorded a condition"
        assert store_6.list_alerts() == []
        assert engine_5.term is None
        lost = [e for e in events_5 if e.kind is EventKind.LEADERSHIP_LOST]
        assert [e.detail for e in lost] == [{"epoch": 5, "deposed_by": 6}]
        await engine_5.tick()  # still believing it leads with epoch 5: it stays out
        assert engine_5.term is None and store_6.list_notifications() == []

        await run_until(engine_6, clock, clock.now() + 5.0, wake_sources=wake)
        (note,) = store_6.list_notifications(type=NotificationType.COMPUTE_HOST)
        assert note.hostname == victim and store_6.get_host(victim).condition == "dead"
