"""The simulated hosts' haven agents in `haven serve`: what they saw of their guests, handed to the engine.

Called by ``haven serve --inject`` on the simulated cloud (``with_sim_agents`` wraps the injector).
The simulated cloud keeps what each host's agent would report (a crashed guest, a fired watchdog,
a guest that stopped: ``SimCloud.take_agent_reports``); a real agent POSTs those to the API, which
submits them to the engine. Here they are submitted directly, every ``interval_s``, the way the
drills deliver them before each tick.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from haven.cloud.sim import SimCloud
from haven.domain.incidents import NotificationType
from haven.domain.waiting import within
from haven.service.engine import Engine

DELIVERY_INTERVAL_S = 0.2  # a real agent reports within tens of milliseconds of libvirt's event

Task = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def deliver_reports(cloud: SimCloud, engine: Engine) -> int:
    """Submit what the running simulated agents report now as VM notifications; how many."""
    reports = cloud.take_agent_reports()
    for host, payload in reports:
        engine.submit(NotificationType.VM, host, payload)
    return len(reports)


async def run_sim_agents(
    cloud: SimCloud, engine: Engine, stop: asyncio.Event, interval_s: float = DELIVERY_INTERVAL_S
) -> None:
    """Deliver the simulated agents' reports until ``stop`` is set."""
    while not stop.is_set():
        deliver_reports(cloud, engine)
        with contextlib.suppress(TimeoutError):
            await within(stop.wait(), interval_s)


def with_sim_agents(task: Task, cloud: SimCloud, engine: Engine) -> Task:
    """``task`` (the injector) and the simulated agents together, both until ``stop``."""

    async def both(stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(task(stop))
            tasks.create_task(run_sim_agents(cloud, engine, stop))

    return both
