"""The loop around the engine: wait until something is due, tick, repeat.

With a VirtualClock the waits are jumps, so drills run a long incident in
milliseconds; with a RealClock it is the long-lived service, stopped by an
asyncio.Event (Ctrl-C in `haven serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence

from haven.domain.clock import Clock
from haven.domain.waiting import within
from haven.service.engine import Engine

WakeSource = Callable[[], float | None]


async def run_until(
    engine: Engine,
    clock: Clock,
    deadline: float,
    *,
    done: Callable[[], bool] = lambda: False,
    wake_sources: Sequence[WakeSource] = (),
    before_tick: Callable[[], None] = lambda: None,
) -> None:
    """Tick until ``done()`` or the deadline; other wake sources (a simulated cloud's events) count too.

    ``before_tick`` runs before every tick (a drill delivers the simulated agents' reports there).
    """
    while clock.now() < deadline and not done():
        wakes = [engine.next_wake(), deadline, *(t for w in wake_sources if (t := w()) is not None)]
        await clock.sleep_until(max(min(wakes), clock.now()))
        before_tick()
        await engine.tick()


async def serve_forever(engine: Engine, clock: Clock, stop: asyncio.Event, max_wait_s: float = 1.0) -> None:
    """Tick until ``stop`` is set; never wait longer than ``max_wait_s`` between ticks."""
    while not stop.is_set():
        await engine.tick()
        wait = min(engine.next_wake(), clock.now() + max_wait_s) - clock.now()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await within(stop.wait(), wait)
