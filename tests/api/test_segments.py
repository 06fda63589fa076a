"""/v1/segments: envelopes, status codes, conflicts, validation, filters, sorting and paging."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from haven.store import Store

from .conftest import FakeIntake, host_failure, make_host, make_segment, version


async def test_create_show_update_delete(client: httpx.AsyncClient, intake: FakeIntake, store: Store) -> None:
    created = await make_segment(client, "rack-1", description="first rack")
    assert created["name"] == "rack-1" and created["recovery_method"] == "auto"
    assert created["enabled"] is True and created["description"] == "first rack"
    assert isinstance(created["id"], int) and created["id"] < 2**53
    assert store.get_segment(created["uuid"].replace("-", "")).name == "rack-1"
    assert intake.reloads == 1

    shown = await client.get(f"/v1/segments/{created['uuid']}", headers=version("1.2"))
    assert shown.status_code == 200 and shown.json() == {"segment": created}

    changed = await client.put(
        f"/v1/segments/{created['uuid']}",
        json={"segment": {"recovery_method": "reserved_host", "enabled": "false"}},
        headers=version("1.2"),
    )
    assert changed.status_code == 200
    assert changed.json()["segment"]["recovery_method"] == "reserved_host"
    assert changed.json()["segment"]["enabled"] is False
    assert changed.json()["segment"]["id"] == created["id"]
    assert intake.reloads == 2

    deleted = await client.delete(f"/v1/segments/{created['uuid']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert intake.reloads == 3
    assert (await client.get(f"/v1/segments/{created['uuid']}")).status_code == 404


async def test_hex_uuid_in_the_url_names_the_same_segment(client: httpx.AsyncClient) -> None:
    created = await make_segment(client)
    response = await client.get(f"/v1/segments/{created['uuid'].replace('-', '')}")
    assert response.json()["segment"]["uuid"] == created["uuid"]


async def test_a_name_is_not_an_id(client: httpx.AsyncClient) -> None:
    await make_segment(client, "rack-1")
    response = await client.get("/v1/segments/rack-1")
    assert response.status_code == 404
    assert response.json()["itemNotFound"]["code"] == 404


async def test_enabled_appears_from_microversion_1_2(client: httpx.AsyncClient) -> None:
    created = await make_segment(client)
    old = await client.get(f"/v1/segments/{created['uuid']}", headers=version("1.1"))
    assert "enabled" not in old.json()["segment"]
    refused = await client.post(
        "/v1/segments",
        json={
            "segment": {"name": "x", "recovery_method": "auto", "service_type": "COMPUTE", "enabled": True}
        },
        headers=version("1.1"),
    )
    assert refused.status_code == 400 and "segment.enabled" in refused.json()["badRequest"]["message"]


async def test_duplicate_name_is_a_conflict(client: httpx.AsyncClient) -> None:
    first = await make_segment(client, "rack-1")
    await make_segment(client, "rack-2")
    again = await client.post(
        "/v1/segments", json={"segment": {"name": "rack-1", "recovery_method": "auto", "service_type": "C"}}
    )
    assert again.status_code == 409 and again.json()["conflictingRequest"]["code"] == 409
    renamed = await client.put(f"/v1/segments/{first['uuid']}", json={"segment": {"name": "rack-2"}})
    assert renamed.status_code == 409


async def test_a_segment_under_recovery_cannot_be_changed_or_deleted(client: httpx.AsyncClient) -> None:
    segment = await make_segment(client)
    await make_host(client, segment["uuid"], "compute-1")
    assert (await client.post("/v1/notifications", json=host_failure("compute-1"))).status_code == 202
    deleted = await client.delete(f"/v1/segments/{segment['uuid']}")
    assert deleted.status_code == 409 and "in-use" in deleted.json()["conflictingRequest"]["message"]
    updated = await client.put(f"/v1/segments/{segment['uuid']}", json={"segment": {"description": "x"}})
    assert updated.status_code == 409


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a", "recovery_method": "sometimes", "service_type": "COMPUTE"}, "segment.recovery_method"),
        ({"recovery_method": "auto", "service_type": "COMPUTE"}, "segment.name"),
        ({"name": 5, "recovery_method": "auto", "service_type": "COMPUTE"}, "segment.name"),
        ({"name": "", "recovery_method": "auto", "service_type": "COMPUTE"}, "segment.name"),
        ({"name": " padded", "recovery_method": "auto", "service_type": "COMPUTE"}, "segment.name"),
        ({"name": "a\x00b", "recovery_method": "auto", "service_type": "COMPUTE"}, "segment.name"),
        ({"name": "a", "recovery_method": "auto"}, "segment.service_type"),
        ({"name": "a", "recovery_method": "auto", "service_type": "C", "colour": "red"}, "segment.colour"),
        (
            {"name": "a", "recovery_method": "auto", "service_type": "C", "enabled": "maybe"},
            "segment.enabled",
        ),
        ({"name": "a", "recovery_method": "auto", "service_type": "C", "description": "a\nb"}, "description"),
    ],
)
async def test_invalid_bodies_name_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/segments", json={"segment": body}, headers=version("1.2"))
    assert response.status_code == 400, response.text
    assert field in response.json()["badRequest"]["message"]


@pytest.mark.parametrize("body", [None, [], {"segment": None}, {"segment": {}}, {"segment": {"name": None}}])
async def test_invalid_updates_are_bad_requests(client: httpx.AsyncClient, body: Any) -> None:
    segment = await make_segment(client)
    response = await client.put(f"/v1/segments/{segment['uuid']}", json=body)
    assert response.status_code == 400


async def test_unknown_segment_is_not_found_for_every_verb(client: httpx.AsyncClient) -> None:
    missing = "/v1/segments/6f1c2a3e-0000-4000-8000-000000000000"
    assert (await client.get(missing)).status_code == 404
    assert (await client.put(missing, json={"segment": {"name": "x"}})).status_code == 404
    assert (await client.delete(missing)).status_code == 404


async def test_filters(client: httpx.AsyncClient) -> None:
    await make_segment(client, "a", recovery_method="auto")
    await make_segment(client, "b", recovery_method="reserved_host", enabled=False)
    await make_segment(client, "c", recovery_method="reserved_host", service_type="OTHER")

    async def names(query: str) -> list[str]:
        response = await client.get(f"/v1/segments?{query}", headers=version("1.2"))
        assert response.status_code == 200, response.text
        return [s["name"] for s in response.json()["segments"]]

    assert await names("recovery_method=reserved_host") == ["b", "c"]
    assert await names("service_type=OTHER") == ["c"]
    assert await names("enabled=false") == ["b"]
    assert await names("enabled=yes&recovery_method=reserved_host") == ["c"]
    assert await names("recovery_method=nonsense") == []
    assert (await client.get("/v1/segments?enabled=perhaps")).status_code == 400


async def test_sorting_and_paging(client: httpx.AsyncClient) -> None:
    for name in ["delta", "alpha", "charlie", "bravo"]:
        await make_segment(client, name)

    async def names(query: str) -> list[str]:
        response = await client.get(f"/v1/segments?{query}")
        assert response.status_code == 200, response.text
        return [s["name"] for s in response.json()["segments"]]

    assert await names("") == ["alpha", "bravo", "charlie", "delta"]
    assert await names("sort_key=name&sort_dir=desc") == ["delta", "charlie", "bravo", "alpha"]
    assert await names("sort_key=name") == [
        "delta",
        "charlie",
        "bravo",
        "alpha",
    ]  # Masakari's default dir: desc
    first = (await client.get("/v1/segments?limit=2")).json()["segments"]
    assert [s["name"] for s in first] == ["alpha", "bravo"]
    assert await names(f"limit=2&marker={first[-1]['uuid']}") == ["charlie", "delta"]
    assert await names(f"limit=2&marker={first[-1]['id']}") == [
        "charlie",
        "delta",
    ]  # openstacksdk pages by id
    # Masakari's database layer answers limit=0 with an empty list (masakari/db/sqlalchemy/api.py,
    # "if limit == 0: return []"; its pagination docstring says otherwise)
    assert await names("limit=0") == []
    assert await names("limit=5000") == ["alpha", "bravo", "charlie", "delta"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("marker=6f1c2a3e-0000-4000-8000-000000000000", "Marker"),
        ("sort_key=colour", "sort_key"),
        ("sort_dir=sideways", "sort_dir"),
        ("sort_key=name&sort_dir=asc&sort_dir=desc", "sort_dir"),
    ],
)
async def test_bad_paging_is_a_bad_request(client: httpx.AsyncClient, query: str, field: str) -> None:
    await make_segment(client)
    response = await client.get(f"/v1/segments?{query}")
    assert response.status_code == 400
    assert field in response.json()["badRequest"]["message"]
