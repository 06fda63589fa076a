"""The etcd boundary against a real etcd: create-if-absent, leases, errors naming the URL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from haven.coordination.etcd import EtcdClient
from haven.domain.errors import CoordinationUnavailable
from servers.etcd import EtcdServer
from servers.process import free_port

pytestmark = pytest.mark.etcd


async def test_create_if_absent_wins_once_and_tells_the_loser_who_holds_the_key(
    etcd: EtcdServer, make_client: Callable[[], EtcdClient]
) -> None:
    client = make_client()
    key = f"/haven/{etcd.cluster}/leader"
    lease_a, ttl = await client.grant(2)
    assert ttl >= 2
    created, kv = await client.create(key, b"a", lease_a)
    assert created and kv is not None and kv.value == b"a" and kv.lease == lease_a
    lease_b, _ = await client.grant(2)
    created_b, holder = await client.create(key, b"b", lease_b)
    assert not created_b and holder is not None and holder.value == b"a"
    assert holder.create_revision == kv.create_revision

    await client.revoke(lease_a)  # deletes the key
    assert (await client.get(key))[1] == []
    assert await client.keepalive(lease_a) == 0  # a revoked lease cannot be refreshed
    await client.revoke(lease_a)  # revoking twice is not an error
    created_b, kv_b = await client.create(key, b"b", lease_b)
    assert created_b and kv_b is not None and kv_b.create_revision > kv.create_revision


async def test_prefix_reads_and_keepalive(etcd: EtcdServer, make_client: Callable[[], EtcdClient]) -> None:
    client = make_client()
    lease, _ = await client.grant(5)
    for name in ("a", "b"):
        await client.put(f"/haven/{etcd.cluster}/hosts/{name}/mgmt", b"{}", lease)
    await client.put(f"/haven/{etcd.cluster}/hostsX", b"outside the prefix")
    _, kvs = await client.get(f"/haven/{etcd.cluster}/hosts/", prefix=True)
    assert [kv.key.rsplit("/", 2)[1] for kv in kvs] == ["a", "b"]
    assert 0 < await client.keepalive(lease) <= 5


async def test_unreachable_etcd_names_the_url() -> None:
    port = free_port()
    client = EtcdClient(f"http://127.0.0.1:{port}", timeout_s=0.5, display_url=f"etcd://127.0.0.1:{port}")
    try:
        with pytest.raises(CoordinationUnavailable) as caught:
            await client.status()
    finally:
        await client.aclose()
    assert f"etcd at etcd://127.0.0.1:{port} cannot be reached" in str(caught.value)
    assert "etcdctl" in caught.value.hint
