"""`haven serve`: the engine as a long-lived service on a real clock, stopped cleanly by Ctrl-C.

The embedded default watches a built-in simulated cloud; its state (a SQLite
file) lives in haven's home folder, so a restart resumes unfinished recoveries.
Note: the simulated cloud itself lives in this process and starts afresh with
it; against a real cloud, the world a resumed recovery re-reads is the same.
"""

from __future__ import annotations

import asyncio
import random
import signal
from pathlib import Path

from rich.console import Console

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.cloud.sim.builder import SimTopology
from haven.domain.clock import RealClock
from haven.domain.errors import ConfigError
from haven.domain.events import EngineEvent, EventSink
from haven.domain.incidents import RecoveryMethod
from haven.drill.scenarios import Scenario, scenario_named
from haven.service.bootstrap import segments_per_zone
from haven.service.config import HavenConfig
from haven.service.engine import Engine
from haven.service.runner import serve_forever
from haven.store import Store


async def serve(config: HavenConfig, console: Console, inject: str | None, inject_after_s: float) -> int:
    clock = RealClock()
    spec = CloudSpec(hosts=config.simulated.hosts, vms=config.simulated.vms, seed=config.simulated.seed)
    scenario = scenario_named(inject) if inject else None
    if scenario is not None:
        spec = scenario.shape(spec)
    cloud, topology = build_cloud(spec, clock)  # validates the cloud's size before the store is touched
    hosts = await cloud.list_hosts()
    if not _store_exists(config):
        _check_segment_names(config, {f"segment-{h.zone}" for h in hosts})  # before anything is created
    config.home.mkdir(parents=True, exist_ok=True)
    with Store.open(config.database_url) as store:
        existing = store.list_segments()
        if existing:
            _check_segment_names(config, {s.name for s in existing})
        method = scenario.recovery_method if scenario is not None else RecoveryMethod.AUTO
        segments_per_zone(store, hosts, method, reserved=topology.reserved)
        for segment in store.list_segments():
            wanted = config.segment_methods.get(segment.name)
            if wanted is not None and wanted is not segment.recovery_method:
                store.update_segment(segment.id, recovery_method=wanted)
        engine = Engine(
            cloud, cloud, SimFencer(cloud), store, clock, config.engine, on_event=_logger(console)
        )
        resumed = engine.start()
        console.print(
            f"haven serving: simulated cloud of {spec.hosts} hosts / {spec.vms} VMs; "
            f"state {config.database_url}; resumed {resumed} unfinished recoveries. Ctrl-C stops.",
            highlight=False,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(serve_forever(engine, clock, stop))
            if scenario is not None:
                tasks.create_task(
                    _inject_later(scenario, cloud, topology, spec.seed, inject_after_s, stop, console)
                )
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    console.print("haven stopped cleanly; unfinished recoveries resume at the next start.")
    return 0


def _store_exists(config: HavenConfig) -> bool:
    prefix = "sqlite:///"
    url = config.database_url
    return not url.startswith(prefix) or Path(url[len(prefix) :]).exists()


def _check_segment_names(config: HavenConfig, known: set[str]) -> None:
    unknown = sorted(set(config.segment_methods) - known)
    if unknown:
        raise ConfigError(
            f"{config.source}: [[segments]] name(s) {', '.join(unknown)} match no segment",
            f"known segments: {', '.join(sorted(known))}",
        )


def _logger(console: Console) -> EventSink:
    def log(event: EngineEvent) -> None:
        what = event.host or event.segment_id or ""
        extra = event.detail.get("reason") or event.detail.get("kind") or event.detail.get("status") or ""
        console.print(f"{event.kind.value:<24} {what} {extra}", highlight=False)

    return log


async def _inject_later(
    scenario: Scenario,
    cloud: SimCloud,
    topology: SimTopology,
    seed: int,
    after_s: float,
    stop: asyncio.Event,
    console: Console,
) -> None:
    """Inject the scenario's failure after ``after_s``, and its follow-up (a process coming back) when due."""
    if await _stopped_within(stop, after_s):
        return
    injection = scenario.inject(cloud, topology, random.Random(seed))
    console.print(f"[bold]injected:[/] {injection.description}")
    if injection.follow_up is None or injection.follow_up_after_s is None:
        return
    if not await _stopped_within(stop, injection.follow_up_after_s):
        injection.follow_up()
        console.print("[bold]follow-up:[/] the failed part is back")


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


__all__ = ["serve"]
