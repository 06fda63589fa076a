"""Awaiting with a deadline without losing a cancellation: ``within(awaitable, timeout_s)``.

Python 3.11's ``asyncio.wait_for`` returns the inner result when its task is cancelled just as that
result arrives, and the cancellation is lost (CPython gh-86296; 3.12 rebuilt ``wait_for`` on
``asyncio.timeout``). A loop stopped by cancelling its task then runs on. CI hung on it for good: an
etcd elector cancelled in the middle of its lease refresh kept leading, and the test waited on it
forever. A standalone loop of cancels against a loop of ``wait_for`` lost 285 of 500; ``within``
lost 0 (``asyncio.timeout``, which runs the awaitable in the caller's own task: a cancellation
reaches it at its next await and is never turned into a result).

Every deadline in haven's code goes through ``within`` (``TimeoutError`` on expiry, as ``wait_for``;
``None`` waits without a deadline).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """``await awaitable``, cancelled with ``TimeoutError`` after ``timeout_s`` seconds."""
    async with asyncio.timeout(timeout_s):
        return await awaitable


THREAD_END_GRACE_S = 5.0  # how long a cancelled caller waits for its thread's call to end


async def in_thread_to_the_end(call: Callable[..., T], *args: object, **kw: object) -> T:
    """``asyncio.to_thread(call, ...)``, except that a cancelled caller lets the thread's call end first
    (up to ``THREAD_END_GRACE_S``) before the cancellation goes on. A thread cannot be cancelled: with plain
    ``to_thread`` the caller's owner, told the task is done, may close what the call still uses (a
    store's engine disposed under a running SQLite query crashed the test process twice, 2026-12-07)."""
    future = asyncio.ensure_future(asyncio.to_thread(call, *args, **kw))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future], timeout=THREAD_END_GRACE_S)
        raise
