"""haven.fencing.blocking: BMC calls in bounded daemon threads. The clean-clone run of 2026-12-07 hung
after pytest's summary: two pyghmi logins to a BMC that had stopped answering never returned, and a
ThreadPoolExecutor's workers are joined at interpreter exit. A call that never returns must not hold the
process at exit, and the deadline, the bound and errors behave as before."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import pytest

from haven.domain.errors import TemporaryError
from haven.fencing.blocking import BlockingCalls


async def test_a_call_past_its_deadline_is_a_temporary_error_and_errors_pass_through() -> None:
    calls = BlockingCalls("test")
    release = threading.Event()
    with pytest.raises(TemporaryError, match=r"the BMC at x did not answer within 0\.2 s"):
        await calls.run(release.wait, 0.2, "the BMC at x")
    release.set()
    assert await calls.run(lambda: 42, 5.0, "y") == 42

    def broken() -> int:
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        await calls.run(broken, 5.0, "z")
    calls.close()
    with pytest.raises(RuntimeError, match="closed"):
        await calls.run(lambda: 1, 5.0, "after close")


async def test_at_most_max_workers_run_at_once() -> None:
    calls = BlockingCalls("test", max_workers=2)
    running, most = 0, 0
    lock = threading.Lock()

    def one() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.1)
        with lock:
            running -= 1

    await asyncio.gather(*(calls.run(one, 5.0, "bmc") for _ in range(6)))
    assert most == 2


def test_a_call_that_never_returns_does_not_hold_the_process_at_exit() -> None:
    script = (
        "import asyncio, threading\n"
        "from haven.domain.errors import TemporaryError\n"
        "from haven.fencing.blocking import BlockingCalls\n"
        "async def main():\n"
        "    try:\n"
        "        await BlockingCalls('ipmi').run(threading.Event().wait, 0.2, 'a silent BMC')\n"
        "    except TemporaryError as exc:\n"
        "        print(exc)\n"
        "asyncio.run(main())\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "a silent BMC did not answer within 0.2 s" in done.stdout
    assert time.monotonic() - started < 20  # the old pool's worker was joined: it never ended
