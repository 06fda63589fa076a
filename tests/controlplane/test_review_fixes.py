"""Fixes from the review of the re-spread, stale-member and hung-kill rules (pure, or simulated drivers in
virtual time judged from the simulated units and balancer).

1. A re-spread ends in one stop per move: the replicas an operator runs beyond the minimum stay.
2. No replica leaves before the one started elsewhere takes traffic (member there, ready, up).
3. An operator's maintenance of a running replica is respected; a stateful one is never put back by hand.
4. SIGKILL before a restart only for a stateless replica whose probes timed out (hung).
5. An unread service's no_host hold waits a grace only.
6. An unfinished stop is not resumed blindly; systemd's own restart after haven's kill counts once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from controlplane.test_planner_respread import (
    ACTIVE,
    API,
    MAINT,
    MOVED,
    NOW,
    PASSING,
    READY,
    SETTINGS,
    STOPPED,
    acts,
    replica,
)
from controlplane.test_reconciler_sim import CONFIG, World
from haven.controlplane.alerts import root_alerts
from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.sim import SimBalancer, SimProber, SimUnit, SimUnits
from haven.controlplane.planner import PROBE_FAILING, PROBE_HUNG, RESPREAD, plan
from haven.controlplane.reconciler import NOT_RESUMED, Reconciler, killable, open_moves, unread_grace
from haven.domain.clock import VirtualClock
from haven.domain.controlplane import (
    ActionDetail,
    ActionKind,
    ActionRecord,
    ActionState,
    Controller,
    ControlPlanePlan,
    DomainName,
    MemberAdmin,
    MemberStatus,
    ProbeResult,
    ReplicaHealth,
    ReplicaView,
    ServiceName,
    ServiceSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.errors import TemporaryError
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind
from haven.store import Store

NOVA = ServiceName("nova-api")


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


def _record(
    kind: ActionKind, host: str, at: float, reason: str, state: ActionState = ActionState.DONE
) -> ActionRecord:
    return ActionRecord(
        f"{kind.value}-{host}-{at}", kind, NOVA, HostName(host), state, reason, ActionDetail(), at
    )


# ---- 1. one stop per move ---------------------------------------------------------------------------


def test_a_move_is_ended_by_the_re_spread_stop_that_follows_it() -> None:
    start = _record(ActionKind.START, "ctl-3", 100.0, f"{RESPREAD}: domain a has 3 replicas")
    stop = _record(ActionKind.STOP, "ctl-1", 130.0, "re-spread: surplus replica stopped")
    assert open_moves([start]) == {(NOVA, HostName("ctl-3"))}
    assert open_moves([start, stop]) == frozenset()
    # A stop before the move, one not resumed (its unit still ran), a stop by hand: the move stays open.
    early = dataclasses.replace(stop, created_at=90.0)
    not_resumed = dataclasses.replace(stop, state=ActionState.FAILED, error=NOT_RESUMED)
    other = dataclasses.replace(stop, reason="by hand")
    for history in ([early, start], [start, not_resumed], [start, other]):
        assert open_moves(history) == {(NOVA, HostName("ctl-3"))}, history
    # A stop that failed ends it all the same (its unit may have stopped: never a second stop).
    failed = dataclasses.replace(stop, state=ActionState.FAILED, error="StopUnit: timed out")
    assert open_moves([start, failed]) == frozenset()
    # Two moves, one stop: one is still open.
    second = _record(ActionKind.START, "ctl-5", 140.0, f"{RESPREAD}: again")
    assert open_moves([start, stop, second]) == {(NOVA, HostName("ctl-5"))}


FOUR = dataclasses.replace(
    CONFIG,
    controllers=tuple(
        Controller(HostName(h), DomainName(d))
        for h, d in (("ctl-1", "a"), ("ctl-2", "a"), ("ctl-3", "b"), ("ctl-4", "a"))
    ),
)


class _Four:
    """Domain a runs nova-api on ctl-1, ctl-2 and ctl-4 (min 2); domain b's ctl-3 is installed, stopped."""

    def __init__(self, store: Store) -> None:
        self.clock = VirtualClock()
        running = {"ctl-1", "ctl-2", "ctl-4"}
        self.hosts = {
            HostName(h): SimUnits(
                self.clock.now,
                {
                    "nova-api.service": SimUnit(
                        UnitActive.ACTIVE if h in running else UnitActive.INACTIVE, 0.0
                    )
                },
            )
            for h in ("ctl-1", "ctl-2", "ctl-3", "ctl-4")
        }
        self.lb = SimBalancer(
            {("nova_api", h): MemberAdmin.READY if h in running else MemberAdmin.MAINT for h in self.hosts}
        )
        prober = SimProber(self.clock.now, {str(h): u for h, u in self.hosts.items()})
        prober.port_units[8774] = "nova-api.service"
        self.reconciler = Reconciler(FOUR, dict(self.hosts), self.lb, prober, store, self.clock)

    def active(self) -> set[str]:
        return {h for h, u in self.hosts.items() if u.units["nova-api.service"].active is UnitActive.ACTIVE}

    async def passes(self, n: int) -> None:
        for _ in range(n):
            await self.reconciler.run_pass()
            self.clock.advance_to(self.clock.now() + 0.5)


async def test_an_operator_s_third_replica_in_a_crowded_domain_is_not_stopped_too(store: Store) -> None:
    """haven starts ctl-3, stops one of a, and stops nothing more for the rest of the move's window (it
    stopped ctl-2 as well)."""
    four = _Four(store)
    await four.passes(200)  # 100 s of passes, well within the move's 600 s window
    assert four.active() == {"ctl-2", "ctl-3", "ctl-4"}
    stops = [(a.kind, a.host) for a in store.actions_since(0) if a.kind is ActionKind.STOP]
    assert stops == [(ActionKind.STOP, "ctl-1")]


# ---- 2. the new replica must take traffic first -----------------------------------------------------


def test_nothing_leaves_while_the_new_replica_has_no_member_or_haproxy_says_it_is_down() -> None:
    base = [replica("ctl-1"), replica("ctl-2")]
    assert acts([*base, replica("ctl-3", held_out=True)], MOVED) == [("drain", "ctl-1")]  # serves: one leaves
    assert acts([*base, replica("ctl-3", member=None)], MOVED) == []
    down = MemberStatus(MemberAdmin.READY, "down")
    assert acts([*base, replica("ctl-3", held_out=True, member=down)], MOVED) == []
    # No move begins either while a healthy replica is missing from the load balancer or down there.
    stopped_b = replica("ctl-3", unit=STOPPED, member=MAINT)
    assert acts([replica("ctl-1"), replica("ctl-2", member=None), stopped_b]) == []
    assert acts([replica("ctl-1"), replica("ctl-2", member=down), stopped_b]) == []
    assert acts([replica("ctl-1"), replica("ctl-2"), stopped_b])[0][0] == "start"


# ---- 3. an operator's maintenance --------------------------------------------------------------------

DB = CATALOGUE[ServiceName("mariadb")]
DB_DOMAINS = {HostName("ctl-1"): "a", HostName("ctl-2"): "b", HostName("ctl-3"): "c"}


def _db(host: str, **kw: object) -> ReplicaView:
    domain = DomainName(DB_DOMAINS[HostName(host)])
    base = ReplicaView(DB.name, HostName(host), domain, ACTIVE, probes=PASSING, member=READY)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def test_a_stateful_member_an_operator_took_out_is_never_put_back() -> None:
    views = [_db("ctl-1"), _db("ctl-2"), _db("ctl-3", member=MAINT)]
    stale = frozenset({(DB.name, HostName("ctl-3"))})
    for marks in (frozenset(), stale):  # even once its unit was restarted
        p = plan([DB], views, DB_DOMAINS, NOW, SETTINGS, stale=marks)
        assert p.actions == (), p.actions
    # One haven took out itself goes back once healthy.
    p = plan(
        [DB],
        [_db("ctl-1"), _db("ctl-2"), _db("ctl-3", member=MAINT, held_out=True)],
        DB_DOMAINS,
        NOW,
        SETTINGS,
    )
    assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.READY, "ctl-3")]


def test_a_stateless_member_out_by_hand_returns_only_once_its_unit_was_restarted() -> None:
    views = [replica("ctl-1", member=MAINT), replica("ctl-3")]
    assert acts(views) == []
    p = plan([API], views, {HostName("ctl-1"): "a", HostName("ctl-3"): "b"}, NOW, SETTINGS,
             stale=frozenset({(NOVA, HostName("ctl-1"))}))  # fmt: skip
    assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.READY, "ctl-1")]
    assert "restarted" in p.actions[0].reason
    # During a move, a replica an operator took out (or missing from the backend): nobody leaves (fewer
    # serve than run: stopping ctl-2 would leave ctl-3 alone in the load balancer).
    for out in (MAINT, None):
        mid_move = [replica("ctl-1", member=out), replica("ctl-2"), replica("ctl-3", held_out=True)]
        assert acts(mid_move, MOVED) == [], out


async def test_the_reconciler_respects_an_operator_s_disable_until_the_unit_restarts(store: Store) -> None:
    world = World(store)
    await world.reconciler.run_pass()
    world.lb.admin[("nova_api", "ctl-1")] = MemberAdmin.MAINT  # the operator: disable server
    for _ in range(20):
        await world.reconciler.run_pass()
        world.clock.advance_to(world.clock.now() + 0.5)
    assert world.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.MAINT
    assert world.lb.changes == []
    # A new process (the operator restarted it, or systemd did): the maintenance was for the old one.
    await world.hosts[HostName("ctl-1")].restart("nova-api.service")
    await world.run_until(lambda: world.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.READY, 20)


# ---- 4. SIGKILL only for a hung stateless replica ----------------------------------------------------


def test_only_a_stateless_replica_whose_probes_timed_out_is_killed() -> None:
    timed_out = tuple(ProbeResult(False, NOW - 3 + i, "no answer within 2 s") for i in range(3))
    refused = tuple(ProbeResult(False, NOW - 3 + i, "connection refused") for i in range(3))
    mixed = (*timed_out[:2], refused[2])
    # nova_rpc's own timeout (oslo.messaging's MessagingTimeout), as the prober words it.
    rpc = tuple(ProbeResult(False, NOW - 3 + i, "conductor on ctl-1: no answer within 5 s") for i in range(3))
    domains = {HostName("ctl-1"): "a", HostName("ctl-3"): "b"}
    reasons = {}
    for name, probes in (("hung", timed_out), ("refused", refused), ("mixed", mixed), ("rpc", rpc)):
        p = plan(
            [API],
            [replica("ctl-1", member=MAINT, held_out=True, probes=probes), replica("ctl-3")],
            domains,
            NOW,
            SETTINGS,
        )
        assert [(a.kind, a.host) for a in p.actions] == [(ActionKind.RESTART, "ctl-1")], name
        reasons[name] = p.actions[0].reason
    assert reasons["hung"].startswith(PROBE_HUNG) and reasons["rpc"].startswith(PROBE_HUNG)
    assert reasons["refused"].startswith(PROBE_FAILING) and not reasons["refused"].startswith(PROBE_HUNG)
    assert not reasons["mixed"].startswith(PROBE_HUNG)
    assert killable(API, reasons["hung"])
    assert not killable(API, reasons["refused"]) and not killable(API, reasons["mixed"])
    for stateful in (DB, CATALOGUE[ServiceName("rabbitmq")]):
        assert not killable(stateful, reasons["hung"]), stateful.name


class _Killing(SimUnits):
    """Simulated systemd with KillUnit; ``auto_restart``: systemd restarts a killed unit by itself
    (Restart=on-failure) before haven's own restart arrives."""

    calls: list[str]
    auto_restart = False

    async def kill(self, unit: str) -> None:
        self.calls.append("kill")
        u = self._unit(unit)
        if self.auto_restart:
            u.n_restarts += 1
            self._run(u)
        else:
            u.active, u.hung = UnitActive.FAILED, False

    async def restart(self, unit: str) -> None:
        self.calls.append("restart")
        await super().restart(unit)


def _killing_world(store: Store, config: ControlPlaneConfig) -> tuple[World, dict[HostName, _Killing]]:
    world = World(store)
    hosts = {}
    for host, units in world.hosts.items():
        hosts[host] = _Killing(world.clock.now, units.units)
        hosts[host].calls = []
    world.hosts = dict(hosts)
    world.new_reconciler = lambda: Reconciler(  # type: ignore[method-assign]
        config, dict(world.hosts), world.lb, world.prober, world.store, world.clock
    )
    world.reconciler = world.new_reconciler()
    return world, hosts


async def test_a_hung_stateful_replica_is_restarted_gracefully_not_killed(store: Store) -> None:
    stateful = dataclasses.replace(CONFIG, services=(dataclasses.replace(CONFIG.services[0], stateful=True),))
    world, hosts = _killing_world(store, stateful)
    await world.reconciler.run_pass()
    world.unit("ctl-1").hung = True
    await world.run_until(lambda: world.unit("ctl-1").restarts_by_haven == 1, 30)
    assert hosts[HostName("ctl-1")].calls == ["restart"]


# ---- 5. the unread grace -----------------------------------------------------------------------------


def test_an_unread_service_s_hold_waits_a_grace_only() -> None:
    specs = [CATALOGUE[ServiceName("keystone")], CATALOGUE[ServiceName("nova-api")]]
    H = ReplicaHealth
    health = (
        (ServiceName("keystone"), HostName("ctl-1"), H.UNKNOWN),
        (ServiceName("keystone"), HostName("ctl-2"), H.HEALTHY),
        (ServiceName("nova-api"), HostName("ctl-1"), H.HEALTHY),
        (ServiceName("nova-api"), HostName("ctl-2"), H.HEALTHY),
    )
    from haven.domain.controlplane import Hold

    hold = Hold(ServiceName("keystone"), None, "no_host", "keystone has 1 of its 2 replicas and no host")
    p = ControlPlanePlan((), (hold,), health, None)
    since: dict[ServiceName, float] = {}
    keystone = {ServiceName("keystone")}
    assert unread_grace(since, keystone, 100.0, 10.0) == keystone
    assert root_alerts(p, {s.name: s for s in specs}, keystone) == []
    assert unread_grace(since, keystone, 105.0, 10.0) == keystone
    assert unread_grace(since, keystone, 110.0, 10.0) == set()  # unread 10 s: the hold is raised
    alerts = root_alerts(p, {s.name: s for s in specs}, set())
    assert [(a.kind, a.subject) for a in alerts] == [(AlertKind.SERVICE_HOLD, "keystone")]
    assert unread_grace(since, set(), 111.0, 10.0) == set() and since == {}  # read again: reset
    assert unread_grace(since, keystone, 112.0, 10.0) == keystone


# ---- 6. an unfinished stop; systemd's restart after haven's kill ---------------------------------


async def test_an_unfinished_stop_is_not_resumed_blindly(store: Store) -> None:
    """An engine issued a re-spread stop of ctl-1 and died; nothing moved serves now: ctl-1 keeps running."""
    world = World(store)
    stop = _record(ActionKind.STOP, "ctl-1", 0.0, "re-spread: surplus replica stopped", ActionState.ISSUED)
    store.issue_action(stop, epoch=None)
    for _ in range(5):
        await world.reconciler.run_pass()
        world.clock.advance_to(world.clock.now() + 0.5)
    assert world.unit("ctl-1").active is UnitActive.ACTIVE and world.unit("ctl-1").starts_by_haven == 0
    (finished,) = [a for a in store.actions_since(0) if a.id == stop.id]
    assert finished.state is ActionState.FAILED and "not resumed" in finished.error


async def test_an_unfinished_stop_whose_unit_already_stopped_ends_its_move(store: Store) -> None:
    """The engine died after StopUnit, before recording it: the stop happened; no second replica leaves."""
    four = _Four(store)
    for _ in range(100):
        if four.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.MAINT:
            break
        await four.passes(1)
    assert four.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.MAINT and "ctl-3" in four.active()
    four.hosts[HostName("ctl-1")].units["nova-api.service"].active = UnitActive.INACTIVE  # StopUnit went out
    stop = _record(ActionKind.STOP, "ctl-1", four.clock.now(), "re-spread: surplus", ActionState.ISSUED)
    store.issue_action(stop, epoch=None)
    await four.passes(100)
    (finished,) = [a for a in store.actions_since(0) if a.id == stop.id]
    assert finished.state is ActionState.DONE
    assert four.active() == {"ctl-2", "ctl-3", "ctl-4"}
    assert [a.host for a in store.actions_since(0) if a.kind is ActionKind.STOP] == ["ctl-1"]


async def test_systemd_s_own_restart_after_haven_s_kill_counts_once(store: Store) -> None:
    world, hosts = _killing_world(store, CONFIG)
    hosts[HostName("ctl-1")].auto_restart = True
    await world.reconciler.run_pass()
    world.unit("ctl-1").hung = True
    await world.run_until(lambda: world.unit("ctl-1").restarts_by_haven == 1, 30)
    assert hosts[HostName("ctl-1")].calls == ["kill", "restart"]
    assert world.unit("ctl-1").n_restarts == 1  # systemd did restart it once by itself
    for _ in range(6):
        await world.reconciler.run_pass()
        world.clock.advance_to(world.clock.now() + 0.5)
    kinds = [a.kind for a in store.actions_since(0) if a.host == "ctl-1"]
    assert kinds.count(ActionKind.RESTART) == 1 and ActionKind.SEEN_RESTART not in kinds


class _PartlyUnread(SimUnits):
    """ctl-1's systemd answers for every unit but nova-api's (a controller read partly, pass after pass)."""

    async def status(self, unit: str) -> UnitStatus:
        if unit == "nova-api.service":
            raise TemporaryError("simulated: no answer for this unit")
        return await super().status(unit)


async def test_the_reconciler_raises_an_unread_service_s_hold_after_the_grace(store: Store) -> None:
    other = ServiceSpec(ServiceName("glance-api"), "glance-api.service", 1)
    config = dataclasses.replace(CONFIG, services=(*CONFIG.services, other))
    world = World(store)
    world.hosts[HostName("ctl-3")].units.clear()  # nova-api not deployed there: no host to start one on
    ctl1 = world.hosts[HostName("ctl-1")]
    units = {**ctl1.units, "glance-api.service": SimUnit(UnitActive.ACTIVE, 0.0)}
    world.hosts[HostName("ctl-1")] = _PartlyUnread(world.clock.now, units)
    reconciler = Reconciler(config, dict(world.hosts), world.lb, world.prober, store, world.clock)

    def holds() -> list[str]:
        return [a.host or "" for a in store.list_alerts() if a.kind is AlertKind.SERVICE_HOLD]

    start = world.clock.now()
    await reconciler.run_pass()
    assert holds() == []
    while world.clock.now() - start < 9.0:  # within the grace: unknown is not down
        world.clock.advance_to(world.clock.now() + 0.5)
        await reconciler.run_pass()
        assert holds() == [], world.clock.now() - start
    for _ in range(4):
        world.clock.advance_to(world.clock.now() + 0.5)
        await reconciler.run_pass()
    assert holds() == ["nova-api"]
    assert not [a for a in store.list_alerts() if a.kind is AlertKind.CONTROLLER_DOWN]
