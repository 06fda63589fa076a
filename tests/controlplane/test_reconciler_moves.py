"""The reconciler's re-spread (through its records: another engine finishes a move) and its hard kill of
a hung replica, on simulated drivers in virtual time, judged from the simulated units and balancer."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from controlplane.test_reconciler_sim import CONFIG, World
from haven.controlplane.drivers.sim import SimUnits
from haven.controlplane.reconciler import Reconciler
from haven.domain.controlplane import ActionKind, Controller, DomainName, MemberAdmin, UnitActive
from haven.domain.ids import HostName
from haven.store import Store

# ctl-1 and ctl-2 share rack-a, ctl-3 alone in rack-b.
RACKS = dataclasses.replace(
    CONFIG,
    controllers=tuple(
        Controller(HostName(h), DomainName(d)) for h, d in (("ctl-1", "a"), ("ctl-2", "a"), ("ctl-3", "b"))
    ),
)


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


class KillingUnits(SimUnits):
    """Simulated units that can be killed (systemd's KillUnit); every call in order."""

    calls: list[str]

    async def kill(self, unit: str) -> None:
        self.calls.append("kill")
        u = self._unit(unit)
        u.active, u.hung = UnitActive.FAILED, False

    async def restart(self, unit: str) -> None:
        self.calls.append("restart")
        await super().restart(unit)


def _killing(world: World) -> dict[HostName, KillingUnits]:
    hosts = {}
    for host, units in world.hosts.items():
        killing = KillingUnits(world.clock.now, units.units)
        killing.calls = []
        hosts[host] = killing
    world.hosts = dict(hosts)  # the same simulated units (the prober reads them): killable now
    world.reconciler = world.new_reconciler()
    return hosts


async def test_a_hung_replica_is_killed_then_restarted_a_failed_one_only_restarted(store: Store) -> None:
    world = World(store)
    hosts = _killing(world)
    await world.reconciler.run_pass()
    world.unit("ctl-1").hung = True
    await world.run_until(lambda: world.unit("ctl-1").restarts_by_haven == 1, 30)
    assert hosts[HostName("ctl-1")].calls == ["kill", "restart"]
    await world.run_until(lambda: world.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.READY, 30)
    world.unit("ctl-2").active = UnitActive.FAILED  # dead already: nothing to kill
    await world.run_until(lambda: world.unit("ctl-2").restarts_by_haven == 1, 30)
    assert hosts[HostName("ctl-2")].calls == ["restart"]


async def test_a_re_spread_begun_by_one_engine_is_finished_by_the_next(store: Store) -> None:
    world = World(store)
    world.new_reconciler = lambda: Reconciler(  # type: ignore[method-assign]
        RACKS, dict(world.hosts), world.lb, world.prober, world.store, world.clock
    )
    world.reconciler = world.new_reconciler()
    await world.run_until(lambda: world.unit("ctl-3").starts_by_haven == 1, 20)
    assert world.unit("ctl-1").active is UnitActive.ACTIVE and world.unit("ctl-2").active is UnitActive.ACTIVE
    world.reconciler = world.new_reconciler()  # a new term: the move is read back from the store
    await world.run_until(lambda: world.unit("ctl-1").active is UnitActive.INACTIVE, 30)
    assert world.lb.admin == {
        ("nova_api", "ctl-1"): MemberAdmin.MAINT,
        ("nova_api", "ctl-2"): MemberAdmin.READY,
        ("nova_api", "ctl-3"): MemberAdmin.READY,
    }
    changes = [(s, a) for _, s, a in world.lb.changes]
    # ctl-3 served before ctl-1 left; ctl-2 never touched.
    assert changes.index(("ctl-3", MemberAdmin.READY)) < changes.index(("ctl-1", MemberAdmin.DRAIN))
    assert all(s != "ctl-2" for s, _ in changes)
    kinds = [(a.kind, a.host) for a in store.actions_since(0)]
    assert kinds.count((ActionKind.STOP, "ctl-1")) == 1
    for _ in range(10):  # settled: nothing more
        await world.reconciler.run_pass()
        world.clock.advance_to(world.clock.now() + 1)
    assert [(a.kind, a.host) for a in store.actions_since(0)] == kinds
