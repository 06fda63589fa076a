"""The agent's heartbeats in a real etcd, as the engine sees them (HostLeaseView): one per channel,
alive while the agent runs, gone at once when it stops (leases revoked, not left to expire)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest

from haven.agent.config import Channel
from haven.coordination.etcd import EtcdClient
from haven.coordination.leases import HostLeaseView
from servers.etcd import EtcdServer

from .conftest import NOWHERE, RunAgent, agent_config, eventually

pytestmark = [pytest.mark.etcd]


async def test_heartbeats_on_every_channel_and_none_after_stop(
    etcd: EtcdServer, tmp_path: Path, run_agent: RunAgent
) -> None:
    channels = (Channel("management", etcd.http_url), Channel("storage", etcd.http_url))
    config = agent_config(
        tmp_path, NOWHERE, host="compute-00007", channels=channels, cluster=etcd.cluster, heartbeat_ttl_s=2
    )
    client = EtcdClient(etcd.http_url, timeout_s=0.5)
    view = HostLeaseView(client, cluster=etcd.cluster)
    watching = asyncio.create_task(view.run())
    try:
        async with run_agent(config):
            beats = await eventually(
                lambda: (s := view.snapshot().get("compute-00007")) and len(s) == 2 and s, what="two channels"
            )
            assert all(b.alive and b.ttl_s == 2 for b in beats.values())
            await asyncio.sleep(config.heartbeat_ttl_s + 0.5)  # refreshed: still alive after a whole TTL
            assert all(b.alive for b in view.snapshot()["compute-00007"].values())
        stopped = time.monotonic()
        await eventually(
            lambda: not any(b.alive for b in view.snapshot()["compute-00007"].values()), 2, "leases revoked"
        )
        assert time.monotonic() - stopped < config.heartbeat_ttl_s  # revoked, not expired
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await client.aclose()
