"""``within``: a deadline that never loses a cancellation (Python 3.11's ``asyncio.wait_for`` does).

CI hung on it: an etcd elector cancelled during its lease refresh kept leading, and the election test
waited on it forever (tests/coordination/test_election.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from haven.domain.waiting import in_thread_to_the_end, within

SRC = Path(__file__).resolve().parents[2] / "src" / "haven"
Waiter = Callable[[Awaitable[int], float], Awaitable[int]]


async def lost_cancellations(wait: Waiter, rounds: int = 300, enough: int = 300) -> int:
    """Cancel a loop of quick deadline-bounded awaits at every phase; how many ran on anyway (up to
    ``enough``: each lost one keeps looping and slows the rest)."""

    async def quick() -> int:
        await asyncio.sleep(0)
        return 1

    async def loop() -> None:
        while True:
            await wait(quick(), 1.0)

    lost: list[asyncio.Task[None]] = []
    for i in range(rounds):
        task = asyncio.create_task(loop())
        for _ in range(i % 7):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.02)
        if not done:
            lost.append(task)
            if len(lost) >= enough:
                break
    for task in lost:  # stop them for good (each needs another cancel, perhaps more)
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.01)
    return len(lost)


async def test_a_cancellation_is_never_lost() -> None:
    assert await lost_cancellations(within) == 0


async def test_pythons_wait_for_loses_some_the_reason_for_within() -> None:
    # Why haven does not use it (CPython gh-86296, fixed in 3.12): on 3.11 the same loop runs on.
    assert await lost_cancellations(asyncio.wait_for, enough=1) == 1


async def test_a_deadline_raises_timeout_and_cancels_the_awaited() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def slow() -> int:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    with pytest.raises(TimeoutError):
        await within(slow(), 0.05)
    assert started.is_set() and cancelled.is_set()
    assert await within(asyncio.sleep(0, result=7), None) == 7  # None: no deadline


def test_no_code_of_havens_uses_asyncio_wait_for() -> None:
    users = [
        f"{path.relative_to(SRC)}:{n}"
        for path in sorted(SRC.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\basyncio\.wait_for\(|\bfrom asyncio import .*\bwait_for\b", line)
    ]
    assert users == [], f"use haven.domain.waiting.within instead: {users}"


async def test_a_cancelled_thread_call_ends_before_the_cancellation_goes_on() -> None:
    """The store's engine is disposed by the caller's owner once the task is done: the query in the
    thread must have ended by then (plain asyncio.to_thread lets the task finish first)."""
    import threading

    ended = threading.Event()

    def query() -> str:
        time.sleep(0.3)
        ended.set()
        return "rows"

    seen_at_cancel: list[bool] = []

    async def caller() -> None:
        try:
            await in_thread_to_the_end(query)
        except asyncio.CancelledError:
            seen_at_cancel.append(ended.is_set())
            raise

    task = asyncio.create_task(caller())
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert seen_at_cancel == [True] and task.cancelled()
    assert await in_thread_to_the_end(lambda: 7) == 7
