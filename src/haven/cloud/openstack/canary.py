"""The canary's port on a real cloud: Nova's servers API and Keystone's token issue, via openstacksdk.

Used by haven.canary (through haven.service.explaining and ``haven canary run``), never by the engine.
A canary boots in a zone, not on a host (``availability_zone = ZONE``): the scheduler's choice is part of
what it tests. ``networks = "none"`` needs microversion 2.37. The token probe asks keystoneauth for a new
token every time (``get_auth_ref`` always authenticates), so it measures Keystone, not a cache. Calls run
in their own thread pool; errors are translated at the boundary (haven.cloud.openstack.errors).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import openstack
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1.identity.base import BaseIdentityPlugin
from openstack import exceptions as os_exc
from openstack.connection import Connection

from haven.cloud.openstack import convert
from haven.cloud.openstack.calls import CallPool
from haven.cloud.openstack.connection import CLOUDS_YAML_HINT, clouds_yaml_file
from haven.cloud.openstack.nova import SERVERS_MV, NovaApi
from haven.domain.canary import Found, ServerView
from haven.domain.errors import ConfigError, NotFound, PermanentError, TemporaryError

BOOT_MV = "2.37"  # networks "none" / "auto"


class NovaCanary:
    def __init__(self, conn: Connection, pool: CallPool) -> None:
        self._conn = conn
        self._api = NovaApi(conn)
        self._pool = pool
        self._flavors: dict[str, str] = {}

    def close(self) -> None:
        self._pool.close()

    async def zones(self) -> Sequence[str]:
        services = await self._pool.run("list nova-compute services", self._api.compute_services)
        return sorted({str(s["zone"]) for s in services if s.get("zone")})

    async def boot(
        self, name: str, zone: str, flavor: str, image: str, network: str, metadata: Mapping[str, str]
    ) -> str:
        flavor_id = await self._flavor_id(flavor)
        networks: str | list[dict[str, str]] = network if network in ("none", "auto") else [{"uuid": network}]
        body = {"server": {
            "name": name, "imageRef": image, "flavorRef": flavor_id, "networks": networks,
            "metadata": dict(metadata), "availability_zone": zone,
        }}  # fmt: skip
        answer = await self._pool.run(f"boot canary {name} in {zone}", self._send, "POST", "/servers", body)
        return str(answer["server"]["id"])

    async def look(self, server_id: str) -> ServerView:
        s = await self._pool.run(f"show server {server_id}", self._api.server, server_id)
        fault = s.get("fault") or {}
        return ServerView(
            status=str(s.get("status") or ""),
            task_state=s.get("OS-EXT-STS:task_state"),
            host=s.get("OS-EXT-SRV-ATTR:host"),
            power_state=int(s.get("OS-EXT-STS:power_state") or 0),
            fault=str(fault.get("message") or ""),
        )

    async def delete(self, server_id: str) -> None:
        with contextlib.suppress(NotFound):
            await self._pool.run(f"delete server {server_id}", self._send, "DELETE", f"/servers/{server_id}")

    async def find(self, prefix: str, tag_key: str) -> Sequence[Found]:
        query = {"name": f"^{prefix}"}  # Nova's name filter is a regular expression
        answer = await self._pool.run("list canary servers", self._send, "GET", "/servers/detail", query)
        return [
            Found(str(s["id"]), str(s["name"]), str(s["metadata"][tag_key]))
            for s in answer["servers"]
            if str(s.get("name", "")).startswith(prefix) and tag_key in (s.get("metadata") or {})
        ]

    async def issue_token(self) -> None:
        await self._pool.run("issue a token", self._issue_token)

    async def list_servers(self) -> int:
        answer = await self._pool.run("list servers", self._send, "GET", "/servers", {"limit": "1000"})
        return len(answer["servers"])

    async def endpoints(self) -> Mapping[str, str]:
        return await self._pool.run("read the service catalog", self._endpoints)

    async def probe_endpoint(self, url: str, timeout_s: float) -> None:
        await self._pool.run(f"GET {url}", self._probe, url, timeout_s)

    async def services(self) -> Sequence[tuple[str, str, str, float | None, str]]:
        answer = await self._pool.run("list Nova services", self._send, "GET", "/os-services", {})
        return [
            (str(s["binary"]), str(s["host"]), str(s.get("zone") or ""),
             convert.timestamp(s.get("updated_at")), _service_state(s))
            for s in answer["services"]
        ]  # fmt: skip

    async def image_status(self, image: str) -> str:
        try:
            answer = await self._pool.run(f"show image {image}", self._image, image)
        except NotFound:
            return "missing"
        return str(answer.get("status") or "unknown")

    async def image_data(self, image: str) -> int:
        return await self._pool.run(f"download image {image}", self._image_data, image)

    async def image_via_compute(self, image: str) -> None:
        await self._pool.run(f"show image {image} through Nova", self._image_via_compute, image)

    async def placement_room(self, flavor: str) -> int:
        flavor_id = await self._flavor_id(flavor)
        return await self._pool.run("ask Placement for room", self._room, flavor_id)

    async def _flavor_id(self, name_or_id: str) -> str:
        if name_or_id not in self._flavors:
            answer = await self._pool.run("list flavors", self._send, "GET", "/flavors", {})
            for flavor in answer["flavors"]:
                self._flavors[str(flavor["name"])] = self._flavors[str(flavor["id"])] = str(flavor["id"])
        if name_or_id not in self._flavors:
            raise PermanentError(f"no flavor named {name_or_id!r}: see `openstack flavor list`")
        return self._flavors[name_or_id]

    # ---- blocking, in the pool ------------------------------------------------------------

    def _send(self, method: str, path: str, data: Mapping[str, Any] | None = None) -> dict[str, Any]:
        compute = self._conn.compute
        if method == "GET":
            response = compute.get(path, params=dict(data or {}), microversion=SERVERS_MV)
        elif method == "POST":
            response = compute.post(path, json=dict(data or {}), microversion=BOOT_MV)
        else:
            response = compute.delete(path, microversion=SERVERS_MV)
        os_exc.raise_from_response(response)
        return dict(response.json()) if response.content else {}

    def _image(self, image: str) -> dict[str, Any]:
        response = self._conn.image.get(f"/images/{image}")
        os_exc.raise_from_response(response)
        return dict(response.json())

    def _image_data(self, image: str) -> int:
        """The first 64 KiB of the image's data (asked as a Range; a Glance that ignores it is cut off)."""
        response = self._conn.image.get(
            f"/images/{image}/file", stream=True, headers={"Range": "bytes=0-65535"}
        )
        try:
            os_exc.raise_from_response(response)
            read = 0
            for chunk in response.iter_content(16384):
                read += len(chunk)
                if read >= 65536:
                    break
            return read
        finally:
            response.close()

    def _image_via_compute(self, image: str) -> None:
        # Nova's image proxy API (microversions up to 2.35): nova-api asks Glance, as it does for a boot.
        response = self._conn.compute.get(f"/images/{image}", microversion="2.35")
        os_exc.raise_from_response(response)

    def _room(self, flavor_id: str) -> int:
        got = self._send("GET", f"/flavors/{flavor_id}")["flavor"]
        wanted = {"VCPU": int(got.get("vcpus") or 0), "MEMORY_MB": int(got.get("ram") or 0),
                  "DISK_GB": int(got.get("disk") or 0)}  # fmt: skip
        resources = ",".join(f"{name}:{amount}" for name, amount in wanted.items() if amount > 0)
        self._conn.session.get_token()  # Keystone's part first: its timeout is not Placement's
        try:
            response = self._conn.placement.get(
                "/allocation_candidates", params={"resources": resources, "limit": "1"}, microversion="1.16"
            )
        except ksa_exc.ConnectTimeout as exc:  # asked straight, no answer in time: haven.canary.runner
            raise TemporaryError(
                f"Placement did not answer allocation candidates in time ({exc})", 1.0
            ) from exc
        if response.status_code >= 500:  # Placement's own failure: haven.canary.runner.PLACEMENT_FAILED
            raise TemporaryError(f"Placement answered {response.status_code} to allocation candidates", 1.0)
        os_exc.raise_from_response(response)
        return len(response.json().get("allocation_requests") or [])

    def _endpoints(self) -> dict[str, str]:
        session = self._conn.session
        auth = session.auth
        if not isinstance(auth, BaseIdentityPlugin):
            raise PermanentError("read the service catalog: the clouds.yaml entry has no Keystone login")
        catalog = auth.get_access(session).service_catalog
        found = catalog.get_endpoints(interface="public")
        urls = {}
        for kind, ends in (found or {}).items():
            first = ends[0] if ends else None
            if first:
                urls[str(kind)] = str(first["url"])
        return urls

    def _probe(self, url: str, timeout_s: float) -> None:
        response = self._conn.session.get(url, authenticated=False, raise_exc=False, timeout=timeout_s)
        if response.status_code >= 500:
            raise TemporaryError(f"{url} answered {response.status_code}", 1.0)

    def _issue_token(self) -> None:
        session = self._conn.session
        if session.auth is None:
            raise PermanentError("issue a token: the cloud's clouds.yaml entry has no credentials")
        session.auth.get_auth_ref(session)


def _service_state(service: Mapping[str, Any]) -> str:
    if service.get("state") == "down":
        return "down"
    if service.get("status") == "disabled":
        return f"disabled: {service.get('disabled_reason') or 'no reason given'}"
    return "up"


def open_canary(
    name: str | None, clouds_yaml: Path | None = None, max_workers: int = 2, timeout_s: float = 30.0
) -> NovaCanary:
    """A NovaCanary on the clouds.yaml entry ``name``; no request yet.

    Every request gives up after ``timeout_s``: a hung API fails the canary instead of holding it.
    """
    try:
        with clouds_yaml_file(clouds_yaml):
            conn = openstack.connect(cloud=name, api_timeout=timeout_s)
    except (os_exc.ConfigException, ksa_exc.ClientException) as exc:
        raise ConfigError(f"cannot use OpenStack cloud {name!r}: {exc}", CLOUDS_YAML_HINT) from None
    return NovaCanary(conn, CallPool(max_workers))
