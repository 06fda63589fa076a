"""KeyWatch on a real etcd: it survives an etcd restart and a silently wedged stream, missing nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from haven.coordination.etcd import EtcdClient, KeyValue
from haven.coordination.watching import KeyWatch
from servers.etcd import EtcdServer

from .helpers import running

pytestmark = pytest.mark.etcd


async def until(condition: Callable[[], bool], watch: KeyWatch, timeout_s: float) -> float:
    """Wait until ``condition()``; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, "timed out"
        await watch.changes.wait(0.05)
    return time.monotonic() - started


def recording_watch(
    client: EtcdClient, prefix: str
) -> tuple[KeyWatch, list[bool], list[dict[str, KeyValue]]]:
    syncs: list[bool] = []
    resets: list[dict[str, KeyValue]] = []
    watch = KeyWatch(
        client, prefix, prefix=True, probe_interval_s=0.3, on_sync=syncs.append, on_reset=resets.append
    )
    return watch, syncs, resets


async def test_watch_survives_an_etcd_restart(
    etcd: EtcdServer, make_client: Callable[[], EtcdClient]
) -> None:
    writer = make_client()
    prefix = f"/haven/{etcd.cluster}/w/"
    await writer.put(prefix + "before", b"1")
    watch, syncs, resets = recording_watch(make_client(), prefix)
    async with running(watch.run()):
        await until(lambda: watch.synced and prefix + "before" in watch.keys, watch, 5)
        await writer.put(prefix + "a", b"1")
        await until(lambda: prefix + "a" in watch.keys, watch, 5)

        await asyncio.to_thread(etcd.restart)
        await writer.put(prefix + "b", b"2")
        await writer.delete(prefix + "a")
        took = await until(lambda: prefix + "b" in watch.keys and prefix + "a" not in watch.keys, watch, 10)
        print(f"\nwatch caught up {took:.3f} s after etcd was back")
    assert False in syncs and syncs[-1] is True  # it noticed the break, then re-synced
    assert watch.watches_opened >= 2
    assert len(resets) == 1  # resumed from the last revision: no re-read needed


async def test_a_wedged_etcd_is_detected_and_the_watch_resumes_from_the_last_revision(
    etcd: EtcdServer, make_client: Callable[[], EtcdClient]
) -> None:
    writer = make_client()
    prefix = f"/haven/{etcd.cluster}/w/"
    watch, syncs, resets = recording_watch(make_client(), prefix)
    async with running(watch.run()):
        await until(lambda: watch.synced, watch, 5)
        etcd.pause()  # connections stay open, nothing answers: the stream hangs silently
        try:
            took = await until(lambda: not watch.synced, watch, 5)
            print(f"\nwedged etcd detected after {took:.3f} s (probe every 0.3 s, timeout 0.5 s)")
        finally:
            etcd.resume()
        await writer.put(prefix + "during-recovery", b"x")  # likely before the watch is back
        await until(lambda: watch.synced and prefix + "during-recovery" in watch.keys, watch, 10)
    assert syncs == [True, False, True]
    assert len(resets) == 1
