"""haven.controlplane.planner, rule by rule, then as properties over random worlds (pure: no I/O)."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from haven.controlplane.planner import backoff_due, health, plan
from haven.domain.controlplane import (
    ActionKind,
    Backend,
    ControlPlaneSettings,
    MemberAdmin,
    MemberStatus,
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    ReplicaHealth,
    ReplicaView,
    RestartPolicy,
    ServiceName,
    ServiceSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.ids import HostName
from haven.safety import replica_gate_reason

NOW = 10_000.0
SETTINGS = ControlPlaneSettings()
PROBE = ProbeSpec(ProbeKind.HTTP, 8774, "/", failure_threshold=3, startup_grace_s=60.0)
API = ServiceSpec(ServiceName("nova-api"), "nova-api.service", 2, probe=PROBE, backend=Backend("nova_api"))
HOSTS = [HostName(f"ctl-{i}") for i in range(1, 5)]
DOMAINS = {HostName("ctl-1"): "a", HostName("ctl-2"): "a", HostName("ctl-3"): "b", HostName("ctl-4"): "c"}

ACTIVE = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 3600)
FAILED = UnitStatus(UnitActive.FAILED, "failed")
STOPPED = UnitStatus(UnitActive.INACTIVE, "dead")
READY = MemberStatus(MemberAdmin.READY, "up")
MAINT = MemberStatus(MemberAdmin.MAINT, "down")
PASSING = (ProbeResult(True, NOW - 1),)
FAILING = tuple(ProbeResult(False, NOW - i) for i in (3, 2, 1))


def replica(host: str = "ctl-1", unit: UnitStatus | None = ACTIVE, **kw: object) -> ReplicaView:
    base = ReplicaView(ServiceName("nova-api"), HostName(host), DOMAINS[HostName(host)], unit)
    defaults: dict[str, object] = {"probes": PASSING, "member": READY}
    defaults.update(kw)
    return dataclasses.replace(base, **defaults)  # type: ignore[arg-type]


def kinds(views: list[ReplicaView], spec: ServiceSpec = API, now: float = NOW) -> list[tuple[str, str]]:
    p = plan([spec], views, DOMAINS, now, SETTINGS)
    return [(a.kind.value, a.host) for a in p.actions]


# ---- rule 1: health ------------------------------------------------------------------------------


def test_a_slow_start_is_starting_not_unhealthy_within_its_grace() -> None:
    fresh = dataclasses.replace(ACTIVE, active_since=NOW - 30)
    view = replica(unit=fresh, probes=tuple(ProbeResult(False, NOW - i) for i in range(20, 0, -1)))
    assert health(view, PROBE, NOW).health is ReplicaHealth.STARTING
    assert kinds([view, replica("ctl-3")]) == [("drain", "ctl-1")]  # out of the LB, never restarted


def test_after_the_grace_without_a_pass_the_failures_count() -> None:
    late = dataclasses.replace(ACTIVE, active_since=NOW - 61)
    assert health(replica(unit=late, probes=FAILING), PROBE, NOW).health is ReplicaHealth.UNHEALTHY


def test_after_a_first_pass_failures_count_at_once() -> None:
    fresh = dataclasses.replace(ACTIVE, active_since=NOW - 10)
    probes = (ProbeResult(True, NOW - 8), *FAILING)
    assert health(replica(unit=fresh, probes=probes), PROBE, NOW).health is ReplicaHealth.UNHEALTHY


def test_probes_from_before_the_unit_started_do_not_count() -> None:
    fresh = dataclasses.replace(ACTIVE, active_since=NOW - 0.5)
    assert health(replica(unit=fresh, probes=FAILING), PROBE, NOW).health is ReplicaHealth.STARTING


def test_fewer_failures_than_the_threshold_stay_healthy_but_not_ready_evidence() -> None:
    judged = health(replica(probes=(ProbeResult(True, NOW - 3), ProbeResult(False, NOW - 1))), PROBE, NOW)
    assert judged.health is ReplicaHealth.HEALTHY and not judged.probe_ok


# ---- rule 2: the load balancer first -------------------------------------------------------------


def test_a_failed_unit_is_drained_then_put_in_maintenance_then_restarted() -> None:
    others = [replica("ctl-3")]
    assert kinds([replica(unit=FAILED), *others]) == [("drain", "ctl-1")]
    drained = replica(unit=FAILED, member=MemberStatus(MemberAdmin.DRAIN, "down"), drained_at=NOW)
    assert kinds([drained, *others]) == [("maint", "ctl-1")]  # process gone: no wait for drain_s
    assert kinds([replica(unit=FAILED, member=MAINT, held_out=True), *others]) == [("restart", "ctl-1")]


def test_a_hung_replica_keeps_its_connections_for_drain_s() -> None:
    draining = MemberStatus(MemberAdmin.DRAIN, "up", sessions=4)
    hung = replica(probes=FAILING, member=draining, drained_at=NOW - 1, held_out=True)
    p = plan([API], [hung, replica("ctl-3")], DOMAINS, NOW, SETTINGS)
    assert p.actions == () and p.recheck_at == NOW - 1 + API.drain_s
    later = plan([API], [hung, replica("ctl-3")], DOMAINS, NOW + 1.5, SETTINGS)
    assert [a.kind for a in later.actions] == [ActionKind.MAINT]


def test_returned_only_when_haven_took_it_out_and_its_probe_passed() -> None:
    assert kinds([replica(member=MAINT, held_out=True), replica("ctl-3")]) == [("ready", "ctl-1")]
    # One left in maintenance by someone else stays out while its process runs (rule 7: an operator's
    # maintenance); once its unit was restarted (stale), it is put back.
    assert kinds([replica(member=MAINT, held_out=False), replica("ctl-3")]) == []
    started = dataclasses.replace(ACTIVE, active_since=NOW - 5)
    not_yet = replica(unit=started, member=MAINT, held_out=True, probes=(ProbeResult(False, NOW - 1),))
    assert kinds([not_yet, replica("ctl-3")]) == []


def test_a_restart_haven_saw_is_held_out_until_its_probe_passes_even_once_haproxy_has_it_up() -> None:
    # kill -9, systemd's Restart=: a new process, in the grace, no probe passed yet (nova-api's deep
    # probe: the first real requests are cold), HAProxy's shallow check already passes (ready, up).
    restarted = dataclasses.replace(ACTIVE, active_since=NOW - 5)
    cold = replica(unit=restarted, probes=(ProbeResult(False, NOW - 1, "no answer within 2 s"),))
    assert kinds([cold, replica("ctl-3")]) == [("drain", "ctl-1")]
    held = dataclasses.replace(cold, member=MAINT, held_out=True)
    assert kinds([held, replica("ctl-3")]) == []  # still cold: stays out
    warm = dataclasses.replace(held, probes=(*cold.probes, ProbeResult(True, NOW)))
    assert kinds([warm, replica("ctl-3")]) == [("ready", "ctl-1")]


def test_a_replica_found_serving_at_havens_start_is_not_taken_out_before_its_first_probe() -> None:
    # haven starts (or a new leader) while a replica restarted 20 s ago serves: its first (deep) probe
    # has not passed yet. Taking it out would empty the backend if the other one fails meanwhile.
    young = replica(unit=dataclasses.replace(ACTIVE, active_since=NOW - 20), probes=())
    found = frozenset({(API.name, HostName("ctl-1"))})
    p = plan([API], [young, replica("ctl-3", unit=FAILED)], DOMAINS, NOW, SETTINGS, found=found)
    assert [(a.kind.value, a.host) for a in p.actions] == [("drain", "ctl-3")]
    assert health(young, PROBE, NOW).health is ReplicaHealth.STARTING  # never restarted in its grace
    # Killed: while systemd's RestartSec runs (activating, maybe still the old InvocationID) it goes out
    restarting = dataclasses.replace(young, unit=UnitStatus(UnitActive.ACTIVATING, "auto-restart"))
    p = plan([API], [restarting, replica("ctl-3")], DOMAINS, NOW, SETTINGS, found=found)
    assert [(a.kind.value, a.host) for a in p.actions] == [("drain", "ctl-1")]
    # ... and its failing probes, past the grace, take it out as any replica's
    late = dataclasses.replace(young, unit=dataclasses.replace(ACTIVE, active_since=NOW - 61), probes=FAILING)
    p = plan([API], [late, replica("ctl-3")], DOMAINS, NOW, SETTINGS, found=found)
    assert [(a.kind.value, a.host) for a in p.actions] == [("drain", "ctl-1")]


def test_a_found_replica_reloading_before_its_first_probe_is_neither_drained_nor_restarted() -> None:
    # F11: `systemctl reload` in progress (ActiveState "reloading": the process runs and serves; systemd
    # keeps ActiveEnterTimestamp from when it became active) when haven first reads it, in rotation,
    # within its grace and not yet probed. Running, as an active one: the found exemption holds.
    found = frozenset({(API.name, HostName("ctl-1"))})
    reloading = UnitStatus(UnitActive.RELOADING, "reload", active_since=NOW - 20)
    young = replica(unit=reloading, probes=())
    assert health(young, PROBE, NOW).health is ReplicaHealth.STARTING
    p = plan([API], [young, replica("ctl-3", unit=FAILED)], DOMAINS, NOW, SETTINGS, found=found)
    assert [(a.kind.value, a.host) for a in p.actions] == [("drain", "ctl-3")]
    assert p.recheck_at == NOW - 20 + PROBE.startup_grace_s  # judged again when its grace ends
    # Its probes failing past the grace take it out as any replica's (then restarted once out)
    late = replica(unit=dataclasses.replace(reloading, active_since=NOW - 61), probes=FAILING)
    p = plan([API], [late, replica("ctl-3")], DOMAINS, NOW, SETTINGS, found=found)
    assert [(a.kind.value, a.host) for a in p.actions] == [("drain", "ctl-1")]
    # One haven saw start (not found) is held out until its first probe passes, reloading or not
    p = plan([API], [young, replica("ctl-3")], DOMAINS, NOW, SETTINGS)
    assert [(a.kind.value, a.host) for a in p.actions] == [("drain", "ctl-1")]


def test_no_backend_means_restart_at_once() -> None:
    bare = dataclasses.replace(API, backend=None)
    assert kinds([replica(unit=FAILED, member=None), replica("ctl-3")], bare) == [("restart", "ctl-1")]


# ---- rule 3: back-off and crash loops -----------------------------------------------------------


def test_exponential_backoff() -> None:
    policy = RestartPolicy(backoff_initial_s=1, backoff_factor=2, backoff_max_s=10)
    assert backoff_due([], policy) is None
    assert [backoff_due([0.0] * n, policy) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 8, 10, 10]


def test_a_restart_waits_for_its_backoff() -> None:
    # Two restarts in the window: the third waits 1 s * 2**1 after the last one.
    out = replica(unit=FAILED, member=MAINT, held_out=True, restarts=(NOW - 10, NOW - 1))
    p = plan([API], [out, replica("ctl-3")], DOMAINS, NOW, SETTINGS)
    assert p.actions == () and p.recheck_at == NOW + 1
    later = plan([API], [out, replica("ctl-3")], DOMAINS, NOW + 1, SETTINGS)
    assert [a.kind for a in later.actions] == [ActionKind.RESTART]


def test_a_crash_loop_stops_restarts_and_holds_with_a_reason() -> None:
    restarts = tuple(NOW - 100 + 10 * i for i in range(5))
    looping = replica(unit=FAILED, member=MAINT, held_out=True, restarts=restarts)
    p = plan(
        [API],
        [looping, replica("ctl-3"), replica("ctl-4", unit=STOPPED, member=MAINT)],
        DOMAINS,
        NOW,
        SETTINGS,
    )
    assert [(h.kind, h.host) for h in p.holds] == [("crash_loop", "ctl-1")]
    assert "5 times" in p.holds[0].reason
    # It no longer counts towards min_replicas: a stopped replica elsewhere is started instead.
    assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.START, "ctl-4")]
    # Once the window has passed, haven tries again.
    later = plan([API], [looping], DOMAINS, NOW + 600, SETTINGS)
    assert ActionKind.RESTART in [a.kind for a in later.actions]


def test_systemds_own_restart_loop_is_a_crash_loop_too() -> None:
    # Restart=always: systemd restarts it by itself (seen in NRestarts); it never stays up.
    auto_restart = UnitStatus(UnitActive.ACTIVATING, "auto-restart", n_restarts=9)
    restarts = tuple(NOW - 10 * i for i in range(1, 6))
    looping = replica(unit=auto_restart, member=MAINT, held_out=True, restarts=restarts)
    stopped = replica("ctl-4", unit=STOPPED, member=MAINT)
    p = plan([API], [looping, replica("ctl-3"), stopped], DOMAINS, NOW, SETTINGS)
    assert [(h.kind, h.host) for h in p.holds] == [("crash_loop", "ctl-1")]
    # It never serves, so it does not count towards min_replicas: another replica is started.
    assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.START, "ctl-4")]


def test_a_crash_loop_is_held_even_while_another_replica_restarts() -> None:
    restarts = tuple(NOW - 100 + 10 * i for i in range(5))
    looping = replica(unit=FAILED, member=MAINT, held_out=True, restarts=restarts)
    restarting = replica("ctl-3", unit=FAILED, member=MAINT, held_out=True, busy=True)
    p = plan([API], [looping, restarting], DOMAINS, NOW, SETTINGS)
    assert ("crash_loop", "ctl-1") in [(h.kind, h.host) for h in p.holds]


# ---- rule 4: never everything at once ------------------------------------------------------------


def test_many_probe_failures_at_once_hold_the_service_and_keep_it_in_the_lb() -> None:
    views = [replica(h, probes=FAILING) for h in ("ctl-1", "ctl-3", "ctl-4")]
    p = plan([API], views, DOMAINS, NOW, SETTINGS)
    assert p.actions == ()
    assert [h.kind for h in p.holds] == ["mass_failure"] and "3 of the 3 replicas" in p.holds[0].reason


def test_failed_units_restart_one_at_a_time() -> None:
    views = [replica(h, unit=FAILED, member=MAINT, held_out=True) for h in ("ctl-1", "ctl-3", "ctl-4")]
    assert kinds(views) == [("restart", "ctl-1")]
    restarting = dataclasses.replace(views[0], busy=True)
    assert kinds([restarting, *views[1:]]) == []


def test_a_dependency_without_a_healthy_replica_holds_probe_failure_restarts() -> None:
    db = ServiceSpec(ServiceName("mariadb"), "mariadb.service", 1, stateful=True)
    api = dataclasses.replace(API, depends_on=(ServiceName("mariadb"),))
    db_view = ReplicaView(ServiceName("mariadb"), HostName("ctl-1"), "a", FAILED)
    hung = replica(probes=FAILING, member=MAINT, held_out=True)
    p = plan([db, api], [db_view, hung, replica("ctl-3")], DOMAINS, NOW, SETTINGS)
    assert [(a.kind, a.service) for a in p.actions] == [(ActionKind.RESTART, "mariadb")]
    assert any(h.kind == "dependency" and "mariadb" in h.reason for h in p.holds)


# ---- rule 5: missing replicas and spread --------------------------------------------------------


def test_missing_replicas_start_in_the_emptiest_domain() -> None:
    views = [replica("ctl-1"), replica("ctl-2", unit=STOPPED, member=MAINT), replica("ctl-3", unit=STOPPED)]
    three = dataclasses.replace(API, min_replicas=3)
    # ctl-3 (domain b, empty) is chosen over ctl-2 (domain a, beside ctl-1); its stale member leaves the
    # load balancer first, and it is started on the next pass.
    assert kinds(views) == [("drain", "ctl-3")]
    views[2] = replica("ctl-3", unit=STOPPED, member=MAINT)
    assert kinds(views) == [("start", "ctl-3")]
    assert kinds(views, three) == [("start", "ctl-3"), ("start", "ctl-2")]


def test_a_stateful_service_is_never_started_elsewhere() -> None:
    db = dataclasses.replace(API, stateful=True, min_replicas=3)
    assert kinds([replica("ctl-1"), replica("ctl-3", unit=STOPPED, member=MAINT)], db) == []


def test_an_unreachable_host_does_not_count() -> None:
    views = [
        replica("ctl-1"),
        replica("ctl-2", unit=None, member=MAINT),
        replica("ctl-3", unit=STOPPED, member=MAINT),
    ]
    assert kinds(views) == [("start", "ctl-3")]


def test_no_host_left_is_a_hold() -> None:
    p = plan([dataclasses.replace(API, min_replicas=3)], [replica("ctl-1")], DOMAINS, NOW, SETTINGS)
    assert [h.kind for h in p.holds] == ["no_host"]


# ---- properties --------------------------------------------------------------------------------

units = st.sampled_from([ACTIVE, FAILED, STOPPED, None, dataclasses.replace(ACTIVE, active_since=NOW - 5)])
members = st.sampled_from(
    [READY, MAINT, MemberStatus(MemberAdmin.DRAIN, "up", 2), MemberStatus(MemberAdmin.DRAIN, "down"), None]
)
probe_sets = st.sampled_from(
    [(), PASSING, FAILING, (ProbeResult(True, NOW - 4), ProbeResult(False, NOW - 1))]
)
restart_sets = st.lists(st.floats(NOW - 900, NOW), max_size=7).map(tuple)


@st.composite
def worlds(draw: st.DrawFn) -> list[ReplicaView]:
    views = []
    for host in HOSTS:
        views.append(
            replica(
                host,
                unit=draw(units),
                member=draw(members),
                probes=draw(probe_sets),
                restarts=draw(restart_sets),
                held_out=draw(st.booleans()),
                busy=draw(st.booleans()),
                drained_at=NOW - draw(st.floats(0, 5)),
            )
        )
    return views


@settings(max_examples=400, deadline=None)
@given(worlds(), st.integers(1, 4))
def test_properties_of_every_plan(views: list[ReplicaView], min_replicas: int) -> None:
    spec = dataclasses.replace(API, min_replicas=min_replicas)
    p = plan([spec], views, DOMAINS, NOW, SETTINGS)
    by_host = {v.host: v for v in views}
    restarts = [a for a in p.actions if a.kind is ActionKind.RESTART]
    assert len(restarts) <= SETTINGS.max_restarts_at_once
    assert len({a.host for a in p.actions}) == len(p.actions)  # one action per replica per pass
    for action in p.actions:
        view = by_host[action.host]
        judged = health(view, PROBE, NOW)
        assert not view.busy  # an unfinished action is finished before anything else
        if action.kind is ActionKind.RESTART:
            # never restarted while in the load balancer, never while starting, never in a crash loop
            assert view.member is None or view.member.admin is MemberAdmin.MAINT
            assert judged.health in (ReplicaHealth.FAILED, ReplicaHealth.UNHEALTHY)
            recent = [t for t in view.restarts if NOW - t < spec.restart.crash_loop_window_s]
            assert len(recent) < spec.restart.crash_loop_max_restarts
            due = backoff_due(recent, spec.restart)
            assert due is None or due <= NOW
        if action.kind is ActionKind.READY:
            assert judged.health is ReplicaHealth.HEALTHY and judged.probe_ok
        if action.kind is ActionKind.START:
            assert judged.health is ReplicaHealth.STOPPED
    if p.recheck_at is not None:
        assert p.recheck_at > NOW


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["fail", "hang", "ok"]), min_size=2, max_size=4))
def test_never_every_replica_restarted_or_taken_out_at_once(states: list[str]) -> None:
    views = []
    for host, s in zip(HOSTS, states, strict=False):
        unit = FAILED if s == "fail" else ACTIVE
        views.append(
            replica(host, unit=unit, probes=FAILING if s == "hang" else PASSING, member=MAINT, held_out=True)
        )
    p = plan([API], views, DOMAINS, NOW, SETTINGS)
    assert sum(1 for a in p.actions if a.kind is ActionKind.RESTART) <= 1


def test_the_replica_gate_in_haven_safety() -> None:
    assert replica_gate_reason("nova-api", 1, 1, SETTINGS) == ""  # one replica's failure is its own
    assert replica_gate_reason("nova-api", 1, 3, SETTINGS) == ""
    assert replica_gate_reason("nova-api", 2, 4, SETTINGS) == ""  # not more than half
    reason = replica_gate_reason("nova-api", 2, 3, SETTINGS)
    assert "2 of the 3 replicas of nova-api" in reason and "none is restarted" in reason
    strict = ControlPlaneSettings(gate_share=0.25)
    assert replica_gate_reason("nova-api", 2, 4, strict) != ""


# ---- rule 4: the last replica in the load balancer -------------------------------------------------

RESTARTED = dataclasses.replace(ACTIVE, active_since=NOW - 5)  # within its start-up grace, no pass yet


def test_the_last_replica_in_the_lb_stays_in_while_another_is_restarted() -> None:
    # bench/ha_lab.py --compare (24 clients): ctl-1's hung nova-api was out and restarting when the
    # survivor's 1 s probe timed out under the load it had taken over; draining it answered 503 to all.
    coming_back = replica(unit=RESTARTED, member=MAINT, held_out=True, probes=())
    survivor = replica("ctl-3", probes=FAILING)
    p = plan([API], [coming_back, survivor], DOMAINS, NOW, SETTINGS)
    assert p.actions == ()
    assert [(h.kind, h.host) for h in p.holds] == [("last_serving", "ctl-3")]
    assert "last replica in backend nova_api" in p.holds[0].reason
    # the same while its restart is still in flight, or while it waits out its back-off
    assert kinds([dataclasses.replace(coming_back, busy=True), survivor]) == []
    waiting = replica(probes=FAILING, member=MAINT, held_out=True, restarts=(NOW - 1,))
    assert kinds([waiting, survivor]) == []


def test_once_the_other_serves_the_unhealthy_last_one_is_handled_as_any() -> None:
    assert kinds([replica(), replica("ctl-3", probes=FAILING)]) == [("drain", "ctl-3")]


def test_with_no_other_coming_back_a_hung_replica_still_leaves() -> None:
    # one replica in all (nothing else will serve: a hang is healed by its restart), or the other in a
    # crash loop (it will not come back), or its process gone (it serves nothing anyway)
    assert kinds([replica("ctl-3", probes=FAILING)]) == [("drain", "ctl-3")]
    looping = replica(
        unit=FAILED, member=MAINT, held_out=True, restarts=tuple(NOW - 10 * i for i in range(1, 9))
    )
    assert ("drain", "ctl-3") in kinds([looping, replica("ctl-3", probes=FAILING)])
    coming_back = replica(unit=RESTARTED, member=MAINT, held_out=True, probes=())
    assert kinds([coming_back, replica("ctl-3", unit=FAILED)]) == [("drain", "ctl-3")]


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_never_the_last_replica_in_the_lb_drained_while_another_comes_back(views: list[ReplicaView]) -> None:
    p = plan([API], views, DOMAINS, NOW, SETTINGS)
    in_lb = [
        v
        for v in views
        if v.member is not None and (v.member.admin, v.member.operational) == (MemberAdmin.READY, "up")
    ]
    for action in p.actions:
        if action.kind is not ActionKind.DRAIN or len(in_lb) != 1 or in_lb[0].host != action.host:
            continue
        view = in_lb[0]
        if health(view, PROBE, NOW).health is not ReplicaHealth.UNHEALTHY:
            continue
        others = [v for v in views if v is not view]
        assert not any(v.busy or health(v, PROBE, NOW).health is ReplicaHealth.STARTING for v in others)
