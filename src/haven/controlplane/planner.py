"""The control plane's planner (pure): declared specs and one pass's observations in, actions and holds out.

Called by haven.controlplane.reconciler once per pass, with a snapshot it has just read (systemd,
HAProxy, probes) and haven's own records (restarts, members it took out, unfinished actions). Nothing
here reads a clock or does I/O: the same snapshot always gives the same plan, so a test states a world
and reads the plan.

The rules, per service:
1. A replica is judged from systemd's state and its probes (``health``): failed (crashed, killed),
   unhealthy (running, probe failed ``failure_threshold`` times in a row), starting (activating, or active
   within its start-up grace with no probe pass yet: never killed), healthy, stopped, unknown, absent.
2. A replica that cannot serve leaves the load balancer first: drain, then maintenance once its
   connections had ``drain_s`` (at once when its process is gone). It returns (ready) once its latest
   probe passed, when haven took it out, or (rule 7) when it was taken out by someone else and its unit
   was restarted since; a member an operator took out of a running replica stays out. A replica whose
   process haven did not see start (``found``: running, active or reloading, when haven began watching
   it) and that is in the load balancer is not taken out for having passed no probe yet (starting): it
   was serving before haven looked; its probes' failures take it out as any replica's. One haven saw
   restart (killed, systemd's Restart=) is held out until its probe passes, however soon HAProxy's own
   check passes: a deep probe (nova-api's service list with a token) is what keeps a cold replica's
   first requests from clients.
3. A failed or unhealthy replica is restarted once out of the load balancer, after an exponential
   back-off over its recent restarts (haven's and systemd's own); at ``crash_loop_max_restarts`` within
   the window, still not serving, it is in a crash loop: haven stops restarting it, keeps it out of the
   load balancer and holds it with an alert (a loop of systemd's own restarts, Restart=, too), and it no
   longer counts towards ``min_replicas``. A *busy* replica is not restarted before its probes have
   failed for ``busy_grace_s`` (a ``busy`` hold, no alert): its last probes all timed out, but its
   unit's CPU time advanced between them by at least ``busy_cpu_share`` of one CPU (read by systemd,
   ``ProbeResult.cpu_s``): it works, late (overloaded: a fresh replica, or the survivor taking the
   load), where a hung one (SIGSTOPped, deadlocked) spends none and is restarted at once, killed
   first when stateless. A busy replica that is the only one in the load balancer stays in during
   that grace (late answers beat HAProxy's 503 to everyone); past it, it is handled as any unhealthy
   replica. Without a CPU figure every timeout counts as hung (as before).
4. Never everything at once: at most ``max_restarts_at_once`` replicas of a service are out for a
   restart; when many fail their probes at once, haven.safety's replica gate holds them all (and keeps
   them in the load balancer: the prober is as likely wrong as they are); a replica whose dependency
   has no healthy replica is not restarted for its probe failures. The last replica in the load
   balancer is never taken out for failed probes while another is being restarted (a ``last_serving``
   hold until that one serves): a survivor's probe timing out under the load it took over would
   otherwise empty the backend. Nor is a survivor HAProxy counts down, whose probes time out, drained
   while every other replica in (or entering) the backend is fresh (restarted within ``gate_window_s``
   and back by its probe for less than ``rise_wait_s``): left enabled, HAProxy's own check puts it back
   if it was only overloaded, where drained it would wait for haven's probe while the cold one, alone,
   may fail its check too.
5. Fewer than ``min_replicas`` replicas that run or will be restarted: stopped replicas are started on
   allowed hosts, emptiest failure domain first (spread). Stateful services are never started elsewhere.
6. Re-spread (spread ``domains``, not stateful): when every replica is healthy and in the load balancer
   and one failure domain holds two replicas more than another that has a stopped replica to start,
   haven starts that one first (a START whose reason begins ``re-spread``); once it serves (healthy,
   its member ready and up in HAProxy's own check), one replica of the crowded domain beyond
   ``min_replicas`` leaves the load balancer (drain, maintenance) and is stopped. Only a move haven
   began and has not yet ended (``moves``: the replicas it started to re-spread with no re-spread stop
   of that service done since, from its records) ends in a stop, and each move in one stop at most:
   haven never runs fewer replicas than it found, and replicas an operator runs beyond the minimum are
   never stopped for sharing a domain.
7. Membership follows health, within an operator's maintenance: a healthy replica whose latest probe
   passed and that is not leaving (rule 6) is put back in the load balancer when haven took it out, or
   (stateless services only) when someone else did and its unit was restarted since (``stale``: a new
   process; the maintenance was for the old one, as a member left disabled by a redeploy). A member an
   operator disabled (HAProxy ``disable server``, ``set server ... state maint|drain``, as Kolla and
   Pacemaker operators do) of a replica that keeps running stays out until the operator enables it;
   for a stateful service (a desynced Galera donor, a paused RabbitMQ node) haven only ever puts back
   what it took out itself. A replica that cannot serve is taken out whoever put it in (rule 2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from haven.domain.controlplane import (
    ActionKind,
    ControlPlanePlan,
    ControlPlaneSettings,
    Hold,
    MemberAdmin,
    PlannedAction,
    ProbeSpec,
    ReplicaHealth,
    ReplicaView,
    RestartPolicy,
    ServiceName,
    ServiceSpec,
    Spread,
    UnitActive,
)
from haven.domain.ids import HostName
from haven.safety import replica_gate_reason

H = ReplicaHealth
PROBE_FAILING = "probe failing"  # how the reason of a restart for failed probes begins
PROBE_HUNG = "probe failing, no answer"  # ... when they failed by timeout (hung): killed first if stateless
PROBE_BUSY = "probe failing, busy"  # ... by timeout while its CPU time advanced, past busy_grace_s
TIMED_OUT = "no answer within"  # in a probe result's detail when it timed out (the probers say so)
RESPREAD = "re-spread"  # how the reason of rule 6's START begins (the reconciler finds its moves by it)
# The defaults of haven.toml's ``[controlplane] gate_window_s`` and ``rise_wait_s`` (the planner reads
# them from its ``settings``): rule 4, a replica restarted this recently, and not serving yet, counts as
# failing; and how long a replica back by haven's probe may take to be up by HAProxy's own check (rise x
# inter, with room for a loaded check) while the last member is kept for it; past that, it is not "on
# its way in".
GATE_WINDOW_S = ControlPlaneSettings().gate_window_s
RISE_WAIT_S = ControlPlaneSettings().rise_wait_s
_NEEDS_RESTART = frozenset({H.FAILED, H.UNHEALTHY})
_CANNOT_SERVE = frozenset({H.FAILED, H.UNHEALTHY, H.STOPPED, H.UNKNOWN, H.ABSENT, H.STARTING})
_PROCESS_GONE = frozenset({H.FAILED, H.STOPPED, H.UNKNOWN, H.ABSENT})
_COUNTED = frozenset({H.HEALTHY, H.STARTING, H.UNHEALTHY, H.FAILED})
_LOOPING = frozenset({H.FAILED, H.UNHEALTHY, H.STARTING})  # restarted too often and still not serving


@dataclass(frozen=True, slots=True)
class Judged:
    view: ReplicaView
    health: ReplicaHealth
    probe_ok: bool  # the latest probe since the unit became active passed (or the service has none)
    grace_until: float | None = None  # STARTING within its grace: when the grace ends


def health(view: ReplicaView, probe: ProbeSpec | None, now: float) -> Judged:
    """Rule 1: one replica's verdict from its unit and its probes."""
    unit = view.unit
    if unit is None:
        return Judged(view, H.UNKNOWN, False)
    if not unit.loaded:
        return Judged(view, H.ABSENT, False)
    if unit.active is UnitActive.FAILED:
        return Judged(view, H.FAILED, False)
    if unit.active is UnitActive.INACTIVE:
        return Judged(view, H.STOPPED, False)
    if unit.active in (UnitActive.ACTIVATING, UnitActive.DEACTIVATING) or unit.active_since is None:
        return Judged(view, H.STARTING, False)
    if probe is None:
        return Judged(view, H.HEALTHY, True)
    since = [p for p in view.probes if p.at >= unit.active_since]
    failures = 0
    for result in reversed(since):
        if result.ok:
            break
        failures += 1
    latest_ok = bool(since) and since[-1].ok
    passed = any(p.ok for p in since)
    grace_end = unit.active_since + probe.startup_grace_s
    if failures >= probe.failure_threshold and (passed or now >= grace_end):
        return Judged(view, H.UNHEALTHY, False)
    if not passed and now < grace_end:
        return Judged(view, H.STARTING, False, grace_end)
    return Judged(view, H.HEALTHY, latest_ok)


def backoff_due(restarts: Sequence[float], policy: RestartPolicy) -> float | None:
    """When the next restart may happen, given the restarts within the window (None: at once)."""
    if not restarts:
        return None
    delay = policy.backoff_initial_s * policy.backoff_factor ** (len(restarts) - 1)
    return max(restarts) + min(delay, policy.backoff_max_s)


def recent(restarts: Iterable[float], policy: RestartPolicy, now: float) -> tuple[float, ...]:
    return tuple(sorted(t for t in restarts if now - t < policy.crash_loop_window_s))


@dataclass(slots=True)
class _Pass:
    now: float
    settings: ControlPlaneSettings
    actions: list[PlannedAction] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)
    due: list[float] = field(default_factory=list)

    def act(self, kind: ActionKind, j: Judged, reason: str) -> None:
        self.actions.append(PlannedAction(kind, j.view.service, j.view.host, reason))

    def wait(self, at: float | None) -> None:
        if at is not None and at > self.now:
            self.due.append(at)


def plan(
    specs: Sequence[ServiceSpec],
    replicas: Sequence[ReplicaView],
    domains: Mapping[HostName, str],
    now: float,
    settings: ControlPlaneSettings,
    moves: frozenset[tuple[ServiceName, HostName]] = frozenset(),
    stale: frozenset[tuple[ServiceName, HostName]] = frozenset(),
    found: frozenset[tuple[ServiceName, HostName]] = frozenset(),
) -> ControlPlanePlan:
    """The actions and holds for one pass. ``replicas``: one view per (service, allowed host);
    ``moves``: the replicas haven started to re-spread their service, recently, whose move has not
    ended in a stop yet (rule 6); ``stale``: replicas whose member someone else took out and whose
    unit was restarted since (rule 7); ``found``: replicas whose current process was already running
    when haven first read their unit (haven did not see it start: rule 2)."""
    by_service: dict[ServiceName, list[ReplicaView]] = defaultdict(list)
    for view in replicas:
        by_service[view.service].append(view)
    state = _Pass(now, settings)
    judged = {
        spec.name: [health(v, spec.probe, now) for v in sorted(by_service[spec.name], key=lambda v: v.host)]
        for spec in specs
    }
    healthy = {name: sum(1 for j in js if j.health is H.HEALTHY) for name, js in judged.items()}
    for spec in specs:
        _service(spec, judged[spec.name], healthy, domains, state, moves, stale, found)
    health_table = tuple((j.view.service, j.view.host, j.health) for spec in specs for j in judged[spec.name])
    return ControlPlanePlan(
        tuple(state.actions), tuple(state.holds), health_table, min(state.due, default=None)
    )


def _service(
    spec: ServiceSpec,
    judged: list[Judged],
    healthy: Mapping[ServiceName, int],
    domains: Mapping[HostName, str],
    state: _Pass,
    moves: frozenset[tuple[ServiceName, HostName]] = frozenset(),
    stale: frozenset[tuple[ServiceName, HostName]] = frozenset(),
    found: frozenset[tuple[ServiceName, HostName]] = frozenset(),
) -> None:
    running = [j for j in judged if j.health in (H.HEALTHY, H.UNHEALTHY)]
    unhealthy = [j for j in judged if j.health is H.UNHEALTHY]
    # Rule 4 over a window, not a burst (as the observer gate): a replica restarted (by haven or
    # systemd) within gate_window_s counts as failing with those failing now. Under overload the
    # replicas fail in turn, not at once: one crashes or is restarted, its share moves to the other,
    # whose probes then time out; restarting that one moves it back (the HA lab's kill drill at load
    # 25-50: the two nova-api replicas drained and restarted each other in turn for two minutes).
    recent = [
        j
        for j in judged
        if j.health is not H.UNHEALTHY
        and not _serving(spec, j)  # serving again: it took its share back, it is not failing
        and not _crash_looped(spec, j, state.now)  # broken on its own: it will not take the load back
        and any(0 <= state.now - t < state.settings.gate_window_s for t in j.view.restarts)
    ]
    failing = len(unhealthy) + len(recent) if unhealthy else 0
    total = len(running) + sum(1 for j in recent if j not in running)
    gate = replica_gate_reason(spec.name, failing, total, state.settings)
    if gate and recent:
        gate += f" ({len(recent)} of them restarted within the last {state.settings.gate_window_s:g} s)"
    if gate:
        state.holds.append(Hold(spec.name, None, "mass_failure", gate))
    down_deps = [d for d in spec.depends_on if d in healthy and healthy[d] == 0]
    if down_deps and unhealthy:
        reason = (
            f"{spec.name} fails its probes while {', '.join(down_deps)} has no healthy replica: "
            "its replicas are not restarted for that"
        )
        state.holds.append(Hold(spec.name, None, "dependency", reason))
    out_for_restart = sum(1 for j in judged if j.view.busy or (j.health is H.STARTING and j.view.held_out))
    budget = state.settings.max_restarts_at_once - out_for_restart
    leaving = _surplus(spec, judged, domains, moves)
    for j in sorted(judged, key=lambda j: (j.health is not H.FAILED, j.view.host)):
        _crash_loop_hold(spec, j, state)
        if j.view.busy:
            continue  # an unfinished action: the reconciler finishes it first
        if j.health is H.UNHEALTHY and gate:
            continue  # rule 4: held, and left in the load balancer
        if j.health is H.UNHEALTHY and _last_in_rotation_while_another_returns(
            spec, j, judged, state.now, state.settings.rise_wait_s
        ):
            reason = (
                f"{spec.name}@{j.view.host} fails its probes but is the last replica in backend "
                f"{spec.backend.name if spec.backend else ''} while another is being restarted: kept in "
                "and not restarted until that one serves (taking it out would refuse every request)"
            )
            state.holds.append(Hold(spec.name, j.view.host, "last_serving", reason))
            continue  # rule 4: never the last one out while another comes back
        if j.health is H.UNHEALTHY and _down_beside_a_fresh_return(spec, j, judged, state):
            reason = (
                f"{spec.name}@{j.view.host} answers no probe and HAProxy counts it down, but every other "
                f"replica in or entering backend {spec.backend.name if spec.backend else ''} came back "
                f"within the last {state.settings.rise_wait_s:g} s: kept enabled, not restarted yet "
                "(HAProxy's own check puts it back if it was only overloaded; the returning one may still "
                "fail alone)"
            )
            state.holds.append(Hold(spec.name, j.view.host, "last_serving", reason))
            state.wait(_fresh_until(spec, judged, j, state))
            continue  # rule 4: a peer just back is not yet the backend's whole capacity
        if j.health is H.UNHEALTHY and _checked_in(spec, j):
            until = _busy_until(spec, j)
            if until is not None and state.now < until:
                what = "left in its backend to HAProxy's own check, not restarted"
                _busy_hold(spec, j, state, until, what)
                continue  # rule 3: the load balancer takes it out and back as it answers its check
        if j.health is H.UNHEALTHY and _alone_in_rotation(spec, j, judged):
            until = _busy_until(spec, j)
            if until is not None and state.now < until:
                what = "the last replica in the load balancer, kept in (late answers beat none)"
                _busy_hold(spec, j, state, until, what)
                continue  # rule 3: out only if another serves; past its grace, as any unhealthy one
        if j is leaving:
            _leave(spec, j, state)
            continue
        if _found_serving(spec, j, found):
            state.wait(j.grace_until)
            continue  # rule 2: serving before haven looked; out only when its probes fail
        if not _membership(spec, j, state, (spec.name, j.view.host) in stale):
            continue  # still leaving the load balancer
        if j.health in _NEEDS_RESTART and budget > 0 and _restart(spec, j, bool(down_deps), state):
            budget -= 1
        if j.health is H.STARTING:
            state.wait(j.grace_until)
    if not spec.stateful and not _fill(spec, judged, domains, state) and leaving is None:
        _respread(spec, judged, domains, state)


def _found_serving(spec: ServiceSpec, j: Judged, found: frozenset[tuple[ServiceName, HostName]]) -> bool:
    """Rule 2's exception: starting only for want of a first probe pass, its process running since
    before haven looked (active, or reloading: a ``systemctl reload`` under way keeps the process and
    its connections), and in the load balancer's rotation."""
    unit = j.view.unit
    return (
        j.health is H.STARTING
        and (spec.name, j.view.host) in found
        and unit is not None
        and unit.active in (UnitActive.ACTIVE, UnitActive.RELOADING)
        and _in_rotation(spec, j)
    )


def _in_rotation(spec: ServiceSpec, j: Judged) -> bool:
    """Takes the load balancer's traffic by HAProxy's account (ready and up), whatever haven's probe says."""
    member = j.view.member
    return (
        spec.backend is not None
        and member is not None
        and (member.admin is MemberAdmin.READY and member.operational == "up")
    )


def _last_member(spec: ServiceSpec, j: Judged, judged: list[Judged]) -> bool:
    """Its member is enabled (ready) and no other replica takes the load balancer's traffic: taking it out
    moves no request elsewhere. HAProxy may count it down (its own check failed under load): then it
    serves again as soon as that check passes, unless haven took it out; but only a busy one (``_busy``)
    is kept for that: a hung one counted down serves nothing, and is handled as any unhealthy replica."""
    member = j.view.member
    return (
        spec.backend is not None
        and member is not None
        and member.admin is MemberAdmin.READY
        and (member.operational == "up" or _busy(spec, j))
        and not any(_in_rotation(spec, o) for o in judged if o is not j)
    )


def _alone_in_rotation(spec: ServiceSpec, j: Judged, judged: list[Judged]) -> bool:
    """The only replica the load balancer may send traffic to (``_last_member``)."""
    return _last_member(spec, j, judged)


def _checked_in(spec: ServiceSpec, j: Judged) -> bool:
    """Its member is enabled and the load balancer health-checks it (its latest check is known): a busy
    replica's membership is then the load balancer's to decide, as its check passes or fails. haven's
    drain would keep it out until haven's own probe passes (slower than HAProxy's ``rise``) and push its
    share onto the others: under overload, the next one fails too (seen on the HA lab, a cascade that
    emptied nova-api's backend)."""
    member = j.view.member
    return (
        spec.backend is not None
        and member is not None
        and member.admin is MemberAdmin.READY
        and member.check_passed is not None
    )


def _answers_balancer(spec: ServiceSpec, j: Judged) -> bool:
    """HAProxy counts its member up and its own latest health check of it passed: the replica answers
    another observer (within the load balancer's check timeout) while haven's probes time out. Under
    overload haven's probe, or haven itself, may be the late one; a hung process fails that check too
    (within HAProxy's ``timeout check``) and is then handled as hung."""
    member = j.view.member
    return (
        spec.backend is not None
        and member is not None
        and member.check_passed is True
        and member.operational == "up"
    )


def _last_in_rotation_while_another_returns(
    spec: ServiceSpec, j: Judged, judged: list[Judged], now: float, rise_wait_s: float
) -> bool:
    """``j`` is the only replica in the load balancer, and another is on its way back: being restarted
    (an action in flight, starting, or out for a restart and not in a crash loop). Draining ``j`` then
    would leave the backend empty (HAProxy answers 503 to everyone) for a probe that may only be slow
    under load; once the other serves, ``j`` is handled as any unhealthy replica."""
    if not _last_member(spec, j, judged):
        return False
    for other in judged:
        if other is j:
            continue
        if other.view.busy or other.health is H.STARTING:
            return True
        if other.health is H.HEALTHY and other.probe_ok and not _in_rotation(spec, other):
            member = other.view.member
            on_its_way = other.view.held_out or (member is not None and member.admin is MemberAdmin.READY)
            if on_its_way and now - _passing_since(other) < rise_wait_s:
                return True  # back by its probe, not yet up in HAProxy's check (rise): on its way in
        if other.view.held_out and other.health in _NEEDS_RESTART and not _crash_looped(spec, other, now):
            return True
    return False


def _fresh_returns(spec: ServiceSpec, judged: list[Judged], j: Judged, state: _Pass) -> list[Judged] | None:
    """The replicas other than ``j`` in the load balancer's rotation or on their way in (back by their
    probe, ready or being readied, not yet up by HAProxy's check), when there are some and each is fresh:
    restarted within ``gate_window_s`` and passing its probes for less than ``rise_wait_s`` (a cold process
    about to take the whole backend's traffic). None when there is none, or when one in rotation is not
    fresh (a steady replica carries the backend)."""
    returning = []
    for o in judged:
        if o is j:
            continue
        member = o.view.member
        entering = (
            o.health is H.HEALTHY
            and o.probe_ok
            and member is not None
            and (o.view.held_out or member.admin is MemberAdmin.READY)
        )
        if not (_in_rotation(spec, o) or entering):
            continue
        restarted = any(0 <= state.now - t < state.settings.gate_window_s for t in o.view.restarts)
        if restarted and state.now - _back_since(o) < state.settings.rise_wait_s:
            returning.append(o)
        elif _in_rotation(spec, o):
            return None
    return returning or None


def _down_beside_a_fresh_return(spec: ServiceSpec, j: Judged, judged: list[Judged], state: _Pass) -> bool:
    """Rule 4, the kill drill's cascade (HA lab, 2026-12-07): ``j`` survived a peer's kill, took the whole
    load, and HAProxy counted it down (its check timed out behind requests waiting on Keystone: no CPU
    spent, so not ``busy``); the peer came back by its probe and HAProxy's check, cold. Draining ``j``
    then kept it out until haven's own probe passed, while the cold peer, alone, failed its check too:
    the backend stayed empty for a minute. Left enabled, ``j`` returns as soon as HAProxy's check passes.
    Only while its probes time out (an error answer is handled at once) and every replica in rotation is
    fresh (``_fresh_returns``); a hung ``j`` is drained and restarted at most ``rise_wait_s`` later."""
    member = j.view.member
    if spec.backend is None or member is None or member.admin is not MemberAdmin.READY:
        return False
    if member.operational == "up" or not _hung(spec, j) or _crash_looped(spec, j, state.now):
        return False
    return _fresh_returns(spec, judged, j, state) is not None


def _back_since(j: Judged) -> float:
    """When its current process first passed a probe (since its unit became active): a later blip of
    one probe (below ``failure_threshold``) does not make it fresh again. Without a start time known,
    the start of its current run of passed probes."""
    unit = j.view.unit
    if unit is None or unit.active_since is None:
        return _passing_since(j)
    since_start = [p for p in j.view.probes if p.at >= unit.active_since]
    passed = [p.at for p in since_start if p.ok]
    if not passed:
        return _passing_since(j)
    if since_start[0].ok and len(since_start) == len(j.view.probes):
        # the oldest result kept passed: its first pass may be older than what is kept (the reconciler
        # keeps a few dozen results): back since its start, at the latest
        return unit.active_since
    return min(passed)


def _fresh_until(spec: ServiceSpec, judged: list[Judged], j: Judged, state: _Pass) -> float:
    """When the first of the fresh returns (``_fresh_returns``) stops being fresh: it has been back for
    ``rise_wait_s``, or its restart leaves ``gate_window_s``."""
    others = _fresh_returns(spec, judged, j, state) or []
    window = state.settings.gate_window_s
    ends = [
        min(_back_since(o) + state.settings.rise_wait_s, max(o.view.restarts, default=state.now) + window)
        for o in others
    ]
    return min(ends, default=state.now)


def _membership(spec: ServiceSpec, j: Judged, state: _Pass, stale: bool = False) -> bool:
    """Rules 2 and 7; True when the replica is out of the load balancer (or has no member) for a restart."""
    member = j.view.member
    if spec.backend is None or member is None:
        return True
    if j.health in _CANNOT_SERVE:
        if member.admin is MemberAdmin.READY:
            state.act(ActionKind.DRAIN, j, f"{j.health.value}: out of backend {spec.backend.name} (drain)")
            return False
        if member.admin is MemberAdmin.DRAIN:
            drained_at = j.view.drained_at if j.view.drained_at is not None else state.now
            due = drained_at + spec.drain_s
            if j.health in _PROCESS_GONE or member.sessions == 0 or state.now >= due:
                state.act(ActionKind.MAINT, j, f"{j.health.value}: drained, now in maintenance")
            else:
                state.wait(due)
            return False
        return True
    if j.probe_ok and member.admin is not MemberAdmin.READY:
        # Rule 7: back in when haven took it out; when someone else did, only a stateless replica
        # restarted since (a stale member); an operator's maintenance of a running replica stays.
        if j.view.held_out:
            why = "probe passed"
        elif stale and not spec.stateful:
            why = f"healthy but {member.admin.value} since before its unit was restarted (stale member)"
        else:
            return True
        state.act(ActionKind.READY, j, f"{why}: back into backend {spec.backend.name}")
    return True


def _restart(spec: ServiceSpec, j: Judged, dependency_down: bool, state: _Pass) -> bool:
    """Rule 3; True when a restart was planned."""
    if j.health is H.UNHEALTHY and dependency_down:
        return False
    policy = spec.restart
    restarts = recent(j.view.restarts, policy, state.now)
    if len(restarts) >= policy.crash_loop_max_restarts:
        return False  # _crash_loop_hold said why
    due = backoff_due(restarts, policy)
    if due is not None and state.now < due:
        state.wait(due)
        return False
    if j.health is H.FAILED:
        why = "unit failed"
    elif (until := _busy_until(spec, j)) is not None:
        if state.now < until:
            _busy_hold(spec, j, state, until, "not restarted unless it still fails then")
            return False
        why = f"{PROBE_BUSY} for {state.now - _failing_since(j):.0f} s"
    elif _hung(spec, j):
        why = PROBE_HUNG
    else:
        why = PROBE_FAILING
    state.act(ActionKind.RESTART, j, f"{why}; restart {len(restarts) + 1} within the window")
    return True


def _hung(spec: ServiceSpec, j: Judged) -> bool:
    """Its last ``failure_threshold`` probes all failed by timeout: it answers nothing (hung), as
    opposed to answering with an error or refusing connections (slow start, a paused cluster node)."""
    threshold = spec.probe.failure_threshold if spec.probe is not None else 1
    last = j.view.probes[-threshold:]
    return len(last) >= threshold and all(not p.ok and TIMED_OUT in p.detail for p in last)


def _busy(spec: ServiceSpec, j: Judged) -> bool:
    """Hung by its probes (``_hung``), yet its unit's CPU time advanced between the first and the last
    of them (and the one before, with one failure enough) by at least ``busy_cpu_share`` of the time
    between: answering late but working. A figure missing on either end: not known to be busy."""
    probe = spec.probe
    if probe is None or probe.busy_grace_s <= 0 or not _hung(spec, j):
        return False
    if _answers_balancer(spec, j):
        return True  # the load balancer's own check gets answers: late, not hung
    window = j.view.probes[-max(probe.failure_threshold, 2) :]
    first, last = window[0], window[-1]
    if first.cpu_s is None or last.cpu_s is None or last.at <= first.at:
        return False
    return last.cpu_s - first.cpu_s >= probe.busy_cpu_share * (last.at - first.at)


def _busy_until(spec: ServiceSpec, j: Judged) -> float | None:
    """When a busy replica's grace ends (``busy_grace_s`` after its first failed probe); None: not busy."""
    if spec.probe is None or not _busy(spec, j):
        return None
    return _failing_since(j) + spec.probe.busy_grace_s


def _busy_hold(spec: ServiceSpec, j: Judged, state: _Pass, until: float, what: str) -> None:
    timeout = spec.probe.timeout_s if spec.probe is not None else 0.0
    sign = "HAProxy's own check of it passes" if _answers_balancer(spec, j) else "its CPU time advances"
    reason = (
        f"{spec.name}@{j.view.host} answers no probe within {timeout:g} s but {sign} "
        f"(busy, not hung): {what} (busy until {until - state.now:.0f} s from now)"
    )
    state.holds.append(Hold(spec.name, j.view.host, "busy", reason))
    state.wait(until)


def _failing_since(j: Judged) -> float:
    """When its current run of failed probes began (the oldest one kept, when all kept failed)."""
    since = j.view.probes[-1].at
    for result in reversed(j.view.probes):
        if result.ok:
            break
        since = result.at
    return since


def _passing_since(j: Judged) -> float:
    """When its current run of passed probes began (the oldest one kept, when all kept passed; its
    unit's start when it has no probe kept)."""
    unit = j.view.unit
    since = unit.active_since if unit is not None and unit.active_since is not None else float("-inf")
    for result in reversed(j.view.probes):
        if not result.ok:
            break
        since = result.at
    return since


def _crash_loop_hold(spec: ServiceSpec, j: Judged, state: _Pass) -> None:
    """Rule 3's limit, whoever restarted it: haven, or systemd itself (Restart=, seen in NRestarts)."""
    policy = spec.restart
    restarts = recent(j.view.restarts, policy, state.now)
    if not _crash_looped(spec, j, state.now):
        return
    reason = (
        f"{spec.name} on {j.view.host} was restarted {len(restarts)} times within "
        f"{policy.crash_loop_window_s:g} s and is still {j.health.value}: haven stops restarting it and "
        "keeps it out of the load balancer (crash loop); fix it and restart it by hand, or wait for the "
        "window to pass"
    )
    state.holds.append(Hold(spec.name, j.view.host, "crash_loop", reason))
    state.wait(restarts[0] + policy.crash_loop_window_s)


def _fill(spec: ServiceSpec, judged: list[Judged], domains: Mapping[HostName, str], state: _Pass) -> bool:
    """Rule 5: start stopped replicas until min_replicas, emptiest failure domain first; True when
    replicas were missing."""
    counted = [j for j in judged if j.health in _COUNTED and not _crash_looped(spec, j, state.now)]
    missing = spec.min_replicas - len(counted)
    if missing <= 0:
        return False
    per_domain: dict[str, int] = defaultdict(int)
    for j in counted:
        per_domain[domains.get(j.view.host, j.view.host)] += 1
    candidates = [j for j in judged if j.health is H.STOPPED and not j.view.busy]
    started = 0
    while started < missing and candidates:
        if spec.spread is Spread.DOMAINS:
            candidates.sort(key=lambda j: (per_domain[domains.get(j.view.host, j.view.host)], j.view.host))
        chosen = candidates.pop(0)
        domain = domains.get(chosen.view.host, chosen.view.host)
        if _out(spec, chosen):  # else its member leaves the load balancer first (rule 2): a later pass
            state.act(
                ActionKind.START,
                chosen,
                f"{len(counted) + started} of {spec.min_replicas} replicas: start one in domain {domain}",
            )
        per_domain[domain] += 1
        started += 1
    if started < missing:
        reason = (
            f"{spec.name} has {len(counted) + started} of its {spec.min_replicas} replicas and no allowed "
            "host left to start one on"
        )
        state.holds.append(Hold(spec.name, None, "no_host", reason))
    return True


def _domain(j: Judged, domains: Mapping[HostName, str]) -> str:
    return domains.get(j.view.host, j.view.host)


def _steady(spec: ServiceSpec, judged: list[Judged]) -> bool:
    """Every replica healthy and in the load balancer, or stopped (or not deployed): nothing in flight."""
    for j in judged:
        if j.view.busy or j.health not in (H.HEALTHY, H.STOPPED, H.ABSENT):
            return False
        if j.health is H.HEALTHY and not _serving(spec, j):
            return False
    return True


def _serving(spec: ServiceSpec, j: Judged) -> bool:
    """Takes traffic: its latest probe passed and, behind a load balancer, its member is there, ready,
    and up by HAProxy's own check (a member missing, or ready but down, takes none)."""
    if not j.probe_ok:
        return False
    if spec.backend is None:
        return True
    member = j.view.member
    return member is not None and member.admin is MemberAdmin.READY and member.operational == "up"


def _respread(spec: ServiceSpec, judged: list[Judged], domains: Mapping[HostName, str], state: _Pass) -> None:
    """Rule 6, first half: a crowded domain while another has a stopped replica: start that one first."""
    if spec.spread is not Spread.DOMAINS or not _steady(spec, judged):
        return
    per_domain: dict[str, int] = defaultdict(int)
    for j in judged:
        per_domain[_domain(j, domains)] += j.health is H.HEALTHY
    crowded = max(per_domain.values(), default=0)
    room = sorted(
        (j for j in judged if j.health is H.STOPPED and per_domain[_domain(j, domains)] <= crowded - 2),
        key=lambda j: (per_domain[_domain(j, domains)], j.view.host),
    )
    if not room:
        return
    chosen = room[0]
    count = per_domain[_domain(chosen, domains)]
    most = max(per_domain, key=lambda d: (per_domain[d], d))
    if _out(spec, chosen):  # else its member leaves the load balancer first (rule 2): a later pass
        state.act(
            ActionKind.START,
            chosen,
            f"{RESPREAD}: domain {most} has {crowded} replicas while {_domain(chosen, domains)} has "
            f"{count}: start one there first, then stop one in {most}",
        )


def _surplus(
    spec: ServiceSpec,
    judged: list[Judged],
    domains: Mapping[HostName, str],
    moves: frozenset[tuple[ServiceName, HostName]],
) -> Judged | None:
    """Rule 6, second half: the replica that leaves once the one haven started elsewhere serves."""
    if spec.spread is not Spread.DOMAINS or spec.stateful:
        return None
    healthy = [j for j in judged if j.health is H.HEALTHY]
    moved = [j for j in healthy if (spec.name, j.view.host) in moves]
    if not moved or len(healthy) <= spec.min_replicas:
        return None
    if not any(_serving(spec, j) for j in moved):
        return None  # the new one is not serving yet
    if any(j.health not in (H.HEALTHY, H.STOPPED, H.ABSENT) for j in judged):
        return None  # something else is wrong: keep every serving replica
    if spec.backend is not None and any(
        not j.view.held_out and (j.view.member is None or j.view.member.admin is not MemberAdmin.READY)
        for j in healthy
    ):
        return None  # one is out of the load balancer by someone else's hand (rule 7): fewer serve
    per_domain: dict[str, list[Judged]] = defaultdict(list)
    for j in healthy:
        per_domain[_domain(j, domains)].append(j)
    crowded = [js for js in per_domain.values() if len(js) >= 2]
    if not crowded:
        return None
    most = max(crowded, key=len)
    # One already leaving goes on leaving; else the first by host name (the same every pass).
    candidates = sorted(
        (j for j in most if (spec.name, j.view.host) not in moves),
        key=lambda j: (not j.view.held_out, j.view.host),
    )
    return candidates[0] if candidates else None


def _leave(spec: ServiceSpec, j: Judged, state: _Pass) -> None:
    """The surplus replica of a re-spread: out of the load balancer (drain, maintenance), then stopped."""
    member = j.view.member
    if spec.backend is not None and member is not None:
        if member.admin is MemberAdmin.READY:
            state.act(ActionKind.DRAIN, j, f"re-spread: surplus replica leaves backend {spec.backend.name}")
            return
        if member.admin is MemberAdmin.DRAIN:
            drained_at = j.view.drained_at if j.view.drained_at is not None else state.now
            due = drained_at + spec.drain_s
            if member.sessions == 0 or state.now >= due:
                state.act(ActionKind.MAINT, j, "re-spread: drained, now in maintenance")
            else:
                state.wait(due)
            return
    state.act(ActionKind.STOP, j, "re-spread: surplus replica stopped (another domain now serves)")


def _out(spec: ServiceSpec, j: Judged) -> bool:
    member = j.view.member
    return spec.backend is None or member is None or member.admin is MemberAdmin.MAINT


def _crash_looped(spec: ServiceSpec, j: Judged, now: float) -> bool:
    restarts = recent(j.view.restarts, spec.restart, now)
    return j.health in _LOOPING and len(restarts) >= spec.restart.crash_loop_max_restarts
