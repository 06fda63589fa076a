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

Responses are returned as JSON dicts; haven.cloud.openstack.convert makes domain objects.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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


class NovaApi:
    """Blocking calls on one openstacksdk Connection (its session is thread-safe)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # ---- reads ----------------------------------------------------------------------------

    def compute_services(self, host: str | None = None) -> list[Json]:
        query: dict[str, str] = {"binary": "nova-compute"}
        if host is not None:
            query["host"] = host
        return list(self._get("/os-services", query, SERVICES_MV)["services"])

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

    def instance_actions(self, server_id: str, changes_since: str) -> list[Json]:
        """The server's os-instance-actions updated since ``changes_since`` (ISO 8601, UTC)."""
        query = {"changes-since": changes_since}
        path = f"/servers/{server_id}/os-instance-actions"
        return list(self._get(path, query, INSTANCE_ACTIONS_MV)["instanceActions"])

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
        response = self._conn.compute.get(path, params=dict(query), microversion=microversion)
        self._check(response)
        return dict(response.json())

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
