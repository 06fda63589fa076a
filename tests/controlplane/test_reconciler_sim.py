"""The reconciler on simulated drivers in virtual time: judged from the simulated world's own state."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator

import pytest

from haven.controlplane import reconciler as reconciler_module
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.sim import SimBalancer, SimProber, SimUnit, SimUnits
from haven.controlplane.reconciler import Reconciler
from haven.domain.clock import VirtualClock
from haven.domain.controlplane import (
    ActionDetail,
    ActionKind,
    ActionRecord,
    ActionState,
    Backend,
    Controller,
    ControlPlaneSettings,
    DomainName,
    MemberAdmin,
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    RestartPolicy,
    ServiceName,
    ServiceSpec,
    UnitActive,
)
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind
from haven.store import Store

API = ServiceSpec(
    ServiceName("nova-api"),
    "nova-api.service",
    2,
    probe=ProbeSpec(ProbeKind.HTTP, 8774, period_s=1.0, failure_threshold=2, startup_grace_s=30.0),
    backend=Backend("nova_api"),
    restart=RestartPolicy(
        backoff_initial_s=2.0, backoff_factor=2.0, backoff_max_s=60.0, crash_loop_max_restarts=4
    ),
)
HOSTS = [HostName("ctl-1"), HostName("ctl-2"), HostName("ctl-3")]
CONFIG = ControlPlaneConfig(
    ControlPlaneSettings(pass_interval_s=0.5),
    tuple(Controller(h, DomainName(f"rack-{h[-1]}")) for h in HOSTS),
    (API,),
)


class World:
    def __init__(
        self, store: Store, running: tuple[HostName, ...] = (HostName("ctl-1"), HostName("ctl-2"))
    ) -> None:
        self.clock = VirtualClock()
        self.hosts = {
            h: SimUnits(
                self.clock.now,
                {
                    "nova-api.service": SimUnit(
                        UnitActive.ACTIVE if h in running else UnitActive.INACTIVE, 0.0
                    )
                },
            )
            for h in HOSTS
        }
        self.lb = SimBalancer(
            {("nova_api", h): MemberAdmin.READY if h in running else MemberAdmin.MAINT for h in HOSTS}
        )
        self.prober = SimProber(self.clock.now, self.hosts)
        self.prober.port_units[8774] = "nova-api.service"
        self.store = store
        self.reconciler = self.new_reconciler()

    def new_reconciler(self) -> Reconciler:
        return Reconciler(CONFIG, dict(self.hosts), self.lb, self.prober, self.store, self.clock)

    def unit(self, host: str) -> SimUnit:
        return self.hosts[HostName(host)].units["nova-api.service"]

    async def run_until(self, done: Callable[[], bool], limit_s: float) -> float:
        start = self.clock.now()
        while not done():
            assert self.clock.now() - start < limit_s, f"not done within {limit_s} s"
            result = await self.reconciler.run_pass()
            due = self.clock.now() + CONFIG.settings.pass_interval_s
            self.clock.advance_to(min(due, result.recheck_at or due))
        return self.clock.now() - start


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open("sqlite://") as opened:
        yield opened


async def test_a_killed_replica_leaves_the_lb_is_restarted_and_returns_after_its_probe(store: Store) -> None:
    world = World(store)
    await world.run_until(lambda: True, 1)
    await world.reconciler.run_pass()  # a first pass with everything healthy: nothing to do
    assert world.lb.changes == []
    world.unit("ctl-1").active = UnitActive.FAILED
    took = await world.run_until(
        lambda: (
            world.unit("ctl-1").restarts_by_haven == 1
            and world.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.READY
        ),
        30,
    )
    assert [(s, a) for _, s, a in world.lb.changes] == [
        ("ctl-1", MemberAdmin.DRAIN),
        ("ctl-1", MemberAdmin.MAINT),
        ("ctl-1", MemberAdmin.READY),
    ]
    assert world.unit("ctl-1").restarts_by_haven == 1 and world.unit("ctl-2").restarts_by_haven == 0
    assert took <= 5.0  # the simulated service serves 2 s after its start
    assert all(a.state is ActionState.DONE for a in store.actions_since(0))


async def test_a_crash_loop_backs_off_exponentially_then_stops_with_one_alert(store: Store) -> None:
    world = World(store)
    world.unit("ctl-1").crashes_on_start = True
    world.unit("ctl-1").active = UnitActive.FAILED
    await world.run_until(
        lambda: any(a.kind is AlertKind.REPLICA_CRASH_LOOP for a in store.list_alerts()), 120
    )
    restarts = [a.created_at for a in store.actions_since(0) if a.kind is ActionKind.RESTART]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(restarts)]
    assert len(restarts) == 4 and world.unit("ctl-1").restarts_by_haven == 4
    assert gaps == [2.0, 4.0, 8.0]
    world.clock.advance_to(restarts[-1] + 100)
    await world.run_until(lambda: world.clock.now() >= restarts[-1] + 110, 20)
    assert world.unit("ctl-1").restarts_by_haven == 4  # it stopped trying
    assert world.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.MAINT  # and it never returned
    alerts = [a for a in store.list_alerts() if a.kind is AlertKind.REPLICA_CRASH_LOOP]
    assert [a.host for a in alerts] == ["nova-api@ctl-1"] and "crash loop" in alerts[0].message
    # Meanwhile the service kept its two replicas: one was started in the third rack.
    assert world.unit("ctl-3").starts_by_haven == 1
    assert world.lb.admin[("nova_api", "ctl-3")] is MemberAdmin.READY
    # Fixed by someone, and the window over: haven tries once more, it serves again, the alert clears.
    world.unit("ctl-1").crashes_on_start = False
    world.clock.advance_to(restarts[0] + API.restart.crash_loop_window_s - 1)
    await world.reconciler.run_pass()
    assert world.unit("ctl-1").restarts_by_haven == 4  # not before the window is over
    await world.run_until(lambda: world.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.READY, 10)
    assert world.unit("ctl-1").restarts_by_haven == 5
    await world.reconciler.run_pass()
    assert not [a for a in store.list_alerts() if a.kind is AlertKind.REPLICA_CRASH_LOOP]


async def test_a_restart_issued_before_a_crash_is_not_made_twice(store: Store) -> None:
    world = World(store)
    unit = world.unit("ctl-1")
    unit.active = UnitActive.FAILED
    world.lb.admin[("nova_api", "ctl-1")] = MemberAdmin.MAINT
    before = str(unit.invocation)
    # The previous engine committed the intent, made the restart, and died before the outcome.
    store.issue_action(
        ActionRecord(
            "r1",
            ActionKind.RESTART,
            API.name,
            HostName("ctl-1"),
            ActionState.ISSUED,
            "unit failed",
            ActionDetail(invocation_id=before, backend="nova_api"),
            world.clock.now(),
        )
    )
    await world.hosts[HostName("ctl-1")].restart("nova-api.service")
    world.reconciler = world.new_reconciler()
    await world.reconciler.run_pass()
    assert unit.restarts_by_haven == 1  # the resumed action saw the new InvocationID: no second restart
    assert [(a.id, a.state) for a in store.actions_since(0) if a.kind is ActionKind.RESTART] == [
        ("r1", ActionState.DONE)
    ]


async def test_an_unreachable_host_is_replaced_in_another_domain(store: Store) -> None:
    world = World(store)
    world.hosts[HostName("ctl-2")].reachable = False
    await world.run_until(lambda: world.lb.admin[("nova_api", "ctl-3")] is MemberAdmin.READY, 20)
    assert world.unit("ctl-3").starts_by_haven == 1
    assert world.lb.admin[("nova_api", "ctl-2")] is MemberAdmin.MAINT  # its stale member was taken out


async def test_a_driver_bug_on_one_host_leaves_the_others_reconciled(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    world = World(store)

    async def broken(unit: str) -> object:
        raise RuntimeError("a bug in a driver")

    world.hosts[HostName("ctl-2")].status = broken  # type: ignore[method-assign, assignment]
    world.unit("ctl-1").active = UnitActive.FAILED
    await world.run_until(lambda: world.unit("ctl-1").restarts_by_haven == 1, 10)
    assert "systemd on ctl-2 unreadable" in caplog.text


async def test_a_host_clock_behind_havens_does_not_shorten_the_start_up_grace(store: Store) -> None:
    world = World(store)
    world.prober = SimProber(world.clock.now, world.hosts, start_s=10.0)  # a slow start: 10 s
    world.prober.port_units[8774] = "nova-api.service"
    world.reconciler = world.new_reconciler()
    world.hosts[HostName("ctl-1")].clock_offset_s = -100.0  # its systemd's times are 100 s behind
    await world.reconciler.run_pass()
    world.unit("ctl-1").active = UnitActive.FAILED
    unit = world.unit("ctl-1")
    await world.run_until(
        lambda: unit.restarts_by_haven > 0 and world.lb.admin[("nova_api", "ctl-1")] is MemberAdmin.READY, 30
    )
    assert unit.restarts_by_haven == 1  # its 10 s start was within the 30 s grace: not killed


class _LateOn(SimProber):
    """The simulated prober, but a probe of ``slow`` takes ``delay_s`` (real time) to give its result:
    a hung replica's probe running to its timeout, a nova_rpc ping's 3 s."""

    def __init__(self, inner: SimProber, slow: str, delay_s: float) -> None:
        self._inner, self._slow, self._delay_s = inner, slow, delay_s

    async def probe(self, address: str, spec: ProbeSpec, host: str = "") -> ProbeResult:
        if address == self._slow:
            await asyncio.sleep(self._delay_s)
        return await self._inner.probe(address, spec, host)


async def test_a_killed_replica_leaves_the_lb_at_the_next_pass_whatever_another_probe_waits(
    store: Store,
) -> None:
    world = World(store)
    await world.reconciler.run_pass()  # everything healthy
    late = _LateOn(world.prober, "ctl-2", 3.0)
    world.reconciler = Reconciler(CONFIG, dict(world.hosts), world.lb, late, store, world.clock)
    world.unit("ctl-1").active = UnitActive.FAILED  # kill -9; systemd restarts it within RestartSec
    started = time.monotonic()
    await world.reconciler.run_pass()
    took = time.monotonic() - started
    assert [(s, a) for _, s, a in world.lb.changes] == [("ctl-1", MemberAdmin.DRAIN)]
    assert took < 1.5, took  # the pass waited PROBE_WAIT_S for ctl-2's probe, not its 3 s
    world.clock.advance_to(world.clock.now() + 0.5)
    await asyncio.sleep(3.0)
    await world.reconciler.run_pass()  # ctl-2's late result is read now (passing: nothing to do)
    assert world.lb.admin[("nova_api", "ctl-2")] is MemberAdmin.READY
    await world.reconciler.aclose()


class _Never(SimProber):
    """A probe of ``slow`` that never returns (a hung replica whose client sets no timeout)."""

    def __init__(self, inner: SimProber, slow: str) -> None:
        self._inner, self._slow = inner, slow
        self.started = 0

    async def probe(self, address: str, spec: ProbeSpec, host: str = "") -> ProbeResult:
        if address == self._slow:
            self.started += 1
            await asyncio.Event().wait()
        return await self._inner.probe(address, spec, host)


async def test_the_probe_wait_is_on_the_injected_clock_not_real_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R2: a pass waits for its probes PROBE_WAIT_S on the reconciler's clock. On a VirtualClock that is
    virtual time: the pass goes on at once, the clock PROBE_WAIT_S later; a probe that answers at once
    (the simulated ones) is read by the same pass without moving the clock."""
    monkeypatch.setattr(reconciler_module, "PROBE_WAIT_S", 20.0)  # real time would be plain to see
    world = World(store)
    never = _Never(world.prober, "ctl-2")
    world.reconciler = Reconciler(CONFIG, dict(world.hosts), world.lb, never, store, world.clock)
    before, started = world.clock.now(), time.monotonic()
    await world.reconciler.run_pass()
    took = time.monotonic() - started
    assert took < 10.0, took  # not the 20 s of PROBE_WAIT_S
    assert never.started == 1 and world.clock.now() == before + 20.0
    assert _probed(store) == {"ctl-1": "200", "ctl-2": "", "ctl-3": ""}  # ctl-2's probe still under way
    # All probes answering at once: read by the pass, the virtual clock does not move for them
    world.reconciler = Reconciler(CONFIG, dict(world.hosts), world.lb, world.prober, store, world.clock)
    before = world.clock.now()
    await world.reconciler.run_pass()
    assert world.clock.now() == before
    assert _probed(store) == {"ctl-1": "200", "ctl-2": "200", "ctl-3": ""}
    await world.reconciler.aclose()


def _probed(store: Store) -> dict[str, str]:
    """Each replica's latest probe result as the pass recorded it ("": none read)."""
    return {str(r.host): r.probe for r in store.list_replicas()}
