"""A recovery survives the engine dying at any step boundary: a new engine on the same store finishes it.

The issue asks: "stop the engine at every step boundary of a recovery (cancel the task, then start a new
engine on the same store) and show that the recovery still finishes with no VM lost and none evacuated
twice." Two ways of stopping it are tested:

- At every commit boundary (the executor's ``on_commit`` hook, called just before and just after each of
  its commits: intent, outcome, finish) engine #1 raises ``Crash``, a BaseException nothing in haven
  catches, exactly as if the process died there: a "before-*" crash loses the commit, an "after-*" crash
  keeps it but loses everything the engine had in memory. Store calls are synchronous, so these are the
  only places where the store's state and the engine's memory can part ways; effects on the cloud happen
  between an intent and its outcome, which is why "before-outcome" (effect done, not recorded) is the
  case that matters most.
- At every suspension point: the cloud and the BMCs are wrapped so that each call awaits before and after
  reaching the simulated cloud, and at the n-th of those awaits the engine's asyncio task is cancelled.
  The CancelledError lands exactly there, in the middle of a step handler or a batch of evacuations run
  by asyncio.gather (all of them are cancelled together), which is what `haven serve` does on Ctrl-C.

In both, the simulated cloud is the same object before and after (the cloud survives, the engine process
does not), and engine #2 opens the store again from its URL, as a restarted process would.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import pytest

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.cloud import Host, Server, ServerAction, ServerGroup, VmState
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import NotificationStatus, NotificationType, StepState
from haven.domain.liveness import BmcPower, HostLiveness
from haven.recovery.executor import CommitHook
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store
from store.postgres_server import SESSION_DATABASE, PostgresServer

# Four hosts of four VMs, all HA: the victim has four HA VMs to evacuate (one batch of parallel steps).
SPEC = CloudSpec(hosts=4, vms=16, zones=1, ha_fraction=1.0, seed=3)
WARM_UP_S = 5.0
GIVE_UP_S = 600.0
T = TypeVar("T")


class Crash(BaseException):
    """The engine process dies here (a BaseException, so no `except Exception` in haven can swallow it)."""


def crash_on_call(k: int, seen: list[str]) -> CommitHook:
    """A CommitHook that raises Crash on its k-th call (1-based), recording every call until then.

    The process is dead from then on: steps that ran side by side with the one that crashed (the
    evacuations of one batch) crash at their own next commit too, and nothing after it is recorded.
    """

    def hook(where: str) -> None:
        if len(seen) >= k:
            raise Crash(f"after the crash at call {k}: {where}")
        seen.append(where)
        if len(seen) == k:
            raise Crash(f"call {k}: {where}")

    return hook


# ---- the fault ----------------------------------------------------------------------------------


def lose_power(cloud: SimCloud, victim: HostName) -> None:
    cloud.fail_power(victim)


def fall_silent_while_powered(cloud: SimCloud, victim: HostName) -> None:
    """Every channel goes silent but the host runs on: only a confirmed fence makes evacuating safe."""
    cloud.sim_host(victim).second_up = False
    cloud.partition_management(victim)


FAULTS: dict[str, Callable[[SimCloud, HostName], None]] = {
    "power-loss": lose_power,
    "silent-but-powered": fall_silent_while_powered,
}


# ---- stores -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fresh_store_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[], str]]:
    """A factory of URLs of empty stores: SQLite files, or fresh schemas on the session's PostgreSQL."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("resume")
        counter = itertools.count()
        yield lambda: f"sqlite:///{folder}/haven-{next(counter)}.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    request.getfixturevalue("postgres_url")  # creates the session database
    schemas: list[str] = []

    def make() -> str:
        schemas.append(server.create_schema(SESSION_DATABASE))
        return server.url_for(SESSION_DATABASE, schemas[-1])

    yield make
    for schema in schemas:
        server.drop_schema(SESSION_DATABASE, schema)


# ---- one run --------------------------------------------------------------------------------------


@dataclass
class World:
    clock: VirtualClock
    cloud: SimCloud
    victim: HostName
    ha_vms: list[ServerId]
    url: str


async def prepare(url: str, fault: str) -> World:
    clock = VirtualClock()
    cloud, _ = build_cloud(SPEC, clock)
    with Store.open(url) as store:
        segments_per_zone(store, await cloud.list_hosts())
    victim = cloud.host_names()[1]
    ha_vms = [s.id for s in await cloud.list_servers(victim) if s.ha_enabled]
    return World(clock, cloud, victim, ha_vms, url)


def recovery_over(engine: Engine, store: Store) -> Callable[[], bool]:
    return lambda: bool(store.list_notifications()) and not engine.open_notifications()


async def run_first_engine(world: World, fault: str, *, on_commit: CommitHook) -> None:
    """Engine #1: warm up, inject the fault, run until the recovery is over (or the engine dies)."""
    store = Store.open(world.url)
    try:
        engine = Engine(
            world.cloud, world.cloud, SimFencer(world.cloud), store, world.clock, on_commit=on_commit
        )
        engine.start()
        wake = [world.cloud.next_event_time]
        await run_until(engine, world.clock, world.clock.now() + WARM_UP_S, wake_sources=wake)
        FAULTS[fault](world.cloud, world.victim)
        await run_until(
            engine,
            world.clock,
            world.clock.now() + GIVE_UP_S,
            done=recovery_over(engine, store),
            wake_sources=wake,
        )
    finally:
        store.close()


async def restart_and_finish(world: World) -> list[str]:
    """Engine #2 on the same store and the same cloud: run to the end, then report what is wrong."""
    with Store.open(world.url) as store:
        engine = Engine(world.cloud, world.cloud, SimFencer(world.cloud), store, world.clock)
        engine.start()
        wake = [world.cloud.next_event_time]
        await run_until(
            engine,
            world.clock,
            world.clock.now() + GIVE_UP_S,
            done=recovery_over(engine, store),
            wake_sources=wake,
        )
        # Keep watching a while: nothing more may happen (no second notification, no late evacuation).
        await run_until(engine, world.clock, world.clock.now() + 30.0, wake_sources=wake)
        return await problems(world, engine, store)


async def problems(world: World, engine: Engine, store: Store) -> list[str]:
    cloud, found = world.cloud, []
    notifications = store.list_notifications()
    host_notes = [n for n in notifications if n.type is NotificationType.COMPUTE_HOST]
    if [(n.hostname, n.status) for n in host_notes] != [(world.victim, NotificationStatus.FINISHED)]:
        found.append(f"notifications: {[(n.hostname, n.type.value, n.status.value) for n in notifications]}")
    for n in host_notes:
        bad = [
            (s.kind, s.subject, s.state.value, s.detail.get("error"))
            for s in store.list_steps(n.id)
            if s.state is not StepState.DONE
        ]
        if bad:
            found.append(f"steps not done: {bad}")
    if engine.open_notifications():
        found.append("the engine still has open notifications")
    for sid in world.ha_vms:
        running = cloud.hosts_running(sid)
        server = await cloud.get_server(sid)
        if len(running) != 1:
            found.append(f"{sid} runs on {sorted(running)}")
        elif (host := next(iter(running))) == world.victim or not cloud.is_powered(host):
            found.append(f"{sid} runs on {host}, which is not a healthy host")
        elif server.host != host or not server.is_running:
            found.append(f"{sid}: Nova says {server.host} {server.vm_state.value}, truth says {host}")
        if cloud.evacuation_count(sid) > 1:
            found.append(f"{sid} evacuated {cloud.evacuation_count(sid)} times")
    if cloud.servers_running_twice():
        found.append(f"running twice: {cloud.servers_running_twice()}")
    for e in cloud.evacuations:
        if e.source_powered:
            found.append(f"{e.server_id} evacuated from {e.source} while it still had power")
        if e.source != world.victim:
            found.append(f"{e.server_id} evacuated from {e.source}, which did not fail")
    if cloud.is_powered(world.victim):
        found.append(f"{world.victim} is still powered on")
    return found


# ---- crash at every commit boundary --------------------------------------------------------------


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_recovery_finishes_after_a_crash_at_every_commit_boundary(
    fresh_store_url: Callable[[], str], fault: str
) -> None:
    # The undisturbed run: how many commit-hook calls a whole recovery makes.
    world = await prepare(fresh_store_url(), fault)
    assert len(world.ha_vms) >= 3
    calls: list[str] = []
    await run_first_engine(world, fault, on_commit=calls.append)
    assert await restart_and_finish(world) == []  # the harness itself finds nothing wrong with it
    total = len(calls)
    assert total >= 20
    assert {
        "before-intent",
        "after-intent",
        "before-outcome",
        "after-outcome",
        "before-finish",
        "after-finish",
    } <= set(calls)

    failures: dict[str, list[str]] = {}
    for k in range(1, total + 1):
        world = await prepare(fresh_store_url(), fault)
        seen: list[str] = []
        with pytest.raises(Crash):
            await run_first_engine(world, fault, on_commit=crash_on_call(k, seen))
        assert seen == calls[:k]  # deterministic: the same boundary as in the undisturbed run
        found = await restart_and_finish(world)
        if found:
            failures[f"crash at call {k} ({calls[k - 1]})"] = found
    assert failures == {}


# ---- cancel at every suspension point -------------------------------------------------------------


class Interrupter:
    """Counts suspension points once armed; at the ``cancel_at``-th it cancels the engine's task."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.cancel_at = cancel_at
        self.armed = False
        self.points = 0
        self.task: asyncio.Task[None] | None = None

    async def around(self, call: Callable[[], Awaitable[T]]) -> T:
        """A suspension point before and after the call, as a real driver (HTTP, thread pool) has."""
        await self._point()
        result = await call()
        await self._point()
        return result

    async def _point(self) -> None:
        if self.armed:
            self.points += 1
            if self.points == self.cancel_at:
                assert self.task is not None
                self.task.cancel()
        await asyncio.sleep(0)  # where the CancelledError is delivered


class YieldingCloud:
    """The simulated cloud (Cloud and LivenessSource), suspending around every call."""

    def __init__(self, cloud: SimCloud, stop: Interrupter) -> None:
        self._cloud, self._around = cloud, stop.around

    async def list_hosts(self) -> Sequence[Host]:
        return await self._around(lambda: self._cloud.list_hosts())

    async def get_host(self, name: HostName) -> Host:
        return await self._around(lambda: self._cloud.get_host(name))

    async def list_servers(self, host: HostName | None = None, *, groups: bool = True) -> Sequence[Server]:
        return await self._around(lambda: self._cloud.list_servers(host, groups=groups))

    async def get_server(self, server_id: ServerId) -> Server:
        return await self._around(lambda: self._cloud.get_server(server_id))

    async def list_server_groups(self) -> Sequence[ServerGroup]:
        return await self._around(lambda: self._cloud.list_server_groups())

    async def force_down(self, host: HostName, down: bool) -> None:
        await self._around(lambda: self._cloud.force_down(host, down))

    async def disable_service(self, host: HostName, reason: str) -> None:
        await self._around(lambda: self._cloud.disable_service(host, reason))

    async def enable_service(self, host: HostName) -> None:
        await self._around(lambda: self._cloud.enable_service(host))

    async def evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        await self._around(lambda: self._cloud.evacuate(server_id, target))

    async def reset_state(self, server_id: ServerId, state: VmState) -> None:
        await self._around(lambda: self._cloud.reset_state(server_id, state))

    async def server_actions(self, server_id: ServerId, since: float) -> Sequence[ServerAction]:
        return await self._around(lambda: self._cloud.server_actions(server_id, since))

    async def liveness_anomalies(self) -> Sequence[HostLiveness]:
        return await self._around(lambda: self._cloud.liveness_anomalies())


class YieldingFencer:
    """SimFencer, suspending around every BMC call."""

    def __init__(self, cloud: SimCloud, stop: Interrupter) -> None:
        self._fencer, self._around = SimFencer(cloud), stop.around

    async def power_off(self, host: HostName) -> None:
        await self._around(lambda: self._fencer.power_off(host))

    async def power_on(self, host: HostName) -> None:
        await self._around(lambda: self._fencer.power_on(host))

    async def power_status(self, host: HostName) -> BmcPower:
        return await self._around(lambda: self._fencer.power_status(host))


async def run_first_engine_as_task(world: World, fault: str, stop: Interrupter) -> bool:
    """Engine #1 over yielding drivers, the recovery run as a task; True if ``stop`` cancelled it."""
    store = Store.open(world.url)
    try:
        cloud = YieldingCloud(world.cloud, stop)
        engine = Engine(cloud, cloud, YieldingFencer(world.cloud, stop), store, world.clock)
        engine.start()
        wake = [world.cloud.next_event_time]
        await run_until(engine, world.clock, world.clock.now() + WARM_UP_S, wake_sources=wake)
        FAULTS[fault](world.cloud, world.victim)
        stop.armed = True
        stop.task = asyncio.create_task(
            run_until(
                engine,
                world.clock,
                world.clock.now() + GIVE_UP_S,
                done=recovery_over(engine, store),
                wake_sources=wake,
            )
        )
        await asyncio.wait([stop.task])
        # Nothing of engine #1 may live on: the evacuations it ran side by side were cancelled with it.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        if not stop.task.cancelled():
            stop.task.result()  # re-raise anything else
        return stop.task.cancelled()
    finally:
        store.close()


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_recovery_finishes_after_cancellation_at_every_suspension_point(
    tmp_path_factory: pytest.TempPathFactory, fault: str
) -> None:
    folder = tmp_path_factory.mktemp("cancel")
    urls = (f"sqlite:///{folder}/haven-{n}.db" for n in itertools.count())
    world = await prepare(next(urls), fault)
    counting = Interrupter()
    assert not await run_first_engine_as_task(world, fault, counting)
    assert await restart_and_finish(world) == []
    total = counting.points
    assert total >= 40

    failures: dict[int, list[str]] = {}
    for n in range(1, total + 1):
        world = await prepare(next(urls), fault)
        stop = Interrupter(cancel_at=n)
        assert await run_first_engine_as_task(world, fault, stop), f"not cancelled at point {n}"
        found = await restart_and_finish(world)
        if found:
            failures[n] = found
    assert failures == {}
