"""Host heartbeats on a real etcd: the agent's per-channel leases, the engine's view of them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from haven.coordination.etcd import EtcdClient
from haven.coordination.leases import HostHeartbeat, HostLeaseView
from servers.etcd import EtcdServer

from .helpers import running

pytestmark = pytest.mark.etcd

TTL_S = 2


async def until(condition: Callable[[], bool], view: HostLeaseView, timeout_s: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, "timed out"
        await view.wait_changed(0.05)
    return time.monotonic() - started


def alive(view: HostLeaseView, host: str, channel: str) -> bool:
    beat = view.last_heartbeat(host, channel)
    return beat is not None and beat.alive


def heartbeat(
    etcd: EtcdServer, client: EtcdClient, host: str, channel: str, **options: bool
) -> HostHeartbeat:
    return HostHeartbeat(client, host, channel, cluster=etcd.cluster, ttl_s=TTL_S, interval_s=0.5, **options)


async def test_channels_appear_and_expire_or_are_revoked(
    etcd: EtcdServer, make_client: Callable[[], EtcdClient]
) -> None:
    agent = make_client()
    view = HostLeaseView(make_client(), cluster=etcd.cluster, probe_interval_s=0.5)
    early = heartbeat(etcd, agent, "compute-1", "mgmt")
    async with running(early.run()):  # an agent already running when the engine starts
        await asyncio.sleep(0.3)
        async with running(view.run()):
            await until(lambda: alive(view, "compute-1", "mgmt"), view, 5)
            clean = heartbeat(etcd, agent, "compute-2", "mgmt", revoke_on_exit=True)
            crashed = heartbeat(etcd, agent, "compute-2", "storage", revoke_on_exit=False)
            async with running(clean.run(), crashed.run()) as tasks:
                await until(
                    lambda: alive(view, "compute-2", "mgmt") and alive(view, "compute-2", "storage"), view, 5
                )
                beat = view.last_heartbeat("compute-2", "storage")
                assert beat is not None and abs(beat.last_heartbeat - time.time()) < 1 and beat.ttl_s == TTL_S
                await asyncio.sleep(1.5)  # several refreshes: still alive, no key rewritten
                assert alive(view, "compute-2", "storage")

                tasks[0].cancel()  # a clean stop revokes: gone at once
                await until(lambda: not alive(view, "compute-2", "mgmt"), view, 2)
                tasks[1].cancel()  # a crash: the lease runs out
                stopped, stopped_wall = time.monotonic(), time.time()
            await until(lambda: not alive(view, "compute-2", "storage"), view, TTL_S + 3)
            expired = time.monotonic() - stopped
            print(f"\nchannel seen expired {expired:.3f} s after its agent stopped (TTL {TTL_S} s)")
            gone = view.last_heartbeat("compute-2", "storage")
            assert gone is not None and not gone.alive and gone.last_heartbeat >= stopped_wall
            assert alive(view, "compute-1", "mgmt")
            assert set(view.snapshot()) == {"compute-1", "compute-2"}
            assert view.last_heartbeat("compute-3", "mgmt") is None


async def test_heartbeats_and_the_view_survive_an_etcd_restart(
    etcd: EtcdServer, make_client: Callable[[], EtcdClient]
) -> None:
    beat = heartbeat(etcd, make_client(), "compute-1", "mgmt")
    view = HostLeaseView(make_client(), cluster=etcd.cluster, probe_interval_s=0.3)
    async with running(beat.run(), view.run()):
        # The key is visible a moment before the agent records its lease (it puts, then notes it; 0 before:
        # "is not None" could not fail, and a loaded CI read 0 here, 2026-12-08).
        await until(lambda: alive(view, "compute-1", "mgmt") and beat.lease != 0, view, 5)  # 0: none yet
        lease = beat.lease
        await asyncio.to_thread(etcd.kill)
        await until(lambda: not view.synced, view, 3)
        stale = view.last_heartbeat("compute-1", "mgmt")
        assert stale is not None and stale.alive  # not declared dead: the observer lost etcd, not the host
        await asyncio.sleep(0.5)
        still = view.last_heartbeat("compute-1", "mgmt")
        assert (
            still is not None and still.last_heartbeat == stale.last_heartbeat
        )  # it cannot vouch past the loss

        await asyncio.to_thread(etcd.start)
        await until(lambda: view.synced, view, 10)
        await asyncio.sleep(TTL_S + 0.5)  # longer than a TTL: the agent's refreshes work again
        assert alive(view, "compute-1", "mgmt")
        assert beat.lease == lease  # etcd kept the lease across its restart (full TTL again)
