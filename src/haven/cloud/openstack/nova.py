"""Nova's (and Placement's) REST calls as haven makes them: paths, bodies and pinned microversions.

Called by OpenStackCloud through CallPool (these functions block). Each call names
the microversion it needs instead of letting openstacksdk negotiate the newest one,
because newer is not always right for haven:

- services by id, with ``forced_down`` in the same PUT: 2.53 (force down itself needs 2.11)
- hypervisors with their vcpus/memory/disk figures: 2.53 (2.88 removed those figures)
- servers with the flavor embedded (2.47) and, on show, their server groups (2.71)
- evacuate with a target host checked by the scheduler and no ``onSharedStorage``: 2.29
  (2.14 dropped onSharedStorage, 2.29 added ``force``, which haven leaves false); never
  2.95 or later, where an evacuated server ends SHUTOFF instead of in its former state.

Responses are returned as JSON dicts; haven.cloud.openstack.convert makes domain objects. The
reads whose times haven compares with its own clock (the service list, instance actions) also
return a Stamp: the response's HTTP ``Date`` header as it came (Nova's clock; None when absent)
and haven's wall clock when the response arrived.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

from keystoneauth1 import exceptions as ksa_exc
from openstack import exceptions as os_exc
from openstack.connection import Connection

SERVICES_MV = "2.53"
HYPERVISORS_MV = "2.53"
SERVERS_MV = "2.71"
SERVER_GROUPS_MV = "2.64"
AGGREGATES_MV = "2.41"
EVACUATE_MV = "2.29"
ACTIONS_MV = "2.1"
INSTANCE_ACTIONS_MV = "2.58"  # os-instance-actions with the changes-since filter
PLACEMENT_MV = "1.14"
PAGE = 1000  # Nova's default max_limit

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Stamp:
    """When a response was made by Nova's clock (its ``Date`` header) and received by haven's."""

    date: str | None  # whole seconds, rounded down; None when Nova (or a proxy) sent none
    received_at: float  # haven's wall clock (time.time) right after the response arrived


class NovaApi:
    """Blocking calls on one openstacksdk Connection (its session is thread-safe)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    @property
    def connection(self) -> Connection:
        """The openstacksdk connection (haven.cloud.openstack.backups makes its requests on it too)."""
        return self._conn

    # ---- reads ----------------------------------------------------------------------------

    def compute_services(self, host: str | None = None) -> list[Json]:
        return self.compute_services_dated(host)[0]

    def compute_services_dated(self, host: str | None = None) -> tuple[list[Json], Stamp]:
        """The nova-compute services, and when Nova answered (its clock) and haven heard (haven's)."""
        query: dict[str, str] = {"binary": "nova-compute"}
        if host is not None:
            query["host"] = host
        body, stamp = self._get_dated("/os-services", query, SERVICES_MV)
        return list(body["services"]), stamp

    def hypervisors(self) -> list[Json]:
        return list(self._pages("/os-hypervisors/detail", {}, "hypervisors", HYPERVISORS_MV))

    def aggregates(self) -> list[Json]:
        return list(self._get("/os-aggregates", {}, AGGREGATES_MV)["aggregates"])

    def servers(self, host: str | None = None) -> list[Json]:
        query = {"all_tenants": "True"}
        if host is not None:
            query["host"] = host
        return list(self._pages("/servers/detail", query, "servers", SERVERS_MV))

    def server(self, server_id: str) -> Json:
        return dict(self._get(f"/servers/{server_id}", {}, SERVERS_MV)["server"])

    def server_groups(self) -> list[Json]:
        groups: list[Json] = []
        while True:
            query = {"all_projects": "True", "limit": str(PAGE), "offset": str(len(groups))}
            page = self._get("/os-server-groups", query, SERVER_GROUPS_MV)["server_groups"]
            groups.extend(page)
            if len(page) < PAGE:
                return groups

    def instance_actions(self, server_id: str, changes_since: str | None) -> tuple[list[Json], Stamp]:
        """The server's os-instance-actions, newest first (only those updated since ``changes_since``,
        ISO 8601 by Nova's UTC clock, when given), and when Nova answered."""
        query = {"changes-since": changes_since} if changes_since is not None else {}
        path = f"/servers/{server_id}/os-instance-actions"
        body, stamp = self._get_dated(path, query, INSTANCE_ACTIONS_MV)
        return list(body["instanceActions"]), stamp

    # ---- actions --------------------------------------------------------------------------

    def update_service(self, service_id: str, body: Mapping[str, Any]) -> None:
        self._check(self._conn.compute.put(f"/os-services/{service_id}", json=body, microversion=SERVICES_MV))

    def server_action(self, server_id: str, body: Mapping[str, Any], microversion: str = ACTIONS_MV) -> None:
        url = f"/servers/{server_id}/action"
        self._check(self._conn.compute.post(url, json=body, microversion=microversion))

    def evacuate(self, server_id: str, target: str | None) -> None:
        # No "force": the scheduler still checks the named host (capacity, filters).
        self.server_action(server_id, {"evacuate": {"host": target} if target else {}}, EVACUATE_MV)

    # ---- placement (optional: allocation ratios) ------------------------------------------

    def has_placement(self) -> bool:
        try:
            return bool(self._conn.placement.get_endpoint())
        except (os_exc.SDKException, ksa_exc.ClientException):
            return False

    def resource_providers(self) -> list[Json]:
        response = self._conn.placement.get("/resource_providers", microversion=PLACEMENT_MV)
        self._check(response)
        return list(response.json()["resource_providers"])

    def inventories(self, provider_uuid: str) -> Json:
        url = f"/resource_providers/{provider_uuid}/inventories"
        response = self._conn.placement.get(url, microversion=PLACEMENT_MV)
        self._check(response)
        return dict(response.json()["inventories"])

    # ---- plumbing -------------------------------------------------------------------------

    def _get(self, path: str, query: Mapping[str, str], microversion: str) -> Json:
        return self._get_dated(path, query, microversion)[0]

    def _get_dated(self, path: str, query: Mapping[str, str], microversion: str) -> tuple[Json, Stamp]:
        response = self._conn.compute.get(path, params=dict(query), microversion=microversion)
        received_at = time.time()
        self._check(response)
        date = response.headers.get("Date")
        return dict(response.json()), Stamp(str(date) if date else None, received_at)

    def _pages(self, path: str, query: Mapping[str, str], key: str, microversion: str) -> Iterator[Json]:
        """Every item of a paginated Nova list, following its ``<key>_links`` next marker."""
        params = dict(query)
        while True:
            body = self._get(path, params, microversion)
            yield from body[key]
            marker = _next_marker(body.get(f"{key}_links", []))
            if marker is None or not body[key]:
                return
            params["marker"] = marker

    @staticmethod
    def _check(response: Any) -> None:
        os_exc.raise_from_response(response)


def _next_marker(links: list[Json]) -> str | None:
    for link in links:
        if link.get("rel") == "next":
            markers = parse_qs(urlparse(str(link.get("href", ""))).query).get("marker")
            return markers[0] if markers else None
    return None
