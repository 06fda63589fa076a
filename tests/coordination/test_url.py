"""``elector_from_url``: what ``haven serve --coordination URL`` accepts, and the errors otherwise."""

from __future__ import annotations

import asyncio

import pytest

from haven.coordination import EtcdElector, SingleNodeElector, elector_from_url, parse_etcd_url
from haven.domain.errors import ConfigError
from haven.service.status import Leadership, leader_dict


def test_no_url_gives_the_single_node_elector_always_leader_epoch_1() -> None:
    elector = elector_from_url(None, "engine-a")
    assert isinstance(elector, SingleNodeElector)
    assert elector.is_leader() and elector.epoch() == 1
    assert asyncio.run(elector.wait_leading()) == 1
    status = elector.status()
    assert status.leading and status.leader == "engine-a"


async def test_etcd_url_gives_an_etcd_elector() -> None:
    elector = elector_from_url("etcd://127.0.0.1:2379", "engine-a", cluster="c1", ttl_s=2)
    assert isinstance(elector, EtcdElector)
    assert elector.key == "/haven/c1/leader" and elector.ttl_s == 2
    assert not elector.is_leader() and elector.epoch() is None  # leads only after winning
    assert elector.client.url == "etcd://127.0.0.1:2379"
    await elector.aclose()


def test_ipv6_host() -> None:
    assert parse_etcd_url("etcd://[::1]:2379").http_url == "http://[::1]:2379"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:2379", "scheme must be etcd://, not http"),
        ("127.0.0.1:2379", "scheme must be etcd://"),
        ("etcd://:2379", "has no host"),
        ("etcd://127.0.0.1", "has no port"),
        ("etcd://127.0.0.1:99999", "out of range"),
        ("etcd://127.0.0.1:abc", "127.0.0.1:abc"),
        ("etcd://127.0.0.1:2379/v3", "only etcd://HOST:PORT"),
    ],
)
def test_bad_urls_are_refused_with_a_message_naming_the_problem(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        elector_from_url(url, "engine-a")
    assert says in str(caught.value)
    assert url in caught.value.message
    assert "etcd://HOST:PORT" in caught.value.hint


def test_empty_identity_is_refused() -> None:
    with pytest.raises(ConfigError, match="identity"):
        elector_from_url(None, "")


def test_electors_are_what_the_status_page_reads() -> None:
    elector: Leadership = elector_from_url(None, "engine-a")
    assert leader_dict(elector) == {"identity": "engine-a", "backend": "single-node", "is_leader": True}
