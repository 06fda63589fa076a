"""Running the synchronous BMC clients (sushy, pyghmi) off the event loop, bounded in count and time.

Used by the Redfish and IPMI fencers. Their client libraries block, so every call runs in
a small thread pool owned by the fencer; the engine's loop only awaits. A call that
outlives its deadline is reported as a TemporaryError (the BMC did not answer in time):
its thread is left to finish on its own, but the pool's size bounds how many can pile up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from haven.domain.errors import TemporaryError
from haven.domain.waiting import within

T = TypeVar("T")


class BlockingCalls:
    """A bounded thread pool for one fencer's BMC calls."""

    def __init__(self, name: str, max_workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"haven-{name}")

    async def run(self, call: Callable[[], T], deadline_s: float, what: str) -> T:
        """``call()`` in the pool; TemporaryError naming ``what`` if it takes longer than ``deadline_s``."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, call)
        try:
            return await within(future, deadline_s)
        except TimeoutError:
            raise TemporaryError(f"{what} did not answer within {deadline_s:g} s", delay=1.0) from None

    def close(self) -> None:
        """Stop taking calls; calls already running finish in their threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)
