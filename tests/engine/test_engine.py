"""Engine behaviours on the simulated cloud: notifications, maintenance, fences, return to service, gate.

Every test drives a real Engine over a SimCloud in virtual time with a SQLite store, and judges what
happened by the cloud's ground truth and the store, not by the engine's own bookkeeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.cloud.sim.builder import SimTopology
from haven.domain.clock import VirtualClock
from haven.domain.cloud import Host
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import AlertKind, NotificationStatus, NotificationType, StepState
from haven.domain.liveness import HostCondition
from haven.domain.settings import EngineSettings, RecoverySettings
from haven.recovery.executor import CommitHook, no_hook
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store

# Ten hosts in one zone (one segment), every VM HA: room to recover, and a segment big enough for the gate.
SPEC = CloudSpec(hosts=10, vms=100, zones=1, ha_fraction=1.0, seed=5)
STOPPED = {"event": "STOPPED", "host_status": "UNKNOWN", "cluster_status": "OFFLINE"}


class Crash(BaseException):
    """The engine process dies here."""


class Rig:
    """A simulated cloud, a store and an engine on them, driven in virtual time."""

    def __init__(
        self,
        cloud: SimCloud,
        topology: SimTopology,
        clock: VirtualClock,
        url: str,
        settings: EngineSettings | None = None,
    ) -> None:
        self.cloud, self.topology, self.clock, self.url = cloud, topology, clock, url
        self.settings = settings
        self.store = Store.open(url)
        self.events: list[EngineEvent] = []
        self.engine = self.new_engine()

    @classmethod
    async def build(cls, url: str, spec: CloudSpec = SPEC, settings: EngineSettings | None = None) -> Rig:
        clock = VirtualClock()
        cloud, topology = build_cloud(spec, clock)
        rig = cls(cloud, topology, clock, url, settings)
        segments_per_zone(rig.store, await cloud.list_hosts())
        rig.engine.start()
        await rig.run_for(5.0)  # warm up: a few quiet detection passes
        return rig

    def new_engine(self, on_commit: CommitHook = no_hook) -> Engine:
        return Engine(
            self.cloud,
            self.cloud,
            SimFencer(self.cloud),
            self.store,
            self.clock,
            self.settings,
            on_event=self.events.append,
            on_commit=on_commit,
        )

    def restart(self) -> int:
        """A new engine process on the same store (opened again) and the same cloud."""
        self.store.close()
        self.store = Store.open(self.url)
        self.engine = self.new_engine()
        return self.engine.start()

    async def run_for(self, seconds: float) -> None:
        await run_until(
            self.engine, self.clock, self.clock.now() + seconds, wake_sources=[self.cloud.next_event_time]
        )

    async def run_until(self, done: Callable[[], bool], limit_s: float = 600.0) -> None:
        await run_until(
            self.engine,
            self.clock,
            self.clock.now() + limit_s,
            done=done,
            wake_sources=[self.cloud.next_event_time],
        )
        assert done(), f"not done within {limit_s} s of virtual time"

    def recovery_over(self) -> bool:
        return bool(self.store.list_notifications()) and not self.engine.open_notifications()

    async def ha_vms(self, host: HostName) -> list[ServerId]:
        return [s.id for s in await self.cloud.list_servers(host) if s.ha_enabled]

    async def host(self, name: HostName) -> Host:
        return await self.cloud.get_host(name)

    def kinds(self, kind: EventKind) -> list[EngineEvent]:
        return [e for e in self.events if e.kind is kind]

    def close(self) -> None:
        self.store.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await Rig.build(f"sqlite:///{tmp_path}/haven.db")
    yield made
    made.close()


def victim_of(rig: Rig) -> HostName:
    return rig.cloud.host_names()[3]


# ---- notifications ------------------------------------------------------------------------------


async def test_a_dead_host_gets_one_notification_while_it_is_open(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.fail_power(victim)
    await rig.run_until(lambda: bool(rig.engine.open_notifications()))
    (first,) = rig.store.list_notifications()
    assert first.type is NotificationType.COMPUTE_HOST and first.hostname == victim
    assert first.payload["event"] == "STOPPED"
    # While it is open, the same notification again (Masakari's monitors resend) is not a second one.
    assert rig.engine.submit(NotificationType.COMPUTE_HOST, victim, STOPPED) is None
    # Another kind of notification about this host is not deduplicated against it.
    other = rig.engine.submit(NotificationType.PROCESS, victim, {"event": "STOPPED", "process_name": "x"})
    assert other is not None
    assert len(rig.store.list_notifications()) == 2
    await rig.run_until(rig.recovery_over)
    # Long after: the host is still dead, but nothing new is opened for it.
    await rig.run_for(300.0)
    host_notes = rig.store.list_notifications(type=NotificationType.COMPUTE_HOST)
    assert [(n.id, n.status) for n in host_notes] == [(first.id, NotificationStatus.FINISHED)]
    assert len(rig.kinds(EventKind.HOST_CONFIRMED_DEAD)) == 1
    # Once the first is over, a new report of the failure is a new notification.
    again = rig.engine.submit(NotificationType.COMPUTE_HOST, victim, STOPPED)
    assert again is not None and again.id != first.id


async def test_a_recovery_evacuates_every_ha_vm_once_onto_healthy_hosts(rig: Rig) -> None:
    victim = victim_of(rig)
    ha = await rig.ha_vms(victim)
    assert len(ha) >= 5
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.FINISHED
    steps = rig.store.list_steps(note.id)
    assert [s.kind for s in steps[:3]] == ["fence", "force_down", "plan"]
    assert {s.subject for s in steps if s.kind == "evacuate"} == set(ha)
    assert all(s.state is StepState.DONE for s in steps)
    for sid in ha:
        (host,) = rig.cloud.hosts_running(sid)
        assert host != victim and rig.cloud.is_powered(host)
        assert rig.cloud.evacuation_count(sid) == 1
    assert rig.cloud.servers_running_twice() == []
    victim_state = await rig.host(victim)
    assert victim_state.forced_down and not victim_state.service_enabled
    assert rig.store.get_host(victim).disabled_by_haven
    assert rig.store.list_alerts() == []


# ---- maintenance and disabled segments ----------------------------------------------------------


async def test_a_host_on_maintenance_is_ignored_and_nothing_evacuated(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.store.update_host(victim, on_maintenance=True)
    rig.cloud.fail_power(victim)
    await rig.run_until(lambda: bool(rig.store.list_notifications()))
    await rig.run_for(120.0)
    (note,) = rig.store.list_notifications()
    assert note.hostname == victim and note.status is NotificationStatus.IGNORED
    assert rig.store.list_steps(note.id) == []
    assert rig.engine.open_notifications() == []
    assert rig.cloud.evacuations == []
    victim_state = await rig.host(victim)
    assert not victim_state.forced_down and victim_state.service_enabled  # haven did not touch it
    assert not rig.store.get_host(victim).disabled_by_haven


async def test_a_disabled_segment_is_ignored_and_nothing_evacuated(rig: Rig) -> None:
    victim = victim_of(rig)
    (segment,) = rig.store.list_segments()
    rig.store.update_segment(segment.id, enabled=False)
    rig.cloud.fail_power(victim)
    await rig.run_for(120.0)
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.IGNORED
    assert rig.cloud.evacuations == []


# ---- a fence that cannot be confirmed -----------------------------------------------------------


async def test_an_unconfirmed_fence_fails_the_recovery_with_an_alert_and_no_evacuation(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.sim_host(victim).bmc_reachable = False
    rig.cloud.fail_power(victim)
    fault_at = rig.clock.now()
    await rig.run_until(rig.recovery_over)
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.FAILED
    steps = {s.kind: s for s in rig.store.list_steps(note.id)}
    assert set(steps) == {"fence", "force_down", "plan"}  # no evacuate step was ever planned
    assert steps["fence"].state is StepState.FAILED
    assert "could not fence" in steps["fence"].detail["error"]
    assert steps["force_down"].state is StepState.SKIPPED and steps["plan"].state is StepState.SKIPPED
    # The fence kept trying for its whole timeout before giving up.
    timeout = rig.engine.settings.recovery.fence_timeout_s
    assert steps["fence"].finished_at is not None
    assert steps["fence"].finished_at - fault_at >= timeout
    assert rig.cloud.evacuations == []
    assert not (await rig.host(victim)).forced_down  # Nova was not told it is down either
    alerts = rig.store.list_alerts()
    assert [(a.kind, a.host) for a in alerts] == [(AlertKind.FENCE_FAILED, victim)]
    assert victim in alerts[0].message and "NOT evacuated" in alerts[0].message
    assert alerts[0].segment_id == note.segment_id
    assert note.payload["recovery"]["failures"][0]["step"] == "fence"


async def test_the_fence_failed_alert_survives_a_crash_right_after_the_finish_commit(rig: Rig) -> None:
    victim = victim_of(rig)

    def die_after_finish(where: str) -> None:
        if where == "after-finish":
            raise Crash(where)

    rig.engine = rig.new_engine(on_commit=die_after_finish)
    rig.engine.start()
    rig.cloud.sim_host(victim).bmc_reachable = False
    rig.cloud.fail_power(victim)
    with pytest.raises(Crash):
        await rig.run_until(rig.recovery_over)
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.FAILED  # the finish was committed...
    rig.restart()
    await rig.run_for(60.0)
    assert [a.kind for a in rig.store.list_alerts()] == [AlertKind.FENCE_FAILED]  # ...so must its alert be


# ---- return to service ---------------------------------------------------------------------------


async def power_back_on(rig: Rig, host: HostName) -> None:
    await SimFencer(rig.cloud).power_on(host)


async def test_a_recovered_host_returns_to_service_once_it_is_back(rig: Rig) -> None:
    victim = victim_of(rig)
    ha = await rig.ha_vms(victim)
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    # Still dead: it stays forced down and disabled, however long we wait.
    await rig.run_for(120.0)
    state = await rig.host(victim)
    assert state.forced_down and not state.service_enabled
    assert rig.kinds(EventKind.HOST_RETURNED) == []
    assert rig.store.get_host(victim).on_maintenance  # as Masakari puts a host it recovers

    await power_back_on(rig, victim)
    await rig.run_until(lambda: bool(rig.kinds(EventKind.HOST_RETURNED)), limit_s=300.0)
    state = await rig.host(victim)
    assert not state.forced_down and state.service_enabled and state.service_up
    assert state.disabled_reason == ""
    assert not rig.store.get_host(victim).disabled_by_haven
    assert not rig.store.get_host(victim).on_maintenance  # automatic: haven ended the maintenance it set
    assert rig.engine.condition(victim) is HostCondition.HEALTHY
    assert rig.store.get_host(victim).condition == "healthy"
    (returned,) = rig.kinds(EventKind.HOST_RETURNED)
    assert returned.host == victim
    # Not before the host had booted and beaten again.
    assert returned.at >= rig.clock.now() - 300.0 + rig.cloud.timings.host_boot_s
    # The evacuated VMs stay where they were recovered to; nothing was evacuated again.
    for sid in ha:
        (host,) = rig.cloud.hosts_running(sid)
        assert host != victim and rig.cloud.evacuation_count(sid) == 1
    assert len(rig.store.list_notifications()) == 1


async def test_masakari_return_waits_for_an_operator_to_end_the_maintenance(tmp_path: Path) -> None:
    # Masakari (masakari/engine/manager.py, _handle_notification_type_host) puts a recovered host on
    # maintenance and never returns it: its operators do, then clear on_maintenance.
    rig = await Rig.build(f"sqlite:///{tmp_path}/haven.db")
    try:
        settings = rig.engine.settings
        rig.engine = Engine(
            rig.cloud,
            rig.cloud,
            SimFencer(rig.cloud),
            rig.store,
            rig.clock,
            replace(settings, recovery=replace(settings.recovery, return_to_service="masakari")),
            on_event=rig.events.append,
        )
        rig.engine.start()
        victim = victim_of(rig)
        rig.cloud.fail_power(victim)
        await rig.run_until(rig.recovery_over)
        assert rig.store.get_host(victim).on_maintenance
        await power_back_on(rig, victim)
        await rig.run_for(200.0)
        assert rig.engine.condition(victim) is HostCondition.HEALTHY
        state = await rig.host(victim)
        assert state.forced_down and not state.service_enabled
        assert rig.store.get_host(victim).on_maintenance and rig.kinds(EventKind.HOST_RETURNED) == []

        rig.store.update_host(victim, on_maintenance=False)  # the operator: "host repaired"
        await rig.run_until(lambda: bool(rig.kinds(EventKind.HOST_RETURNED)), limit_s=30.0)
        state = await rig.host(victim)
        assert not state.forced_down and state.service_enabled  # haven undid its own force down and disable
        assert not rig.store.get_host(victim).disabled_by_haven
        assert len(rig.store.list_notifications()) == 1  # nothing opened while it was back on maintenance
    finally:
        rig.close()


class DiesReturningHost:
    """Wraps the cloud: the engine process dies in the middle of returning ``host`` to service."""

    def __init__(self, cloud: SimCloud, host: HostName) -> None:
        self._cloud, self._host = cloud, host
        self.armed = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._cloud, name)

    async def force_down(self, host: HostName, down: bool) -> None:
        if self.armed and host == self._host and not down:
            raise Crash("returning the host to service")
        await self._cloud.force_down(host, down)


async def test_a_host_returns_to_service_after_a_restart_in_the_middle_of_its_return(rig: Rig) -> None:
    victim = victim_of(rig)
    dying = DiesReturningHost(rig.cloud, victim)
    rig.engine = Engine(
        dying,
        rig.cloud,
        SimFencer(rig.cloud),
        rig.store,
        rig.clock,  # type: ignore[arg-type]
        on_event=rig.events.append,
    )
    rig.engine.start()
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    await power_back_on(rig, victim)
    dying.armed = True
    with pytest.raises(Crash):
        await rig.run_for(300.0)
    assert rig.store.get_host(victim).condition == "healthy"  # the host's return had been recorded...
    rig.restart()
    await rig.run_for(120.0)
    state = await rig.host(victim)
    # ...so the new engine must finish returning it: service enabled and no longer forced down.
    assert state.service_enabled
    assert not rig.store.get_host(victim).disabled_by_haven
    assert not state.forced_down and state.service_up


# ---- the observer gate and isolation ---------------------------------------------------------------


async def test_the_gate_holds_a_segment_with_an_alert_and_releases_it(rig: Rig) -> None:
    silent = rig.cloud.host_names()[:6]  # 6 of 10: more than half
    rig.cloud.cut_observer(silent)
    await rig.run_for(60.0)
    (alert,) = rig.store.list_alerts()
    (segment,) = rig.store.list_segments()
    assert alert.kind is AlertKind.GATE_HOLD and alert.segment_id == segment.id
    assert "6 of 10" in alert.message
    assert set(rig.engine.holds) == {segment.id}
    assert {h: rig.engine.condition(h) for h in silent} == dict.fromkeys(silent, HostCondition.HELD)
    assert rig.store.list_notifications() == [] and rig.cloud.evacuations == []
    assert len(rig.kinds(EventKind.SEGMENT_HELD)) == 1

    rig.cloud.cut_observer(silent, cut=False)
    await rig.run_for(10.0)
    assert rig.store.list_alerts() == []
    (cleared,) = rig.store.list_alerts(active_only=False)
    assert cleared.id == alert.id and cleared.cleared_at is not None
    assert rig.engine.holds == {}
    assert all(rig.engine.condition(h) is HostCondition.HEALTHY for h in silent)
    assert len(rig.kinds(EventKind.SEGMENT_RELEASED)) == 1
    assert rig.store.list_notifications() == [] and rig.cloud.evacuations == []


async def test_a_hold_survives_an_engine_restart(rig: Rig) -> None:
    silent = rig.cloud.host_names()[:6]
    rig.cloud.cut_observer(silent)
    await rig.run_for(10.0)
    (alert,) = rig.store.list_alerts()
    rig.restart()
    await rig.run_for(120.0)
    assert rig.store.list_notifications() == [] and rig.cloud.evacuations == []
    assert [a.id for a in rig.store.list_alerts()] == [alert.id]
    rig.cloud.cut_observer(silent, cut=False)
    await rig.run_for(10.0)
    assert rig.store.list_alerts() == []
    assert rig.store.list_notifications() == []


def silence_networks(rig: Rig, hosts: list[HostName]) -> None:
    """Both heartbeat networks of ``hosts`` fail (a switch, not the hosts): their BMCs still answer."""
    for host in hosts:
        rig.cloud.sim_host(host).second_up = False
        rig.cloud.partition_management(host)


async def test_a_network_burst_is_held_while_the_engine_watches(rig: Rig) -> None:
    silent = rig.cloud.host_names()[:6]
    silence_networks(rig, silent)
    await rig.run_for(120.0)
    assert rig.store.list_notifications() == [] and rig.cloud.evacuations == []
    assert all(rig.cloud.is_powered(h) for h in silent)
    assert [a.kind for a in rig.store.list_alerts()] == [AlertKind.GATE_HOLD]


async def test_a_network_burst_is_held_by_an_engine_that_starts_after_it(rig: Rig) -> None:
    silent = rig.cloud.host_names()[:6]
    rig.store.close()  # the engine process is gone...
    silence_networks(rig, silent)  # ...when 6 of the 10 hosts' networks fail at once
    rig.clock.advance_to(rig.clock.now() + 10.0)  # it is back 10 s later (a restart, a new leader)
    rig.restart()
    await rig.run_for(120.0)
    assert all(rig.cloud.is_powered(h) for h in silent), "healthy hosts were powered off"
    assert rig.cloud.evacuations == []
    assert rig.store.list_notifications() == []
    assert [a.kind for a in rig.store.list_alerts()] == [AlertKind.GATE_HOLD]


async def test_a_host_dying_during_a_hold_is_held_too(rig: Rig) -> None:
    silent = rig.cloud.host_names()[:6]
    rig.cloud.cut_observer(silent)
    await rig.run_for(10.0)
    late = rig.cloud.host_names()[8]
    rig.cloud.fail_power(late)
    await rig.run_for(60.0)
    assert rig.engine.condition(late) is HostCondition.HELD
    assert rig.cloud.evacuations == [] and rig.store.list_notifications() == []


async def test_an_isolated_host_raises_an_alert_and_is_not_evacuated(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.partition_management(victim)
    await rig.run_for(120.0)
    assert rig.engine.condition(victim) is HostCondition.ISOLATED
    (alert,) = rig.store.list_alerts()
    assert alert.kind is AlertKind.ISOLATED and alert.host == victim
    assert rig.store.list_notifications() == [] and rig.cloud.evacuations == []
    rig.cloud.partition_management(victim, cut=False)
    await rig.run_for(10.0)
    assert rig.store.list_alerts() == []
    assert rig.engine.condition(victim) is HostCondition.HEALTHY


async def test_a_crashed_nova_compute_disables_then_re_enables_the_service(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(90.0)  # Nova notices after its service_down_time
    state = await rig.host(victim)
    assert not state.service_enabled and not state.forced_down
    assert rig.store.get_host(victim).disabled_by_haven
    rig.cloud.crash_nova_compute(victim, crashed=False)
    await rig.run_for(30.0)
    state = await rig.host(victim)
    assert state.service_enabled and state.service_up
    assert not rig.store.get_host(victim).disabled_by_haven
    notes = rig.store.list_notifications(type=NotificationType.PROCESS)
    assert sorted((n.payload["event"], n.status) for n in notes) == [
        ("STARTED", NotificationStatus.FINISHED),
        ("STOPPED", NotificationStatus.FINISHED),
    ]
    assert rig.cloud.evacuations == []


async def test_a_crashed_nova_compute_is_re_enabled_after_an_engine_restart(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(30.0)
    assert not (await rig.host(victim)).service_enabled
    rig.restart()
    await rig.run_for(30.0)
    assert not (await rig.host(victim)).service_enabled  # still down: not re-enabled by the restart
    rig.cloud.crash_nova_compute(victim, crashed=False)
    await rig.run_for(30.0)
    state = await rig.host(victim)
    assert state.service_enabled and state.service_up and not state.forced_down
    assert not rig.store.get_host(victim).disabled_by_haven
    assert rig.cloud.evacuations == []
    assert rig.engine.open_notifications() == []


async def test_a_restart_does_not_report_a_process_failure_again(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(30.0)
    rig.restart()
    await rig.run_for(30.0)
    rig.cloud.crash_nova_compute(victim, crashed=False)
    await rig.run_for(30.0)
    # One failure, one return: one STOPPED and one STARTED notification.
    notes = rig.store.list_notifications(type=NotificationType.PROCESS)
    assert sorted((n.payload["event"], n.status) for n in notes) == [
        ("STARTED", NotificationStatus.FINISHED),
        ("STOPPED", NotificationStatus.FINISHED),
    ]


# ---- safety: fencing must hold until each evacuation, retries must end, a dead agent is not a dead host


def rig_engine(rig: Rig, **recovery: object) -> Engine:
    settings = EngineSettings(recovery=replace(RecoverySettings(), **recovery))  # type: ignore[arg-type]
    engine = Engine(
        rig.cloud, rig.cloud, SimFencer(rig.cloud), rig.store, rig.clock, settings, on_event=rig.events.append
    )
    engine.start()
    rig.engine = engine
    return engine


async def test_no_evacuation_from_a_host_that_is_powered_on_again(rig: Rig) -> None:
    rig_engine(rig, max_parallel_evacuations=1)  # evacuations one by one, so the host can come back midway
    victim = victim_of(rig)
    assert len(await rig.ha_vms(victim)) >= 3
    rig.cloud.fail_power(victim)
    await rig.run_until(lambda: any(e.source == victim for e in rig.cloud.evacuations))
    await SimFencer(rig.cloud).power_on(victim)  # someone powers it on while its VMs are still moving
    await rig.run_until(rig.recovery_over)
    assert all(not e.source_powered for e in rig.cloud.evacuations), "evacuated off a powered host"
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.FAILED
    errors = [s.detail.get("error", "") for s in rig.store.list_steps(note.id) if s.state is StepState.FAILED]
    assert any("not confirmed powered off" in e for e in errors)
    assert any(a.kind is AlertKind.RECOVERY_FAILED and a.host == victim for a in rig.store.list_alerts())


async def test_a_step_retried_forever_fails_with_an_alert(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from haven.domain.errors import TemporaryError

    rig_engine(rig, step_timeout_s=60.0)

    async def nova_503(*_: object) -> None:
        raise TemporaryError("nova-api answered 503", delay=5.0)

    monkeypatch.setattr(rig.cloud, "force_down", nova_503)
    victim = victim_of(rig)
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over, limit_s=300.0)
    (note,) = rig.store.list_notifications()
    assert note.status is NotificationStatus.FAILED
    (force,) = [s for s in rig.store.list_steps(note.id) if s.kind == "force_down"]
    assert (
        force.state is StepState.FAILED
        and "gave up after 60 s: nova-api answered 503" in force.detail["error"]
    )
    assert rig.cloud.evacuations == []
    assert any(a.kind is AlertKind.RECOVERY_FAILED for a in rig.store.list_alerts())


async def test_a_dead_agent_on_a_live_host_is_agent_down_not_dead(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.crash_agent(victim)
    await rig.run_for(60.0)  # several nova report intervals
    assert rig.engine.condition(victim) is HostCondition.AGENT_DOWN
    assert rig.store.list_notifications() == []
    assert rig.cloud.is_powered(victim) and rig.cloud.evacuations == []
    assert any(a.kind is AlertKind.AGENT_DOWN and a.host == victim for a in rig.store.list_alerts())
    rig.cloud.crash_agent(victim, crashed=False)
    await rig.run_for(5.0)
    assert rig.engine.condition(victim) is HostCondition.HEALTHY
    assert not any(a.kind is AlertKind.AGENT_DOWN for a in rig.store.list_alerts(active_only=True))


async def test_return_to_service_keeps_an_operators_disable(rig: Rig) -> None:
    victim = victim_of(rig)
    await rig.cloud.disable_service(victim, "operator: firmware upgrade pending")
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    await SimFencer(rig.cloud).power_on(victim)
    await rig.run_until(lambda: bool(rig.kinds(EventKind.HOST_RETURNED)), limit_s=300.0)
    host = await rig.host(victim)
    assert not host.forced_down  # haven's own action is undone...
    assert not host.service_enabled  # ...the operator's is not
    assert not rig.store.get_host(victim).disabled_by_haven


async def test_a_process_failure_on_an_operator_disabled_host_leaves_it_disabled(rig: Rig) -> None:
    victim = victim_of(rig)
    await rig.cloud.disable_service(victim, "operator: draining")
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(20.0)
    rig.cloud.crash_nova_compute(victim, crashed=False)
    await rig.run_for(60.0)
    host = await rig.host(victim)
    assert not host.service_enabled and host.disabled_reason == "operator: draining"
    assert not rig.store.get_host(victim).disabled_by_haven


async def test_a_host_that_comes_back_isolated_first_still_returns_to_service(rig: Rig) -> None:
    victim = victim_of(rig)
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    rig.cloud.partition_management(victim)  # it will boot without its management network
    await SimFencer(rig.cloud).power_on(victim)
    await rig.run_for(90.0)
    assert rig.engine.condition(victim) is HostCondition.ISOLATED
    rig.cloud.partition_management(victim, cut=False)
    await rig.run_until(lambda: bool(rig.kinds(EventKind.HOST_RETURNED)), limit_s=300.0)
    host = await rig.host(victim)
    assert host.service_enabled and not host.forced_down
