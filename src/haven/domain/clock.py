"""Injected time: every wait in haven goes through a Clock.

The engine never sleeps inside a step; the service loop asks the clock to wait
until the next due time. A VirtualClock jumps there at once, so a 10-minute
incident on the simulated cloud runs in milliseconds of real time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

# Virtual time starts at a fixed, recognisable instant so timestamps read as dates.
VIRTUAL_EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (real or virtual)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline``."""
        ...


class RealClock:
    """Wall-clock time for a long-lived service."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.time()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """Time that only moves when told to; waiting jumps straight to the deadline."""

    def __init__(self, start: float = VIRTUAL_EPOCH) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance_to(self, deadline: float) -> None:
        self._now = max(self._now, deadline)

    async def sleep_until(self, deadline: float) -> None:
        self.advance_to(deadline)


class PacedClock(VirtualClock):
    """Virtual time that a person can watch: each wait takes real time, divided by ``speed``."""

    def __init__(self, speed: float = 1.0, start: float = VIRTUAL_EPOCH, paced: bool = True) -> None:
        super().__init__(start)
        self._speed = speed
        self.paced = paced  # while False, waits jump as in a VirtualClock

    async def sleep_until(self, deadline: float) -> None:
        delay = (deadline - self.now()) / self._speed
        if delay > 0 and self.paced:
            await asyncio.sleep(delay)
        self.advance_to(deadline)
