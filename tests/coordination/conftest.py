"""Fixtures for the coordination tests: the real etcd (tests/servers/etcd.py) and clients on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from haven.coordination.etcd import EtcdClient
from servers.etcd import EtcdServer, etcd, etcd_server  # noqa: F401


@pytest.fixture
async def make_client(etcd: EtcdServer) -> AsyncIterator[Callable[[], EtcdClient]]:  # noqa: F811
    """A factory of clients on the test's etcd (one per simulated engine/agent), all closed after."""
    clients: list[EtcdClient] = []

    def make() -> EtcdClient:
        client = EtcdClient(etcd.http_url, timeout_s=0.5, display_url=etcd.url)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
