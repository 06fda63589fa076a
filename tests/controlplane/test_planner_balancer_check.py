"""haven.controlplane.planner under overload: a replica whose probes time out while HAProxy's own check
of it passes is late, not hung; the last enabled member is not taken out when HAProxy counts it down
under load (pure: no I/O).

The HA lab (bench/ha_lab.py --drill kill --heal --clients 24, 2026-12-07 00:14 UTC) saw haven act on
replicas other than the killed one in every run: probes that timed out under the load (the prober's
as much as the replicas'), on replicas that HAProxy, checking them at the same time, still counted up.
"""

from __future__ import annotations

import dataclasses

from haven.controlplane.planner import PROBE_BUSY, PROBE_HUNG, RISE_WAIT_S, plan
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
from haven.domain.ids import HostName

NOW = 10_000.0
PROBE = ProbeSpec(ProbeKind.HTTP, 5000, "/v3", timeout_s=1.0, period_s=1.0, failure_threshold=2)
KEYSTONE = ServiceSpec(
    ServiceName("keystone"), "keystone.service", 2, probe=PROBE, backend=Backend("keystone")
)
DOMAINS = {HostName("ctl-1"): DomainName("a"), HostName("ctl-2"): DomainName("b")}
ACTIVE = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 3600)
CHECK_PASSES = MemberStatus(MemberAdmin.READY, "up", check_passed=True)
CHECK_FAILS = MemberStatus(MemberAdmin.READY, "up", check_passed=False)  # up, its latest check failed
CHECK_UNKNOWN = MemberStatus(MemberAdmin.READY, "up")
DOWN = MemberStatus(MemberAdmin.READY, "down", check_passed=False)  # HAProxy marked it down
MAINT = MemberStatus(MemberAdmin.MAINT, "down")
LATE = "no answer within 1 s"


def timed_out(n: int = 2, cpu: float | None = 12.0) -> tuple[ProbeResult, ...]:
    """A passing probe, then ``n`` timed-out ones a second apart (the last at NOW); the unit's CPU time
    flat at ``cpu`` (an idle replica whose probe was late looks like a hung one by CPU alone)."""
    first = ProbeResult(True, NOW - n, "200 OK", cpu)
    return (first, *(ProbeResult(False, NOW - (n - 1 - i), LATE, cpu) for i in range(n)))


def replica(host: str, probes: tuple[ProbeResult, ...], member: MemberStatus, **kw: object) -> ReplicaView:
    view = ReplicaView(KEYSTONE.name, HostName(host), DOMAINS[HostName(host)], ACTIVE, probes, member)
    return dataclasses.replace(view, **kw)  # type: ignore[arg-type]


def serving(host: str = "ctl-2") -> ReplicaView:
    return replica(host, (ProbeResult(True, NOW - 0.5, "200 OK", 5.0),), CHECK_PASSES)


def run(*views: ReplicaView, now: float = NOW) -> ControlPlanePlan:
    return plan([KEYSTONE], list(views), DOMAINS, now, ControlPlaneSettings())


def acts(p: ControlPlanePlan) -> list[tuple[ActionKind, str]]:
    return [(a.kind, a.host) for a in p.actions]


def test_a_replica_haproxys_check_still_passes_is_not_taken_out_or_restarted_for_probe_timeouts() -> None:
    p = run(replica("ctl-1", timed_out(), CHECK_PASSES), serving())
    assert acts(p) == []  # before: drained, then killed and restarted as hung, another serving
    (hold,) = [h for h in p.holds if h.kind == "busy"]
    assert hold.host == "ctl-1" and "HAProxy's own check of it passes" in hold.reason
    assert p.recheck_at == NOW - 1 + PROBE.busy_grace_s


def test_once_haproxys_check_fails_too_it_is_hung_and_leaves_at_once() -> None:
    for member in (CHECK_FAILS, DOWN, CHECK_UNKNOWN):  # a SIGSTOPped replica fails HAProxy's check too
        assert acts(run(replica("ctl-1", timed_out(), member), serving())) == [(ActionKind.DRAIN, "ctl-1")]


def test_held_out_and_still_answering_haproxy_it_is_restarted_gracefully_never_killed() -> None:
    # Out of the load balancer (haven's own maintenance: HAProxy still checks it) past its grace.
    drained = MemberStatus(MemberAdmin.DRAIN, "up", check_passed=True)
    view = replica("ctl-1", timed_out(35), drained, held_out=True)
    assert acts(run(view, serving())) == [(ActionKind.MAINT, "ctl-1")]
    # In maintenance HAProxy's checks pause (show stat leaves check_status blank: not known); its CPU time
    # advancing tells it is busy, not hung.
    late = (ProbeResult(False, NOW - 34 + i, LATE, 10.0 + 0.6 * (i + 1)) for i in range(35))
    working = (ProbeResult(True, NOW - 35, "200 OK", 10.0), *late)
    out = replica("ctl-1", working, MAINT, held_out=True)
    (restart,) = [a for a in run(out, serving()).actions if a.kind is ActionKind.RESTART]
    assert restart.reason.startswith(PROBE_BUSY) and not killable(KEYSTONE, restart.reason)
    hung = replica("ctl-1", timed_out(2), MAINT, held_out=True)  # checks off in maintenance: not known
    (restart,) = [a for a in run(hung, serving()).actions if a.kind is ActionKind.RESTART]
    assert restart.reason.startswith(PROBE_HUNG) and killable(KEYSTONE, restart.reason)


def test_past_its_grace_a_replica_answering_only_haproxy_is_handled_as_any_unhealthy_one() -> None:
    view = replica("ctl-1", timed_out(35), CHECK_PASSES)
    assert acts(run(view, serving())) == [(ActionKind.DRAIN, "ctl-1")]


def test_errors_are_not_excused_by_haproxys_check() -> None:
    errors = (
        ProbeResult(True, NOW - 2, "200 OK"),
        ProbeResult(False, NOW - 1, "GET /v3: 500"),
        ProbeResult(False, NOW, "GET /v3: 500"),
    )
    assert acts(run(replica("ctl-1", errors, CHECK_PASSES), serving())) == [(ActionKind.DRAIN, "ctl-1")]


def test_the_last_enabled_member_haproxy_counts_down_under_load_is_not_taken_out_while_busy() -> None:
    # The survivor of a killed peer: its CPU time advances (busy), HAProxy's check failed under the
    # load and it counts it down; the peer is gone. Draining it would keep it out once HAProxy's
    # check passes again.
    busy = (
        ProbeResult(True, NOW - 2, "200 OK", 12.0),
        ProbeResult(False, NOW - 1, LATE, 12.6),
        ProbeResult(False, NOW, LATE, 13.2),
    )
    gone = replica("ctl-2", (), MAINT, unit=UnitStatus(UnitActive.FAILED, "failed"), held_out=True)
    p = run(replica("ctl-1", busy, DOWN), gone)
    assert (ActionKind.DRAIN, "ctl-1") not in acts(p)  # before: drained, the backend empty for good
    assert [h.host for h in p.holds if h.kind in ("busy", "last_serving")] == ["ctl-1"]


def test_the_last_enabled_member_is_kept_while_another_is_being_restarted_even_if_haproxy_says_down() -> None:
    # Busy (CPU advancing): HAProxy counted it down under load, it serves again when its check passes.
    starting = UnitStatus(UnitActive.ACTIVATING, "start")
    back = replica("ctl-2", (), MAINT, unit=starting, held_out=True)
    busy = (
        ProbeResult(True, NOW - 2, "200 OK", 12.0),
        ProbeResult(False, NOW - 1, LATE, 12.6),
        ProbeResult(False, NOW, LATE, 13.2),
    )
    p = run(replica("ctl-1", busy, DOWN), back)
    assert acts(p) == []  # before: ctl-1 drained too (HAProxy counted it down): nothing left to come back to
    assert [h.kind for h in p.holds if h.host == "ctl-1"] == ["last_serving"]
    # Hung (CPU flat) and counted down: it serves nothing, keeping it helps no one; out and restarted.
    assert acts(run(replica("ctl-1", timed_out(), DOWN), back)) == [(ActionKind.DRAIN, "ctl-1")]


def test_a_peer_back_by_its_probe_but_never_up_in_haproxy_keeps_no_hung_survivor_for_ever() -> None:
    # ctl-2 passes haven's probe but HAProxy's check of it keeps failing (an operator's disable_by_file,
    # a path from HAProxy broken): it is not on its way in past RISE_WAIT_S, and the hung ctl-1 is handled.
    passing = (ProbeResult(True, NOW - RISE_WAIT_S - 5, "200 OK"), ProbeResult(True, NOW, "200 OK"))
    never_up = replica("ctl-2", passing, MemberStatus(MemberAdmin.READY, "down", check_passed=False))
    assert acts(run(replica("ctl-1", timed_out(), CHECK_FAILS), never_up)) == [(ActionKind.DRAIN, "ctl-1")]
    # Within it, kept (the rise is a few seconds).
    fresh = dataclasses.replace(
        never_up, probes=(ProbeResult(False, NOW - 3, "503"), ProbeResult(True, NOW - 2, "200 OK"))
    )
    assert acts(run(replica("ctl-1", timed_out(), CHECK_FAILS), fresh)) == []


def test_a_hung_last_member_is_still_restarted_when_nothing_else_is_coming_back() -> None:
    # One replica, SIGSTOPped: CPU flat, HAProxy's check failing; draining changes nothing for clients,
    # and it is restarted (killed first) rather than left hung.
    one = dataclasses.replace(KEYSTONE, min_replicas=1)
    view = replica("ctl-1", timed_out(), DOWN)
    p = plan([one], [view], DOMAINS, NOW, ControlPlaneSettings())
    assert acts(p) == [(ActionKind.DRAIN, "ctl-1")]


def test_a_busy_replica_haproxy_checks_is_left_to_haproxy_while_another_serves() -> None:
    # CPU advancing (busy), HAProxy's latest check failed: HAProxy takes it out by itself (fall) and puts
    # it back (rise) as it answers; haven's drain would keep it out until its own probe passes and push
    # its share onto the other replica.
    busy = (
        ProbeResult(True, NOW - 2, "200 OK", 12.0),
        ProbeResult(False, NOW - 1, LATE, 12.6),
        ProbeResult(False, NOW, LATE, 13.2),
    )
    p = run(replica("ctl-1", busy, CHECK_FAILS), serving())
    assert acts(p) == []
    (hold,) = [h for h in p.holds if h.kind == "busy"]
    assert "HAProxy's own check" in hold.reason
    # Without a load-balancer check known (none configured), as before: out while another serves.
    assert acts(run(replica("ctl-1", busy, CHECK_UNKNOWN), serving())) == [(ActionKind.DRAIN, "ctl-1")]
    # Hung (CPU flat, HAProxy's check failing): out at once.
    assert acts(run(replica("ctl-1", timed_out(), CHECK_FAILS), serving())) == [(ActionKind.DRAIN, "ctl-1")]


# ---- replicas failing in turn (rule 4 over a window) -------------------------------------------------


def test_a_survivor_failing_after_its_peer_was_restarted_is_held_not_drained_or_restarted() -> None:
    # kill -9 of ctl-2: systemd restarted it 5 s ago (its new process starting); ctl-1 took its share
    # and its probes time out, HAProxy's check of it failing too, its CPU flat (starved by the machine).
    restarted = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 4)
    victim = replica("ctl-2", (), MAINT, unit=restarted, held_out=True, restarts=(NOW - 5,))
    p = run(replica("ctl-1", timed_out(), CHECK_FAILS), victim)
    assert (ActionKind.DRAIN, "ctl-1") not in acts(p)  # before: drained, then killed as hung
    (gate,) = [h for h in p.holds if h.kind == "mass_failure"]
    assert "restarted within the last 60 s" in gate.reason


def test_the_peer_back_by_its_probe_but_not_yet_up_in_haproxy_keeps_the_survivor_in() -> None:
    # The victim's probe passed and its member is ready, HAProxy not yet counting it up (rise 2): the
    # survivor is still the only one taking traffic. Before: drained that very pass (both out: 503s).
    back = replica("ctl-2", (ProbeResult(True, NOW, "200 OK"),), MemberStatus(MemberAdmin.READY, "down"))
    p = run(replica("ctl-1", timed_out(), CHECK_FAILS), back)
    assert acts(p) == []
    assert [h.kind for h in p.holds if h.host == "ctl-1"] == ["last_serving"]


def test_past_the_window_or_once_the_peer_serves_a_hung_replica_is_handled_again() -> None:
    old = replica("ctl-2", (ProbeResult(True, NOW - 0.5, "200 OK", 5.0),), CHECK_PASSES, restarts=(NOW - 61,))
    assert acts(run(replica("ctl-1", timed_out(), CHECK_FAILS), old)) == [(ActionKind.DRAIN, "ctl-1")]
    # Restarted 59 s ago and serving again (up by HAProxy's check): it took its share back, it is not
    # failing, so it does not hold the hung one (a peer systemd restarts every ~45 s, healthy between,
    # held it for ever before).
    recent = dataclasses.replace(old, restarts=(NOW - 59,))
    assert acts(run(replica("ctl-1", timed_out(), CHECK_FAILS), recent)) == [(ActionKind.DRAIN, "ctl-1")]
    # Restarted 59 s ago and not serving yet (its member still in maintenance): held.
    returning = dataclasses.replace(recent, member=MAINT, held_out=True, probes=())
    p = run(replica("ctl-1", timed_out(), CHECK_FAILS), returning)
    assert (ActionKind.DRAIN, "ctl-1") not in acts(p)
    assert [h.kind for h in p.holds if h.host is None] == ["mass_failure"]


# ---- the kill drill's cascade: a survivor counted down beside a peer just back ------------------------


def _just_back(passing_for: float) -> ReplicaView:
    """ctl-2 after a kill -9: systemd restarted it, its probe has passed for ``passing_for`` s (after a
    503 while it booted), haven readied it and HAProxy counts it up (a cold process taking the whole
    backend's traffic)."""
    restarted = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - passing_for - 2)
    probes = (
        ProbeResult(False, NOW - passing_for - 1, "503"),
        ProbeResult(True, NOW - passing_for, "200 OK"),
        ProbeResult(True, NOW, "200 OK"),
    )
    return replica("ctl-2", probes, CHECK_PASSES, unit=restarted, restarts=(NOW - passing_for - 3,))


def test_a_survivor_counted_down_is_not_drained_while_the_only_peer_in_rotation_is_just_back() -> None:
    # The HA lab's kill drill (2026-12-07, 8 clients, fresh tokens): the survivor's threads all waited on
    # Keystone (CPU flat, so not busy), HAProxy counted it down; haven readied the restarted peer and
    # drained the survivor in the same second; the cold peer alone failed its check too, and the backend
    # stayed empty until haven's probe of the survivor passed again (66 s). Left enabled, HAProxy's check
    # brings the survivor back by itself.
    p = run(replica("ctl-1", timed_out(), DOWN), _just_back(passing_for=1.0))
    assert acts(p) == []  # before: [(DRAIN, ctl-1)]
    (hold,) = [h for h in p.holds if h.host == "ctl-1"]
    assert hold.kind == "last_serving" and "came back within the last 15 s" in hold.reason
    assert p.recheck_at == NOW - 1.0 + RISE_WAIT_S  # when the peer has held up for rise_wait_s


def test_once_the_peer_has_held_up_or_the_survivor_answers_errors_it_is_handled_as_before() -> None:
    # The peer passing for rise_wait_s: it carries the backend; a hung survivor is drained and restarted.
    held_up = _just_back(RISE_WAIT_S)
    assert acts(run(replica("ctl-1", timed_out(), DOWN), held_up)) == [(ActionKind.DRAIN, "ctl-1")]
    # A peer in rotation that was not restarted lately is no fresh return (a steady backend).
    steady = dataclasses.replace(_just_back(1.0), restarts=(NOW - 61,))
    assert acts(run(replica("ctl-1", timed_out(), DOWN), steady)) == [(ActionKind.DRAIN, "ctl-1")]
    # Errors, not timeouts: the survivor answers, wrongly; not load. Out at once.
    errors = (ProbeResult(False, NOW - 1, "GET /v3: 500"), ProbeResult(False, NOW, "GET /v3: 500"))
    assert acts(run(replica("ctl-1", errors, DOWN), _just_back(1.0))) == [(ActionKind.DRAIN, "ctl-1")]
    # The pass before (the peer readied, HAProxy not yet counting it up): it is not serving, so it counts
    # as failing with the survivor and the replica gate holds both (rule 4's window); the rule above takes
    # over once HAProxy counts the peer up, the next pass (the two came "in the same second" on the lab).
    not_up = dataclasses.replace(_just_back(1.0), member=MemberStatus(MemberAdmin.READY, "down"))
    p = run(replica("ctl-1", timed_out(), DOWN), not_up)
    assert acts(p) == [] and [h.kind for h in p.holds] == ["mass_failure"]


def test_a_peer_late_once_is_not_fresh_again_and_a_crash_looped_survivor_is_not_kept() -> None:
    # Review (R1): ctl-2 restarted 55 s ago, back by its probe for ~52 s, one probe late 3 s ago (one
    # failure, below failure_threshold: still healthy). Its run of passes began 2 s ago, but it is not
    # fresh: the hung ctl-1 is handled, not held until the restart leaves gate_window_s.
    unit = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 54)
    probes = tuple(ProbeResult(i != 3, NOW - i, "200 OK" if i != 3 else LATE) for i in range(52, -1, -1))
    peer = replica("ctl-2", probes, CHECK_PASSES, unit=unit, restarts=(NOW - 55,))
    assert acts(run(replica("ctl-1", timed_out(50), DOWN), peer)) == [(ActionKind.DRAIN, "ctl-1")]
    # A survivor in a crash loop stays out of the load balancer, whatever its peer.
    n = KEYSTONE.restart.crash_loop_max_restarts
    looping = replica("ctl-1", timed_out(3), DOWN, restarts=tuple(NOW - 30 - i for i in range(n)))
    p = run(looping, _just_back(1.0))
    assert [h.kind for h in p.holds if h.host == "ctl-1"] == ["crash_loop"]
    assert (ActionKind.DRAIN, "ctl-1") in acts(p)


def test_a_peer_whose_kept_results_all_passed_is_back_since_its_start() -> None:
    # Review R4 (of f2ffa85): the reconciler keeps a few dozen results; with rise_wait_s longer than they
    # span, a peer back for 100 s looked fresh (its first kept pass slid forward each pass).
    unit = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 100)
    kept = tuple(ProbeResult(True, NOW - i, "200 OK") for i in range(37, -1, -1))  # the last 38 s only
    peer = replica("ctl-2", kept, CHECK_PASSES, unit=unit, restarts=(NOW - 101,))
    settings = dataclasses.replace(ControlPlaneSettings(), rise_wait_s=60.0, gate_window_s=300.0)
    p = plan([KEYSTONE], [replica("ctl-1", timed_out(), DOWN), peer], DOMAINS, NOW, settings)
    assert acts(p) == [(ActionKind.DRAIN, "ctl-1")]  # before: held (last_serving), again and again
