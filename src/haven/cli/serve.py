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

from rich.console import Console

from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.domain.clock import RealClock
from haven.domain.events import EngineEvent
from haven.drill.scenarios import scenario_named
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
    config.home.mkdir(parents=True, exist_ok=True)
    with Store.open(config.database_url) as store:
        segments_per_zone(store, await cloud.list_hosts(), reserved=topology.reserved)
        for segment in store.list_segments():
            method = config.segment_methods.get(segment.name)
            if method is not None and method is not segment.recovery_method:
                store.update_segment(segment.id, recovery_method=method)

        def log(event: EngineEvent) -> None:
            what = event.host or event.segment_id or ""
            extra = event.detail.get("reason") or event.detail.get("kind") or event.detail.get("status") or ""
            console.print(f"{event.kind.value:<24} {what} {extra}", highlight=False)

        engine = Engine(cloud, cloud, SimFencer(cloud), store, clock, config.engine, on_event=log)
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

                async def inject_later() -> None:
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=inject_after_s)
                    except TimeoutError:
                        injection = scenario.inject(cloud, topology, random.Random(spec.seed))
                        console.print(f"[bold]injected:[/] {injection.description}")

                tasks.create_task(inject_later())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    console.print("haven stopped cleanly; unfinished recoveries resume at the next start.")
    return 0


__all__ = ["serve"]
