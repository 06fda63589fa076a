"""Running electors side by side in a test, and watching that two never lead at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

from haven.coordination.election_etcd import EtcdElector


@contextlib.asynccontextmanager
async def running(*coros: Coroutine[Any, Any, None]) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the coroutines as tasks for the block; cancel and await them after it."""
    tasks = [asyncio.create_task(coro) for coro in coros]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class LeaderMonitor:
    """Samples ``is_leader()`` of every elector every few ms: at most one may lead, one identity per epoch."""

    def __init__(self, electors: Sequence[EtcdElector]) -> None:
        self.electors = electors
        self.max_leaders = 0
        self.holders: dict[int, set[str]] = {}  # epoch -> identities seen leading with it
        self.epochs_in_order: list[int] = []

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.005)

    def sample(self) -> None:
        leaders = [elector for elector in self.electors if elector.is_leader()]
        self.max_leaders = max(self.max_leaders, len(leaders))
        for elector in leaders:
            epoch = elector.epoch()
            assert epoch is not None
            self.holders.setdefault(epoch, set()).add(elector.identity)
            if not self.epochs_in_order or self.epochs_in_order[-1] != epoch:
                self.epochs_in_order.append(epoch)

    def assert_safe(self) -> None:
        assert self.max_leaders <= 1, "two electors led at the same time"
        assert all(len(who) == 1 for who in self.holders.values()), self.holders
        assert self.epochs_in_order == sorted(set(self.epochs_in_order)), "epochs must only grow"

    def leaders(self) -> list[EtcdElector]:
        return [elector for elector in self.electors if elector.is_leader()]


async def wait_for_leader(electors: Sequence[EtcdElector], timeout_s: float) -> tuple[EtcdElector, float]:
    """The first elector seen leading, and the monotonic time it was seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for elector in electors:
            if elector.is_leader():
                return elector, time.monotonic()
        await asyncio.sleep(0.01)
    raise AssertionError(f"no leader among {[e.identity for e in electors]} within {timeout_s} s")
