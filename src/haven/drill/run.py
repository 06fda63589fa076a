"""Runs one drill: build a simulated cloud, start the engine on it, inject a failure, judge the outcome.

Called by `haven drill`, `haven demo`, the tests and the benchmark. With the
default VirtualClock a drill of several simulated minutes takes milliseconds;
the demo passes a paced clock so a person can watch it happen.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.domain.clock import Clock, VirtualClock
from haven.domain.cloud import TaskState, VmState
from haven.domain.events import EngineEvent, EventKind, EventSink, discard_events
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Notification, NotificationType
from haven.domain.liveness import HostCondition
from haven.domain.settings import EngineSettings
from haven.drill.report import DrillReport, EventRecorder, fence_time, phases_of, recover_time, worst_time
from haven.drill.scenarios import Expect, Injection, Scenario, scenario_named
from haven.drill.vm_judge import (
    agent_alert_verdict,
    crash_loop_verdict,
    double_actions,
    left_stopped,
    vm_restart_verdict,
    vm_times,
)
from haven.recovery.workflows import EVACUATE
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.service.sim_agents import deliver_reports
from haven.store import Store

WARM_UP_S = 5.0
GIVE_UP_AFTER_S = 1800.0


@dataclass(frozen=True, slots=True)
class DrillOptions:
    scenario: str
    hosts: int = 30
    vms: int = 300
    seed: int = 1
    ha_fraction: float = 1 / 3
    store_url: str = "sqlite://"
    settings: EngineSettings | None = None


async def run_drill(
    options: DrillOptions, on_event: EventSink = discard_events, clock: Clock | None = None
) -> DrillReport:
    scenario = scenario_named(options.scenario)
    spec = scenario.shape(
        CloudSpec(hosts=options.hosts, vms=options.vms, seed=options.seed, ha_fraction=options.ha_fraction)
    )
    clock = clock or VirtualClock()
    wall_start = time.perf_counter()
    cloud, topology = build_cloud(spec, clock)
    with Store.open(options.store_url) as store:
        segments_per_zone(store, await cloud.list_hosts(), scenario.recovery_method, topology.reserved)
        recorder = EventRecorder(on_event)
        engine = Engine(cloud, cloud, SimFencer(cloud), store, clock, options.settings, on_event=recorder)
        engine.start()
        wake = [cloud.next_event_time]
        agents = SimAgents(cloud, engine)
        await run_until(engine, clock, clock.now() + WARM_UP_S, wake_sources=wake, before_tick=agents)

        # The simulated world (up to 200,000 VMs) lives in this process: left to the cyclic garbage
        # collector, each full collection walks all of it, and that CPU would be counted as haven's.
        # Objects made from here on are collected as usual.
        gc.freeze()
        try:
            fault_at, cpu_at_fault = clock.now(), time.process_time()
            injection = scenario.inject(cloud, topology, random.Random(options.seed))
            recorder(
                EngineEvent(EventKind.FAULT_INJECTED, fault_at, detail={"description": injection.description})
            )
            agents()  # an agent reports what it saw at once (a guest fault), not at the engine's next tick
            affected = list(injection.vms) or [
                s.id for h in injection.failed_hosts for s in await cloud.list_servers(h) if s.ha_enabled
            ]
            for after_s, action in _timed_actions(injection, engine):
                await run_until(engine, clock, fault_at + after_s, wake_sources=wake, before_tick=agents)
                action()
            settle_s = max(scenario.observe_for_s, engine.settings.detection.grace_s * 3)

            def quiet() -> bool:
                return (
                    clock.now() >= fault_at + settle_s
                    and not engine.open_notifications()
                    and all(engine.condition(h) is not HostCondition.SUSPECT for h in injection.touched_hosts)
                )

            await run_until(
                engine, clock, fault_at + GIVE_UP_AFTER_S, done=quiet, wake_sources=wake, before_tick=agents
            )
            report = _judge(scenario, options, spec, cloud, store, injection, affected, recorder, fault_at)
            report.simulated_s = round(clock.now() - fault_at, 3)
            report.wall_s = round(time.perf_counter() - wall_start, 3)
            issued = [
                cpu
                for e, cpu in recorder.events
                if e.kind is EventKind.STEP_STARTED and e.detail.get("kind") == EVACUATE
            ]
            report.cpu_s_to_all_issued = round(max(issued) - cpu_at_fault, 4) if issued else None
            return report
        finally:
            gc.unfreeze()


def _timed_actions(injection: Injection, engine: Engine) -> list[tuple[float, Callable[[], None]]]:
    """What the scenario does after its fault, in time order: its follow-up, external reports."""
    actions: list[tuple[float, Callable[[], None]]] = []
    if injection.follow_up is not None and injection.follow_up_after_s is not None:
        actions.append((injection.follow_up_after_s, injection.follow_up))
    if injection.reports:

        def report() -> None:
            for host, payload in injection.reports:
                engine.submit(NotificationType.COMPUTE_HOST, host, payload)

        actions.append((injection.reports_after_s, report))
    return sorted(actions, key=lambda a: a[0])


class SimAgents:
    """Every simulated host's haven agent: what it saw of its guests, submitted as VM notifications."""

    def __init__(self, cloud: SimCloud, engine: Engine) -> None:
        self._cloud, self._engine = cloud, engine

    def __call__(self) -> None:
        deliver_reports(self._cloud, self._engine)


def _judge(
    scenario: Scenario,
    options: DrillOptions,
    spec: CloudSpec,
    cloud: SimCloud,
    store: Store,
    injection: Injection,
    affected: list[ServerId],
    recorder: EventRecorder,
    fault_at: float,
) -> DrillReport:
    events = [e for e, _ in recorder.events]
    if injection.vms:  # guest faults: the VM must run again where it is, not hung
        recovered = [s for s in affected if cloud.guest_healthy(s)]
    else:
        recovered = [s for s in affected if _recovered(cloud, s, set(injection.failed_hosts))]
    evacuations = [e for e in cloud.evacuations if e.at >= fault_at]
    notifications = store.list_notifications()
    unplaced = [u for n in notifications for u in n.payload.get("recovery", {}).get("unplaced", [])]
    held = any(e.kind is EventKind.SEGMENT_HELD for e in events)
    report = DrillReport(
        scenario=scenario.name,
        seed=options.seed,
        hosts=spec.hosts,
        vms=spec.vms,
        injected=injection.description,
        ha_vms_affected=len(affected),
        ha_vms_recovered=len(recovered),
        vms_lost=len(affected) - len(recovered),
        vms_running_twice=len(cloud.servers_running_twice()),
        evacuated_unfenced=sum(1 for e in evacuations if e.source_powered),
        false_evacuations=sum(1 for e in evacuations if not e.source_failed_by_fault),
        live_hosts_fenced=len(cloud.live_hosts_fenced),
        # Ground truth: asked while an earlier evacuation of the VM was in flight or had succeeded.
        double_evacuations=sum(1 for e in cloud.unsafe_double_evacuations() if e.at >= fault_at),
        unplaced=unplaced,
        phases=phases_of(events, fault_at),
        detect_s=worst_time(events, EventKind.HOST_CONFIRMED_DEAD, injection.failed_hosts, fault_at),
        fence_s=fence_time(events, injection.failed_hosts),
        recover_s=recover_time(events, set(affected), fault_at) if affected and not unplaced else None,
        held_by_gate=held,
        verdict="",
        alerts=[
            {"kind": a.kind.value, "host": a.host, "message": a.message}
            for a in store.list_alerts(active_only=False)
        ],
        notifications=[
            {
                "id": n.id,
                "type": n.type.value,
                "host": n.hostname,
                "status": n.status.value,
                "event": n.payload.get("event"),
            }
            for n in notifications
        ],
    )
    if injection.vms:
        report.detect_s, report.recover_s = vm_times(events, fault_at)
    report.double_actions = double_actions(cloud, notifications, cloud.clock.now())
    report.services_disabled = sum(
        1
        for c in cloud.nova_calls
        if c.at >= fault_at and (c.kind == "disable_service" or c.subject.endswith("down=True"))
    )
    report.vms_left_stopped = len(left_stopped(notifications, affected))
    report.vms_lost -= report.vms_left_stopped  # left stopped on purpose, and said so: not lost
    settings = options.settings or EngineSettings()
    limit = settings.recovery.crash_loop_max_restarts
    report.verdict, report.checks = _verdict(
        scenario, report, evacuations, notifications, cloud, injection, limit
    )
    return report


def _recovered(cloud: SimCloud, server_id: ServerId, failed: set[HostName]) -> bool:
    """Running on a host that did not fail; or, for a VM that was stopped, stopped and settled elsewhere."""
    if cloud.hosts_running(server_id) - failed:
        return True
    server = cloud.sim_server(server_id)
    return (
        server.vm_state is VmState.STOPPED
        and server.host not in failed
        and server.task_state is TaskState.NONE
    )


def _verdict(
    scenario: Scenario,
    r: DrillReport,
    evacuations: Sequence[object],
    notifications: Sequence[Notification],
    cloud: SimCloud,
    injection: Injection,
    crash_loop_limit: int,
) -> tuple[str, list[str]]:
    checks: list[str] = []
    if (
        r.vms_running_twice
        or r.evacuated_unfenced
        or r.false_evacuations
        or r.double_evacuations
        or r.live_hosts_fenced
        or r.double_actions
    ):
        checks.append(
            "SAFETY VIOLATED: a VM ran twice, was evacuated unfenced, off a live host, or twice, "
            "a live host was powered off, or an action was asked twice"
        )
        return "failed", checks
    if scenario.expect is Expect.VM_RESTART:
        return vm_restart_verdict(r, cloud, injection.vms)
    if scenario.expect is Expect.CRASH_LOOP:
        return crash_loop_verdict(r, cloud, notifications, injection.vms, crash_loop_limit)
    if scenario.expect is Expect.AGENT_ALERT:
        return agent_alert_verdict(r, cloud)
    alerted = _needed_alert(scenario, r, checks)
    if scenario.expect is Expect.HOLD:
        isolated = any(a["kind"] == "isolated" for a in r.alerts)
        checks.append(f"evacuations: {len(evacuations)} (expected none)")
        checks.append(f"held by the observer gate: {r.held_by_gate}; isolation alert: {isolated}")
        said = alerted if scenario.needs_alert is not None else (r.held_by_gate or isolated)
        return ("held" if not evacuations and said else "failed"), checks
    if scenario.expect is Expect.CONTROL_PLANE:
        checks.append(f"evacuations: {len(evacuations)} (expected none)")
        checks.append(f"compute services disabled or forced down: {r.services_disabled} (expected none)")
        left = [h for h in cloud.host_names() if cloud.sim_host(h).forced_down]
        checks.append(f"hosts left forced down: {len(left)} (expected none)")
        calm = not evacuations and not r.services_disabled and not left
        return ("held" if calm and alerted else "failed"), checks
    if scenario.expect is Expect.SERVICE_CYCLE:
        return _service_cycle_verdict(r, evacuations, cloud, injection, checks)
    if not r.ha_vms_affected:
        checks.append("no HA VM was on the failed hosts: nothing was at stake, nothing to recover")
        return ("nothing_at_stake" if alerted else "failed"), checks
    checks.append(f"{r.ha_vms_recovered} of {r.ha_vms_affected} HA VMs running again on healthy hosts")
    if not alerted:
        return "failed", checks
    if r.vms_lost == 0:
        return "recovered", checks
    return ("partial" if r.ha_vms_recovered else "failed"), checks


def _needed_alert(scenario: Scenario, r: DrillReport, checks: list[str]) -> bool:
    """Whether the alert the scenario needs (if any) was raised; says so in the checks."""
    if scenario.needs_alert is None:
        return True
    raised = any(a["kind"] == scenario.needs_alert.value for a in r.alerts)
    checks.append(f"{scenario.needs_alert.value} alert raised: {raised}")
    return raised


def _service_cycle_verdict(
    r: DrillReport, evacuations: Sequence[object], cloud: SimCloud, injection: Injection, checks: list[str]
) -> tuple[str, list[str]]:
    host = injection.touched_hosts[0]
    process = [
        n for n in r.notifications if n["type"] == NotificationType.PROCESS.value and n["host"] == host
    ]
    stopped = any(n["event"] == "STOPPED" and n["status"] == "finished" for n in process)
    started = any(n["event"] == "STARTED" and n["status"] == "finished" for n in process)
    enabled = cloud.sim_host(host).service_enabled
    checks += [
        f"compute service disabled while nova-compute was down: {stopped}",
        f"re-enabled after it came back: {started and enabled}",
        f"evacuations: {len(evacuations)} (expected none)",
    ]
    return ("recovered" if stopped and started and enabled and not evacuations else "failed"), checks
