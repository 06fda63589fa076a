"""Running the synchronous BMC clients (sushy, pyghmi) off the event loop, bounded in count and time.

Used by the Redfish and IPMI fencers. Their client libraries block, so every call runs in a thread of
its own, at most ``max_workers`` at once per fencer (the others wait their turn, within their deadline);
the engine's loop only awaits. A call that outlives its deadline is reported as a TemporaryError (the
BMC did not answer in time): its thread is left to finish on its own, and the bound keeps how many can
pile up. The threads are daemons: a BMC call that never returns (pyghmi's login loop to a BMC that
stopped answering mid-session waits on its own) never holds a stopping ``haven serve`` at exit, as a
ThreadPoolExecutor's workers did (joined at interpreter exit: a clean-clone test run of 2026-12-07 hung
after its summary on two such IPMI calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from haven.domain.errors import TemporaryError
from haven.domain.waiting import within

T = TypeVar("T")


class BlockingCalls:
    """Bounded daemon threads for one fencer's BMC calls."""

    def __init__(self, name: str, max_workers: int = 8) -> None:
        self._name = f"haven-{name}"
        self._slots = threading.BoundedSemaphore(max_workers)
        self._closed = False

    async def run(self, call: Callable[[], T], deadline_s: float, what: str) -> T:
        """``call()`` in a thread; TemporaryError naming ``what`` if it takes longer than ``deadline_s``."""
        if self._closed:
            raise RuntimeError(f"{self._name}: closed, no more calls")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: Exception | None) -> None:
            if future.done():  # its caller gave up (the deadline) or was cancelled
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            with self._slots:
                if self._closed:  # closed while it waited its turn: not started
                    outcome: tuple[T | None, Exception | None] = (None, RuntimeError(f"{self._name}: closed"))
                else:
                    try:
                        outcome = (call(), None)
                    except Exception as exc:  # the caller's to judge, as the pool's future carried it
                        outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(settle, *outcome)

        threading.Thread(target=work, name=self._name, daemon=True).start()
        try:
            return await within(future, deadline_s)
        except TimeoutError:
            raise TemporaryError(f"{what} did not answer within {deadline_s:g} s", delay=1.0) from None

    def close(self) -> None:
        """Stop taking calls; calls already running finish in their threads, those waiting do not start."""
        self._closed = True
