"""haven.controlplane.planner: a busy replica (late, its CPU time advancing) is not restarted like a hung
one (no answer, no CPU) before ``busy_grace_s``; without a CPU figure, today's rule (pure: no I/O).

The HA lab (bench/ha_lab.py --drill hang, 24 clients, load 14-21) saw haven drain and restart the
freshly restarted nova-api a second time, ~5 s after it was back, for probes that timed out under
load: the anchors' defect (liveness probes restarting overloaded brokers).
"""

from __future__ import annotations

import dataclasses

import pytest

from haven.controlplane.alerts import root_alerts
from haven.controlplane.config import ControlPlaneConfig, parse_controlplane
from haven.controlplane.planner import PROBE_BUSY, PROBE_HUNG, plan
from haven.controlplane.reconciler import killable
from haven.domain.controlplane import (
    ActionKind,
    Backend,
    ControlPlanePlan,
    ControlPlaneSettings,
    DomainName,
    MemberAdmin,
    MemberStatus,
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    ReplicaView,
    ServiceName,
    ServiceSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.errors import ConfigError
from haven.domain.ids import HostName

NOW = 10_000.0
# The HA lab's timing (haven.lab.ha_drills.PROBE_TIMING), the default busy_grace_s (30 s).
PROBE = ProbeSpec(ProbeKind.HTTP, 8774, "/", timeout_s=1.0, period_s=1.0, failure_threshold=2)
API = ServiceSpec(ServiceName("nova-api"), "nova-api.service", 2, probe=PROBE, backend=Backend("nova_api"))
DOMAINS = {HostName("ctl-1"): DomainName("a"), HostName("ctl-2"): DomainName("b")}
ACTIVE = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 3600)
READY = MemberStatus(MemberAdmin.READY, "up")
MAINT = MemberStatus(MemberAdmin.MAINT, "down")
LATE = "no answer within 1 s"


def probes(cpu: list[float | None], ok_before: bool = True, step: float = 1.0) -> tuple[ProbeResult, ...]:
    """A passing probe, then timed-out ones a ``step`` apart, the last at NOW, with these CPU times."""
    n = len(cpu)
    first = [ProbeResult(True, NOW - n * step, "200 OK", cpu[0])] if ok_before else []
    return (
        *first,
        *(ProbeResult(False, NOW - (n - 1 - i) * step, LATE, c) for i, c in enumerate(cpu)),
    )


def out(host: str, results: tuple[ProbeResult, ...]) -> ReplicaView:
    """A replica haven already took out of the load balancer (maintenance), so a restart is next."""
    return ReplicaView(
        ServiceName("nova-api"),
        HostName(host),
        DOMAINS[HostName(host)],
        ACTIVE,
        results,
        MAINT,
        held_out=True,
    )


def serving(host: str = "ctl-2") -> ReplicaView:
    ok = (ProbeResult(True, NOW - 0.5, "200 OK", 5.0),)
    return ReplicaView(ServiceName("nova-api"), HostName(host), DOMAINS[HostName(host)], ACTIVE, ok, READY)


def run(view: ReplicaView, now: float = NOW, spec: ServiceSpec = API) -> ControlPlanePlan:
    return plan([spec], [view, serving()], DOMAINS, now, ControlPlaneSettings())


def restarts(p: ControlPlanePlan) -> list[str]:
    return [a.reason for a in p.actions if a.kind is ActionKind.RESTART]


def test_a_hung_replica_no_cpu_spent_is_restarted_at_once_and_killed() -> None:
    p = run(out("ctl-1", probes([12.0, 12.0])))  # SIGSTOPped: its CPU time does not move
    (reason,) = restarts(p)
    assert reason.startswith(PROBE_HUNG) and killable(API, reason)
    assert not [h for h in p.holds if h.kind == "busy"]


def test_a_deadlocked_replica_ticking_a_little_is_still_hung() -> None:
    # A deadlocked worker whose master still wakes once a second: 5 ms of CPU in 1 s (0.5 %).
    assert restarts(run(out("ctl-1", probes([12.0, 12.005]))))[0].startswith(PROBE_HUNG)


def test_a_busy_replica_is_not_restarted_before_its_busy_grace() -> None:
    view = out("ctl-1", probes([12.0, 12.4]))  # 0.4 s of CPU in 1 s: working, answering late
    p = run(view)
    assert restarts(p) == []
    (hold,) = [h for h in p.holds if h.kind == "busy"]
    assert hold.host == "ctl-1" and "busy, not hung" in hold.reason
    assert p.recheck_at == NOW - 1 + PROBE.busy_grace_s  # 30 s after its first failed probe
    assert root_alerts(p, {API.name: API}) == []  # no alert: it is out, and back once it answers


def test_a_busy_replica_still_failing_after_its_grace_is_restarted_gracefully() -> None:
    # 35 timed-out probes a second apart, its CPU time advancing all along (a spinning loop).
    view = out("ctl-1", probes([10.0 + 0.5 * i for i in range(35)]))
    (reason,) = restarts(run(view))
    assert reason.startswith(PROBE_BUSY) and not killable(API, reason)  # systemd's graceful stop


def test_a_busy_replica_that_stops_spending_cpu_is_hung_at_once() -> None:
    # Busy for a while, then SIGSTOPped: the last failure_threshold probes decide, not the whole run.
    view = out("ctl-1", probes([10.0, 10.5, 11.0, 11.0]))
    assert restarts(run(view))[0].startswith(PROBE_HUNG)


def test_without_a_cpu_figure_a_timeout_is_hung_as_before() -> None:
    cases: list[list[float | None]] = [[None, None], [12.0, None], [None, 12.4]]
    for cpu in cases:
        assert restarts(run(out("ctl-1", probes(cpu))))[0].startswith(PROBE_HUNG), cpu


def test_busy_grace_zero_restarts_a_late_replica_as_before() -> None:
    spec = dataclasses.replace(API, probe=dataclasses.replace(PROBE, busy_grace_s=0.0))
    assert restarts(run(out("ctl-1", probes([12.0, 12.4])), spec=spec))[0].startswith(PROBE_HUNG)


def test_a_busy_replica_still_leaves_the_load_balancer_when_another_serves() -> None:
    view = dataclasses.replace(out("ctl-1", probes([12.0, 12.4])), member=READY, held_out=False)
    p = run(view)
    assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.DRAIN, "ctl-1")]


def test_with_one_failure_enough_the_probe_before_gives_the_cpu_start() -> None:
    spec = dataclasses.replace(API, probe=dataclasses.replace(PROBE, failure_threshold=1))
    alone = (ProbeResult(False, NOW, LATE, 12.4),)  # nothing to compare with: not known busy
    assert restarts(run(out("ctl-1", alone), spec=spec))[0].startswith(PROBE_HUNG)
    busy = probes([12.4])  # the passing probe before read 12.4 s; the failed one 12.4 too: flat
    assert restarts(run(out("ctl-1", busy), spec=spec))[0].startswith(PROBE_HUNG)
    working = (ProbeResult(True, NOW - 1, "200 OK", 12.0), ProbeResult(False, NOW, LATE, 12.5))
    assert restarts(run(out("ctl-1", working), spec=spec)) == []


def test_errors_not_timeouts_are_restarted_whatever_the_cpu() -> None:
    errors = (
        ProbeResult(True, NOW - 2, "200 OK", 12.0),
        ProbeResult(False, NOW - 1, "HTTP 500", 12.3),
        ProbeResult(False, NOW, "HTTP 500", 12.6),
    )
    assert restarts(run(out("ctl-1", errors)))  # answering with errors: not late, restarted


def test_busy_settings_are_read_and_checked_from_haven_toml() -> None:
    section = {
        "controllers": [{"host": "ctl-1", "domain": "a"}],
        "services": {"nova-api": {"probe": {"busy_grace_s": 45.0, "busy_cpu_share": 0.05}}},
    }
    config: ControlPlaneConfig = parse_controlplane(section, "controlplane")
    probe = next(s.probe for s in config.services if s.name == "nova-api")
    assert probe is not None and (probe.busy_grace_s, probe.busy_cpu_share) == (45.0, 0.05)
    for bad in ({"busy_grace_s": -1.0}, {"busy_cpu_share": 0.0}, {"busy_cpu_share": 2.0}):
        section["services"] = {"nova-api": {"probe": bad}}
        with pytest.raises(ConfigError, match="busy_"):
            parse_controlplane(section, "controlplane")


def alone(view: ReplicaView, now: float = NOW) -> ControlPlanePlan:
    """The only replica of a one-replica service (nothing else can take its traffic)."""
    return plan([dataclasses.replace(API, min_replicas=1)], [view], DOMAINS, now, ControlPlaneSettings())


def test_the_only_busy_replica_in_the_load_balancer_stays_in_during_its_grace() -> None:
    view = dataclasses.replace(out("ctl-1", probes([12.0, 12.4])), member=READY, held_out=False)
    p = alone(view)
    assert p.actions == ()  # not drained: late answers beat HAProxy's 503 to every client
    (hold,) = [h for h in p.holds if h.kind == "busy"]
    assert "kept in" in hold.reason and p.recheck_at == NOW - 1 + PROBE.busy_grace_s
    later = dataclasses.replace(view, probes=probes([10.0 + 0.5 * i for i in range(35)]))
    assert [a.kind for a in alone(later).actions] == [ActionKind.DRAIN]  # past its grace: out, then restarted


def test_the_only_hung_replica_still_leaves_the_load_balancer_at_once() -> None:
    view = dataclasses.replace(out("ctl-1", probes([12.0, 12.0])), member=READY, held_out=False)
    assert [a.kind for a in alone(view).actions] == [ActionKind.DRAIN]
