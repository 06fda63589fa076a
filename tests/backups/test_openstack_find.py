"""The OpenStack backup driver's lookups, over a recorded connection (no cloud): a restore finds its
boot by its haven_restore_id tag in haven's own project, the name escaped for Nova's regex filter;
a rebuild is seen in the server's instance actions."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from openstack.connection import Connection

from haven.cloud.openstack.backups import BackupApi, OpenStackBackups
from haven.cloud.openstack.calls import CallPool
from haven.domain.ids import ServerId


@dataclass
class Response:
    body: dict[str, Any]
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, Any]:
        return self.body


@dataclass
class Compute:
    servers: list[dict[str, Any]]
    actions: list[dict[str, Any]] = field(default_factory=list)
    asked: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def get(self, path: str, params: dict[str, str] | None = None, **_: Any) -> Response:
        self.asked.append((path, dict(params or {})))
        if path.endswith("/os-instance-actions"):
            return Response({"instanceActions": self.actions})
        return Response({"servers": self.servers})


@dataclass
class Conn:
    compute: Compute


@pytest.fixture
def pool() -> Iterator[CallPool]:
    calls = CallPool(2)
    yield calls
    calls.close()


def server(sid: str, name: str, **metadata: str) -> dict[str, Any]:
    return {"id": sid, "name": name, "tenant_id": "p", "metadata": metadata, "OS-EXT-STS:vm_state": "active"}


async def test_a_restore_finds_only_the_server_its_tag_names_the_name_escaped(pool: CallPool) -> None:
    compute = Compute([server("a", "db(1"), server("b", "db(1", haven_restore_id="r1"), server("c", "db(1x")])
    port = OpenStackBackups(BackupApi(cast(Connection, Conn(compute))), pool)
    found = await port.find_restored("r1", "db(1")
    assert [t.id for t in found] == ["b"]
    ((path, params),) = compute.asked
    assert path == "/servers/detail" and params == {"name": r"^db\(1$"}  # escaped, haven's project only


async def test_a_rebuild_since_the_restore_is_seen_in_the_instance_actions(pool: CallPool) -> None:
    compute = Compute([], actions=[{"action": "rebuild", "start_time": "2026-12-06T04:00:00.000000"}])
    port = OpenStackBackups(BackupApi(cast(Connection, Conn(compute))), pool)
    at = 1796529600.0  # 2026-12-06T04:00:00Z
    assert await port.rebuilt_since(ServerId("a"), at - 60)
    assert await port.rebuilt_since(ServerId("a"), at + 0.9)  # Nova's whole seconds
    assert not await port.rebuilt_since(ServerId("a"), at + 60)
