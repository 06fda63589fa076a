"""A drill's own workload on a real cloud: boot pinned servers, delete them, read Nova's evacuations.

Called by the real-cloud drills (haven.drill.cloud_drill) and bench/lab.py, never by the
engine: haven itself does not create or delete servers. Booting names the host the way an
admin may (``availability_zone = "ZONE:HOST"``), with ``networks = "none"`` (2.37) so a
cloud without Neutron (the lab) can boot too. Nova's migration records are the cloud's own
account of every evacuation: the drill judges safety from them, not from haven's bookkeeping.
Calls run in their own thread pool, so a drill watching Nova never takes haven's workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import openstack
from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from openstack.connection import Connection

from haven.cloud.openstack import convert
from haven.cloud.openstack.calls import CallPool
from haven.cloud.openstack.connection import CLOUDS_YAML_HINT
from haven.cloud.openstack.nova import SERVERS_MV, NovaApi
from haven.domain.cloud import Server
from haven.domain.errors import ConfigError, NotFound
from haven.domain.ids import HostName, ServerId

BOOT_MV = "2.37"  # networks "none"
MIGRATIONS_MV = "2.59"  # changes-since and the migration's uuid; migration_type filter since 2.23


@dataclass(frozen=True, slots=True)
class Migration:
    """One of Nova's migration records (here: evacuations), as Nova reports it."""

    id: str
    server_id: ServerId
    source: HostName
    dest: HostName | None
    status: str  # evacuation: accepted, pre-migrating, done, then completed once the source cleaned up
    created_at: float | None


class Workload:
    def __init__(self, conn: Connection, pool: CallPool) -> None:
        self._conn = conn
        self._api = NovaApi(conn)
        self._pool = pool

    def close(self) -> None:
        self._pool.close()

    async def flavor_id(self, name_or_id: str) -> str:
        flavors = await self._pool.run("list flavors", self._get, "/flavors", {}, SERVERS_MV)
        for flavor in flavors["flavors"]:
            if name_or_id in (flavor["name"], flavor["id"]):
                return str(flavor["id"])
        raise NotFound(f"no flavor named {name_or_id!r}")

    async def boot(
        self,
        name: str,
        host: HostName,
        zone: str,
        flavor_id: str,
        image_id: str,
        metadata: Mapping[str, str],
    ) -> ServerId:
        """Ask Nova for a server on ``host``; returns its id once accepted (not yet ACTIVE)."""
        body = {"server": {
            "name": name, "imageRef": image_id, "flavorRef": flavor_id, "networks": "none",
            "metadata": dict(metadata), "availability_zone": f"{zone}:{host}",
        }}  # fmt: skip
        answer = await self._pool.run(f"boot server {name} on {host}", self._post, "/servers", body, BOOT_MV)
        return ServerId(str(answer["server"]["id"]))

    async def servers(self, ids: Sequence[ServerId]) -> dict[ServerId, Server]:
        """The current state of the servers ``ids`` that still exist, in one list call."""
        bodies = await self._pool.run("list servers", self._api.servers, None)
        wanted = set(ids)
        return {s.id: s for s in (convert.server(b) for b in bodies) if s.id in wanted}

    async def reported_at(self, host: HostName) -> float | None:
        """When ``host``'s nova-compute last reported to Nova (``updated_at``, whole seconds), if ever."""
        services = await self._pool.run(f"show nova-compute of {host}", self._api.compute_services, host)
        return convert.timestamp(services[0].get("updated_at")) if services else None

    async def fault(self, server_id: ServerId) -> str:
        """Nova's fault message of a server in ERROR ("" when it has none)."""
        answer = await self._pool.run(
            f"show server {server_id}", self._get, f"/servers/{server_id}", {}, SERVERS_MV
        )
        return str((answer["server"].get("fault") or {}).get("message", ""))

    async def delete(self, server_id: ServerId) -> None:
        with contextlib.suppress(NotFound):  # already gone
            await self._pool.run(f"delete server {server_id}", self._delete, f"/servers/{server_id}")

    async def evacuations(self, source: HostName | None, since: float) -> list[Migration]:
        """Nova's evacuation records (off ``source``, or any host) changed since ``since`` (epoch s).

        Oldest first. Nova keeps whole seconds, so ``since`` is rounded down.
        """
        stamp = datetime.fromtimestamp(int(since), UTC).replace(tzinfo=None).isoformat()
        query = {"migration_type": "evacuation", "changes-since": stamp}
        if source is not None:
            query["source_compute"] = source
        what = f"list evacuations from {source or 'any host'}"
        answer = await self._pool.run(what, self._get, "/os-migrations", query, MIGRATIONS_MV)
        records = [
            Migration(
                str(m.get("uuid") or m["id"]),
                ServerId(str(m["instance_uuid"])),
                HostName(str(m["source_compute"])),
                HostName(str(m["dest_compute"])) if m.get("dest_compute") else None,
                str(m["status"]),
                convert.timestamp(m.get("created_at")),
            )
            for m in answer["migrations"]
            if source is None or m.get("source_compute") == source
        ]
        return sorted(records, key=lambda m: m.created_at or 0.0)

    # ---- blocking, in the pool ------------------------------------------------------------

    def _get(self, path: str, query: Mapping[str, str], microversion: str) -> dict[str, Any]:
        response = self._conn.compute.get(path, params=dict(query), microversion=microversion)
        os_exc.raise_from_response(response)
        return dict(response.json())

    def _post(self, path: str, body: Mapping[str, Any], microversion: str) -> dict[str, Any]:
        response = self._conn.compute.post(path, json=body, microversion=microversion)
        os_exc.raise_from_response(response)
        return dict(response.json())

    def _delete(self, path: str) -> None:
        os_exc.raise_from_response(self._conn.compute.delete(path, microversion=SERVERS_MV))


def open_workload(name: str | None, max_workers: int = 4, **options: Any) -> Workload:
    """A Workload on the clouds.yaml entry ``name``; no request yet."""
    try:
        conn = openstack.connect(cloud=name, **options)
    except (os_exc.ConfigException, ksa_exc.ClientException) as exc:
        raise ConfigError(f"cannot use OpenStack cloud {name!r}: {exc}", CLOUDS_YAML_HINT) from None
    return Workload(conn, CallPool(max_workers))
