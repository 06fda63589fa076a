"""/v1/segments/{id}/hosts: envelopes, status codes, conflicts, validation, filters and paging."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from haven.store import Store

from .conftest import FakeIntake, host_failure, make_host, make_segment


async def test_create_show_update_delete(client: httpx.AsyncClient, intake: FakeIntake, store: Store) -> None:
    segment = await make_segment(client)
    host = await make_host(client, segment["uuid"], "compute-1", reserved="yes")
    assert host["name"] == "compute-1" and host["reserved"] is True and host["on_maintenance"] is False
    assert host["failover_segment_id"] == segment["uuid"]
    assert host["failover_segment"]["name"] == segment["name"]
    assert isinstance(host["id"], int)
    assert intake.reloads == 2
    base = f"/v1/segments/{segment['uuid']}/hosts"

    shown = await client.get(f"{base}/{host['uuid']}")
    assert shown.status_code == 200 and shown.json()["host"]["uuid"] == host["uuid"]

    changed = await client.put(f"{base}/{host['uuid']}", json={"host": {"on_maintenance": True}})
    assert changed.status_code == 200 and changed.json()["host"]["on_maintenance"] is True
    assert store.get_host("compute-1").on_maintenance is True  # type: ignore[arg-type]
    assert intake.reloads == 3

    renamed = await client.put(f"{base}/{host['uuid']}", json={"host": {"name": "compute-9"}})
    assert renamed.status_code == 200 and renamed.json()["host"]["name"] == "compute-9"
    new_uuid = renamed.json()["host"]["uuid"]  # a host's uuid follows its name in haven

    deleted = await client.delete(f"{base}/{new_uuid}")
    assert deleted.status_code == 204
    assert (await client.get(f"{base}/{new_uuid}")).status_code == 404
    assert intake.reloads == 5


async def test_host_belongs_to_the_segment_in_the_url(client: httpx.AsyncClient) -> None:
    one, two = await make_segment(client, "one"), await make_segment(client, "two")
    host = await make_host(client, one["uuid"])
    response = await client.get(f"/v1/segments/{two['uuid']}/hosts/{host['uuid']}")
    assert response.status_code == 404


async def test_unknown_segment_or_host_is_not_found(client: httpx.AsyncClient) -> None:
    segment = await make_segment(client)
    nobody = "6f1c2a3e-0000-4000-8000-000000000000"
    assert (await client.get(f"/v1/segments/{nobody}/hosts")).status_code == 404
    assert (
        await client.post(
            f"/v1/segments/{nobody}/hosts",
            json={"host": {"name": "h", "type": "C", "control_attributes": "S"}},
        )
    ).status_code == 404
    base = f"/v1/segments/{segment['uuid']}/hosts"
    assert (await client.get(f"{base}/{nobody}")).status_code == 404
    assert (await client.put(f"{base}/{nobody}", json={"host": {"reserved": True}})).status_code == 404
    assert (await client.delete(f"{base}/{nobody}")).status_code == 404


async def test_a_host_name_is_in_one_segment_only(client: httpx.AsyncClient) -> None:
    one, two = await make_segment(client, "one"), await make_segment(client, "two")
    await make_host(client, one["uuid"], "compute-1")
    other = await make_host(client, one["uuid"], "compute-2")
    again = await client.post(
        f"/v1/segments/{two['uuid']}/hosts",
        json={"host": {"name": "compute-1", "type": "COMPUTE", "control_attributes": "SSH"}},
    )
    assert again.status_code == 409 and again.json()["conflictingRequest"]["code"] == 409
    clash = await client.put(
        f"/v1/segments/{one['uuid']}/hosts/{other['uuid']}", json={"host": {"name": "compute-1"}}
    )
    assert clash.status_code == 409


async def test_hosts_of_a_segment_under_recovery_are_frozen(client: httpx.AsyncClient) -> None:
    segment = await make_segment(client)
    failing = await make_host(client, segment["uuid"], "compute-1")
    other = await make_host(client, segment["uuid"], "compute-2")
    assert (await client.post("/v1/notifications", json=host_failure("compute-1"))).status_code == 202
    base = f"/v1/segments/{segment['uuid']}/hosts"
    assert (await client.delete(f"{base}/{failing['uuid']}")).status_code == 409
    assert (await client.delete(f"{base}/{other['uuid']}")).status_code == 409
    assert (await client.put(f"{base}/{other['uuid']}", json={"host": {"reserved": True}})).status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "COMPUTE", "control_attributes": "SSH"}, "host.name"),
        ({"name": "h", "control_attributes": "SSH"}, "host.type"),
        ({"name": "h", "type": "COMPUTE"}, "host.control_attributes"),
        ({"name": "h", "type": "COM PUTE", "control_attributes": "SSH"}, "host.type"),
        ({"name": "h", "type": "COMPUTE", "control_attributes": "SSH", "reserved": 1}, "host.reserved"),
        (
            {"name": "h", "type": "COMPUTE", "control_attributes": "SSH", "on_maintenance": "si"},
            "on_maintenance",
        ),
        ({"name": ["h"], "type": "COMPUTE", "control_attributes": "SSH"}, "host.name"),
        (
            {"name": "h", "type": "COMPUTE", "control_attributes": "SSH", "failover_segment_id": "x"},
            "failover",
        ),
    ],
)
async def test_invalid_bodies_name_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    segment = await make_segment(client)
    response = await client.post(f"/v1/segments/{segment['uuid']}/hosts", json={"host": body})
    assert response.status_code == 400, response.text
    assert field in response.json()["badRequest"]["message"]


async def test_an_empty_update_is_a_bad_request(client: httpx.AsyncClient) -> None:
    segment = await make_segment(client)
    host = await make_host(client, segment["uuid"])
    response = await client.put(f"/v1/segments/{segment['uuid']}/hosts/{host['uuid']}", json={"host": {}})
    assert response.status_code == 400


async def test_filters_sorting_and_paging(client: httpx.AsyncClient) -> None:
    segment = await make_segment(client)
    await make_host(client, segment["uuid"], "c-3", reserved=True)
    await make_host(client, segment["uuid"], "c-1")
    await make_host(client, segment["uuid"], "c-2", on_maintenance=True, type="OTHER")
    base = f"/v1/segments/{segment['uuid']}/hosts"

    async def names(query: str) -> list[str]:
        response = await client.get(f"{base}?{query}")
        assert response.status_code == 200, response.text
        assert set(response.json()) == {"hosts"}
        return [h["name"] for h in response.json()["hosts"]]

    assert await names("") == ["c-1", "c-2", "c-3"]
    assert await names("reserved=true") == ["c-3"]
    assert await names("on_maintenance=1") == ["c-2"]
    assert await names("on_maintenance=false&reserved=False") == ["c-1"]
    assert await names("type=OTHER") == ["c-2"]
    assert await names("name=c-1") == ["c-1"]
    assert await names("sort_key=name&sort_dir=desc&limit=2") == ["c-3", "c-2"]
    first = (await client.get(f"{base}?limit=1")).json()["hosts"][0]
    assert await names(f"marker={first['uuid']}") == ["c-2", "c-3"]
    assert (await client.get(f"{base}?reserved=perhaps")).status_code == 400
