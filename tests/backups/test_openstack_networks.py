"""The OpenStack backup driver's networks, over a recorded connection (no cloud): a server's networks
from Nova's os-interface (each once, in Nova's order), a network found in Neutron by id then by name
(none: NotFound; several of that name: Conflict), and a boot's ``networks`` (ids, or ``none``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from openstack.connection import Connection

from haven.cloud.openstack.backups import BackupApi, OpenStackBackups
from haven.cloud.openstack.calls import CallPool
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import ServerId


@dataclass
class Response:
    body: dict[str, Any]
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return self.body


@dataclass
class Service:
    """Nova's or Neutron's answers, recorded shapes; what was asked is kept."""

    ports: list[dict[str, Any]] = field(default_factory=list)
    networks: list[dict[str, Any]] = field(default_factory=list)
    asked: list[tuple[str, str, Any]] = field(default_factory=list)

    def get(self, path: str, params: dict[str, str] | None = None, **_: Any) -> Response:
        self.asked.append(("GET", path, dict(params or {})))
        if path.endswith("/os-interface"):
            return Response({"interfaceAttachments": self.ports})
        if path == "/networks":
            key, value = next(iter((params or {}).items()))
            return Response({"networks": [n for n in self.networks if n[key] == value]})
        if path == "/flavors":
            return Response({"flavors": [{"id": "2", "name": "m1.small"}]})
        raise AssertionError(path)

    def post(self, path: str, json: Any = None, **_: Any) -> Response:
        self.asked.append(("POST", path, json))
        return Response({"server": {"id": "new"}}, 202)


@dataclass
class Conn:
    compute: Service
    network: Service


@pytest.fixture
def pool() -> Iterator[CallPool]:
    calls = CallPool(2)
    yield calls
    calls.close()


def port_on(net: str, port: str) -> dict[str, Any]:
    return {"net_id": net, "port_id": port, "port_state": "ACTIVE", "mac_addr": "fa:16:3e:00:00:01",
            "fixed_ips": [{"subnet_id": "s", "ip_address": "10.0.0.5"}]}  # fmt: skip


async def test_networks_read_found_and_booted_on(pool: CallPool) -> None:
    nova = Service(ports=[port_on("n-db", "p1"), port_on("n-web", "p2"), port_on("n-db", "p3")])
    named = [("n-web", "web"), ("n-db", "db"), ("n-x1", "twice"), ("n-x2", "twice")]
    neutron = Service(networks=[{"id": i, "name": n} for i, n in named])
    driver = OpenStackBackups(BackupApi(cast(Connection, Conn(nova, neutron))), pool)
    assert await driver.server_networks(ServerId("s1")) == ("n-db", "n-web")
    assert ("GET", "/servers/s1/os-interface", {}) in nova.asked

    assert await driver.find_network("n-web") == "n-web"
    assert await driver.find_network("db") == "n-db"
    assert neutron.asked[-2:] == [("GET", "/networks", {"id": "db"}), ("GET", "/networks", {"name": "db"})]
    with pytest.raises(NotFound, match="no network with the id or name 'nope'"):
        await driver.find_network("nope")
    with pytest.raises(Conflict, match=r"2 networks are named 'twice' \(n-x1, n-x2\)"):
        await driver.find_network("twice")

    await driver.boot_from_image("copy", "img", "m1.small", {"k": "v"}, ["n-db", "n-web"])
    await driver.boot_from_image("drill", "img", "m1.small", {})
    await driver.boot_from_volumes("vcopy", ["v1"], "m1.small", {}, False, networks=["n-web"])
    boots = [body["server"] for method, path, body in nova.asked if (method, path) == ("POST", "/servers")]
    assert [b["networks"] for b in boots] == [
        [{"uuid": "n-db"}, {"uuid": "n-web"}],
        "none",
        [{"uuid": "n-web"}],
    ]
    assert boots[0]["flavorRef"] == "2" and boots[0]["imageRef"] == "img"
