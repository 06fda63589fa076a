"""The leader-loss drill: engines elect a leader on etcd; the leader dies in the middle of an evacuation.

Called by ``haven drill leader-loss`` (which starts its own etcd and PostgreSQL on free loopback
ports through haven.lab and passes their URLs here) and by the tests (their fixtures' servers).

What is real: etcd and the elections on it (haven.coordination's EtcdElector: lease +
create-if-absent transaction + keep-alive), the PostgreSQL store shared by the engines (each
engine opens its own Store, with its own connections), the epochs and the database claim every
step makes with them (haven.store.fencing), the engines themselves (Engine, executor, runner
loop) and real time: the takeover is measured on the wall clock.

What is modelled: the engines run as Engine instances in one process, as asyncio tasks, because
the simulated cloud lives in memory and all engines must act on the same world; they share one
SimCloud (and its simulated BMCs). The leader's SIGKILL is modelled by severing its etcd client
(nothing more reaches etcd from it: no keep-alive, no revoke, so its lease is left to expire
after its TTL, as a killed process's would) and cancelling its tasks at whatever await they are
in, with no clean-up: no resignation, no closing commit; its store is closed only when the drill
ends. A process killed while its evacuate call is on the wire could still see that call land;
here a cancelled call either happened or did not, which is the same case for the next leader
(its steps re-read the server before acting).

The report is a drill report (haven.drill.report, counters read from the simulated cloud's
ground truth) plus ``double_actions`` (VMs evacuated more than once per the cloud; failures
opened twice and evacuate steps done twice per the store), ``takeover_s`` (the kill to another
engine leading, wall clock), ``resumed_s`` (the kill to the new leader resuming from the store),
the leaders' epochs in order, and the most engines ever seen leading at once (must be 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.coordination import EtcdElector, elector_from_url
from haven.domain.clock import RealClock
from haven.domain.events import EngineEvent, EventKind
from haven.domain.incidents import UNFINISHED_STATUSES, NotificationType, StepState
from haven.domain.settings import EngineSettings, RecoverySettings
from haven.drill.report import DrillReport, EventRecorder
from haven.drill.run import DrillOptions, _judge
from haven.drill.scenarios import scenario_named
from haven.recovery.workflows import EVACUATE
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import serve_forever
from haven.store import Store

NAME = "leader-loss"
_POLL_S = 0.01


@dataclass(frozen=True, slots=True)
class LeaderLossOptions:
    etcd_url: str  # etcd://HOST:PORT
    store_url: str  # an empty PostgreSQL database (or schema) shared by the engines
    engines: int = 3
    hosts: int = 6
    vms: int = 48
    seed: int = 1
    ha_fraction: float = 1.0
    ttl_s: int = 3
    max_parallel_evacuations: int = 3  # small, so that the leader dies with evacuations still to issue
    cluster: str = "leader-loss"  # the election's name in etcd: give each run its own
    give_up_s: float = 120.0


@dataclass(slots=True)
class LeaderLossReport:
    drill: DrillReport
    double_actions: int
    takeover_s: float
    resumed_s: float
    ttl_s: int
    engines: int
    killed: str | None
    leaders: list[dict[str, Any]] = field(default_factory=list)
    max_leaders_at_once: int = 0
    steps_started_by: dict[str, int] = field(default_factory=dict)  # per engine: a follower's must stay 0

    def to_dict(self) -> dict[str, Any]:
        extra = asdict(self)
        del extra["drill"]
        return {**self.drill.to_dict(), **extra}


class _Member:
    """One engine of the cluster: its elector (own etcd connection), its store, its loop."""

    def __init__(
        self,
        name: str,
        options: LeaderLossOptions,
        cloud: SimCloud,
        clock: RealClock,
        sink: Callable[[str, EngineEvent], None],
    ) -> None:
        self.name = name
        elector = elector_from_url(options.etcd_url, name, cluster=options.cluster, ttl_s=options.ttl_s)
        assert isinstance(elector, EtcdElector)
        self.elector = elector
        self.store = Store.open(options.store_url)
        settings = EngineSettings(
            recovery=RecoverySettings(max_parallel_evacuations=options.max_parallel_evacuations)
        )
        self.engine = Engine(
            cloud, cloud, SimFencer(cloud), self.store, clock, settings,
            on_event=lambda e: sink(name, e), leadership=elector,
        )  # fmt: skip
        self._clock = clock
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.killed = False

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            campaign = tasks.create_task(self.elector.run())
            tasks.create_task(serve_forever(self.engine, self._clock, self._stop, max_wait_s=0.1))
            await self._stop.wait()
            campaign.cancel()  # resigns: hands leadership over at once

    def kill(self) -> None:
        """SIGKILL, as modelled: nothing more reaches etcd (the lease expires by itself), tasks cut."""
        self.killed = True
        self.elector.client.sever()
        if self.task is not None:
            self.task.cancel()

    async def close(self) -> None:
        self._stop.set()
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.elector.aclose()
        self.store.close()


async def run_leader_loss(options: LeaderLossOptions) -> LeaderLossReport:
    """Run the drill once; the servers behind the URLs must be up, the store empty."""
    if options.engines < 2:
        raise ValueError("the leader-loss drill needs at least 2 engines")
    wall_start = time.perf_counter()
    clock = RealClock()
    scenario = scenario_named("host-power-loss")
    drill_options = DrillOptions(NAME, options.hosts, options.vms, options.seed, options.ha_fraction)
    spec = CloudSpec(hosts=options.hosts, vms=options.vms, seed=options.seed, ha_fraction=options.ha_fraction)
    cloud, topology = build_cloud(spec, clock)
    recorder = EventRecorder(lambda e: None)
    by_engine: list[tuple[str, EngineEvent]] = []

    def sink(name: str, event: EngineEvent) -> None:
        recorder(event)
        by_engine.append((name, event))

    with Store.open(options.store_url) as store:
        segments_per_zone(store, await cloud.list_hosts(), scenario.recovery_method, topology.reserved)
        members = [_Member(f"engine-{i + 1}", options, cloud, clock, sink) for i in range(options.engines)]
        sampler = _LeaderSampler(members)
        try:
            for member in members:
                member.start()
            sampling = asyncio.create_task(sampler.run())
            leader = await _wait_for_leader(members, options.ttl_s + 10.0, acting=True)
            await asyncio.sleep(1.0)  # one detection pass at least: every engine has seen the healthy cloud

            fault_at = clock.now()
            injection = scenario.inject(cloud, topology, random.Random(options.seed))
            recorder(
                EngineEvent(EventKind.FAULT_INJECTED, fault_at, detail={"description": injection.description})
            )
            failed = set(injection.failed_hosts)
            affected = [
                s.id for h in injection.failed_hosts for s in await cloud.list_servers(h) if s.ha_enabled
            ]

            await _until(lambda: any(e.at >= fault_at for e in cloud.evacuations), options.give_up_s)
            killed_at = time.monotonic()
            leader.kill()
            successor = await _wait_for_leader([m for m in members if not m.killed], options.ttl_s + 10.0)
            takeover_s = time.monotonic() - killed_at  # another engine holds the lease now
            await _until(lambda: successor.engine.term is not None, options.give_up_s)
            resumed_s = time.monotonic() - killed_at  # it has claimed and reloaded the store

            def over() -> bool:
                recovered = all(cloud.hosts_running(s) - failed for s in affected)
                return recovered and not store.list_notifications(statuses=UNFINISHED_STATUSES)

            await _until(over, options.give_up_s, poll_s=0.2)
            await asyncio.sleep(1.5)  # keep watching: a late double action would show now
            sampling.cancel()
            drill = _judge(
                scenario, drill_options, spec, cloud, store, injection, affected, recorder, fault_at
            )
            drill.scenario = NAME
        finally:
            for member in members:
                await member.close()
        double = _double_actions(cloud, store, affected)
        drill.simulated_s = round(clock.now() - fault_at, 3)
        drill.wall_s = round(time.perf_counter() - wall_start, 3)
    report = LeaderLossReport(
        drill=drill,
        double_actions=double,
        takeover_s=round(takeover_s, 3),
        resumed_s=round(resumed_s, 3),
        ttl_s=options.ttl_s,
        engines=options.engines,
        killed=leader.name,
        leaders=[
            {"engine": name, "epoch": e.detail.get("epoch"), "resumed": e.detail.get("resumed")}
            for name, e in by_engine
            if e.kind is EventKind.LEADERSHIP_GAINED
        ],
        max_leaders_at_once=sampler.max_leaders,
        steps_started_by={
            m.name: sum(1 for name, e in by_engine if name == m.name and e.kind is EventKind.STEP_STARTED)
            for m in members
        },
    )
    _verdict(report)
    return report


class _LeaderSampler:
    """Samples every live engine's ``is_leader()``: more than one at once would be a safety failure."""

    def __init__(self, members: list[_Member]) -> None:
        self._members = members
        self.max_leaders = 0

    async def run(self) -> None:
        while True:
            leading = sum(1 for m in self._members if not m.killed and m.elector.is_leader())
            self.max_leaders = max(self.max_leaders, leading)
            await asyncio.sleep(_POLL_S)


async def _wait_for_leader(members: list[_Member], timeout_s: float, *, acting: bool = False) -> _Member:
    """The first of ``members`` seen leading (``acting``: and already acting as leader)."""
    found: list[_Member] = []

    def leading() -> bool:
        found[:] = [m for m in members if m.elector.is_leader() and (not acting or m.engine.term is not None)]
        return bool(found)

    await _until(leading, timeout_s, what=f"no engine led within {timeout_s:g} s")
    return found[0]


async def _until(
    condition: Callable[[], bool], timeout_s: float, *, poll_s: float = _POLL_S, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what or f"the drill made no progress within {timeout_s:g} s")
        await asyncio.sleep(poll_s)


def _double_actions(cloud: SimCloud, store: Store, affected: list[Any]) -> int:
    """Effects done twice: per the cloud's ground truth, and per the store's record of the steps."""
    evacuated_twice = sum(max(0, cloud.evacuation_count(s) - 1) for s in affected)
    notes = store.list_notifications(type=NotificationType.COMPUTE_HOST)
    opened_twice = sum(n - 1 for n in Counter(n.hostname for n in notes).values() if n > 1)
    done = Counter(
        s.subject
        for n in notes
        for s in store.list_steps(n.id)
        if s.kind == EVACUATE and s.state is StepState.DONE
    )
    steps_twice = sum(n - 1 for n in done.values() if n > 1)
    return evacuated_twice + opened_twice + steps_twice


def _verdict(report: LeaderLossReport) -> None:
    drill = report.drill
    drill.checks.append(f"double actions: {report.double_actions}; engines leading at once, at most: "
                        f"{report.max_leaders_at_once}")  # fmt: skip
    drill.checks.append(
        f"takeover {report.takeover_s} s after the leader's death (lease TTL {report.ttl_s} s)"
    )
    leaders = {entry["engine"] for entry in report.leaders}
    if any(count for name, count in report.steps_started_by.items() if name not in leaders):
        drill.checks.insert(
            0, f"SAFETY VIOLATED: an engine that never led started steps: {report.steps_started_by}"
        )
        drill.verdict = "failed"
    if report.double_actions or report.max_leaders_at_once > 1:
        drill.checks.insert(0, "SAFETY VIOLATED: an action was done twice, or two engines led at once")
        drill.verdict = "failed"
