"""Masakari's documented behaviour, asserted against haven's real app over a real SQLite store.

Each test names the Masakari file (openstack/masakari, master) whose behaviour it asserts.
The engine side of on_maintenance is in tests/engine/test_masakari_maintenance.py; the first
start's segments in tests/cli/test_segment_bootstrap.py; the store's paging on both backends in
tests/store/test_listing.py.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from haven.domain.ids import HostName
from haven.domain.incidents import SegmentHost
from haven.store import Store

from .conftest import FakeIntake, make_host, make_segment

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")  # as Masakari writes them


def report(type_: str, hostname: str = "compute-1") -> dict[str, Any]:
    payloads = {
        "COMPUTE_HOST": {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"},
        "PROCESS": {"event": "STOPPED", "process_name": "nova-compute"},
        "VM": {
            "event": "LIFECYCLE",
            "instance_uuid": "0b4b7c7e-4d1b-4c89-a3d5-2a6b1e6f9f00",
            "vir_domain_event": "STOPPED_FAILED",
        },
    }
    return {
        "notification": {
            "type": type_,
            "hostname": hostname,
            "generated_time": "2027-01-15T08:00:00.000000",
            "payload": payloads[type_],
        }
    }


@pytest.mark.parametrize("type_", ["COMPUTE_HOST", "PROCESS", "VM"])
async def test_any_report_about_a_host_on_maintenance_is_a_409(
    client: httpx.AsyncClient, intake: FakeIntake, type_: str
) -> None:
    # masakari/ha/api.py NotificationAPI._create_notification: HostOnMaintenanceError for every
    # type, before the duplicate check; masakari/api/openstack/ha/notifications.py: HTTPConflict.
    segment = await make_segment(client)
    await make_host(client, segment["uuid"], "compute-1", on_maintenance=True)
    answer = await client.post("/v1/notifications", json=report(type_))
    assert answer.status_code == 409
    assert answer.json()["conflictingRequest"]["message"] == (
        f"Notification received from host compute-1 of type '{type_}' is ignored as the host is "
        "already under maintenance."
    )
    assert intake.submitted == []


async def test_a_rename_keeps_the_hosts_uuid_and_its_notifications_name_it(
    client: httpx.AsyncClient, store: Store
) -> None:
    # masakari/ha/api.py HostAPI.update_host changes the same row (its uuid column stays);
    # NotificationAPI._create_notification stores source_host_uuid = host_object.uuid.
    segment = await make_segment(client)
    created = await make_host(client, segment["uuid"], "compute-1")
    base = f"/v1/segments/{segment['uuid']}/hosts"
    renamed = await client.put(f"{base}/{created['uuid']}", json={"host": {"name": "compute-1b"}})
    assert renamed.status_code == 200 and renamed.json()["host"]["uuid"] == created["uuid"]
    shown = await client.get(f"{base}/{created['uuid']}")  # the uuid from before the rename
    assert shown.status_code == 200 and shown.json()["host"]["name"] == "compute-1b"
    assert shown.json()["host"]["id"] == created["id"]
    listed = (await client.get(base)).json()["hosts"]
    assert [(h["uuid"], h["name"]) for h in listed] == [(created["uuid"], "compute-1b")]
    sent = await client.post("/v1/notifications", json=report("COMPUTE_HOST", "compute-1b"))
    assert sent.status_code == 202 and sent.json()["notification"]["source_host_uuid"] == created["uuid"]
    found = await client.get("/v1/notifications", params={"source_host_uuid": created["uuid"]})
    assert [n["hostname"] for n in found.json()["notifications"]] == ["compute-1b"]
    # The name is free again: a new host with it is a new row, with a new uuid.
    again = await make_host(client, segment["uuid"], "compute-1")
    assert again["uuid"] != created["uuid"]
    assert store.get_host(HostName("compute-1b")).uuid == created["uuid"]


async def test_created_at_on_creation_updated_at_on_change(client: httpx.AsyncClient) -> None:
    # masakari/db/sqlalchemy/models.py: oslo.db's TimestampMixin (created_at on insert, updated_at
    # on update, null until then).
    segment = await make_segment(client)
    host = await make_host(client, segment["uuid"], "compute-1")
    for made in (segment, host):
        assert TIMESTAMP.match(made["created_at"]) and made["updated_at"] is None
    changed = (
        await client.put(f"/v1/segments/{segment['uuid']}", json={"segment": {"description": "row 3"}})
    ).json()["segment"]
    assert changed["created_at"] == segment["created_at"] and TIMESTAMP.match(changed["updated_at"])
    assert datetime.fromisoformat(changed["updated_at"]) >= datetime.fromisoformat(changed["created_at"])
    base = f"/v1/segments/{segment['uuid']}/hosts/{host['uuid']}"
    moved = (await client.put(base, json={"host": {"reserved": True}})).json()["host"]
    assert moved["created_at"] == host["created_at"] and TIMESTAMP.match(moved["updated_at"])
    assert (await client.get(base)).json()["host"]["updated_at"] == moved["updated_at"]


async def test_an_unknown_marker_is_a_400(client: httpx.AsyncClient) -> None:
    # masakari/api/openstack/ha/hosts.py and segments.py index: MarkerNotFound -> HTTPBadRequest.
    segment = await make_segment(client)
    await make_host(client, segment["uuid"], "compute-1")
    for url in ("/v1/segments", f"/v1/segments/{segment['uuid']}/hosts"):
        answer = await client.get(url, params={"marker": "5b2d9b7e-0d0e-4f7a-9c51-6f2b1c0e9a11"})
        assert answer.status_code == 400
        assert answer.json()["badRequest"]["message"] == (
            "Marker 5b2d9b7e-0d0e-4f7a-9c51-6f2b1c0e9a11 could not be found."
        )


async def test_a_large_segment_is_paged_in_sql(client: httpx.AsyncClient, store: Store) -> None:
    # masakari/db/sqlalchemy/api.py host_get_all_by_filters: filters and paginate_query (sort keys,
    # marker row, limit) in the query; at most 1000 per page (masakari/api/openstack/common.py).
    segment = await make_segment(client)
    (stored,) = store.list_segments()
    store.add_hosts(
        [SegmentHost(HostName(f"c-{i:05d}"), stored.id, reserved=i % 10 == 0) for i in range(2500)]
    )
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM hosts" in statement:
            statements.append(statement)

    engine = store._engine  # the only way to see the SQL haven sends
    event.listen(engine, "before_cursor_execute", seen)
    try:
        base = f"/v1/segments/{segment['uuid']}/hosts"
        names: list[str] = []
        marker: str | None = None
        while True:
            params: dict[str, Any] = {"sort_key": "name", "sort_dir": "desc"}
            if marker is not None:
                params["marker"] = marker
            page = (await client.get(base, params=params)).json()["hosts"]
            names.extend(h["name"] for h in page)
            if len(page) < 1000:
                break
            marker = str(page[-1]["id"])  # openstacksdk pages with the integer id
        reserved = (await client.get(base, params={"reserved": "true", "limit": 5})).json()["hosts"]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert names == [f"c-{i:05d}" for i in reversed(range(2500))]
    assert [h["name"] for h in reserved] == ["c-00000", "c-00010", "c-00020", "c-00030", "c-00040"]
    listings = [s for s in statements if "ORDER BY" in s]
    assert len(listings) == 4 and all("LIMIT" in s for s in listings)
