"""Masakari's project-scoped URLs (``/v1/<project_id>/segments...``) with the local token.

Deployments register the instance-ha endpoint as ``.../v1/$(tenant_id)s``; every resource
must answer the same under that prefix. The local token has no project, so any hex project
id passes (the project check against a Keystone token is in tests/auth).
"""

from __future__ import annotations

import httpx
import pytest

from haven.api.app import create_app
from haven.api.auth import Principal
from haven.api.project_scope import unscoped
from haven.domain.clock import VirtualClock
from haven.store import Store

from .conftest import AUTH, FakeIntake, host_failure, make_host, make_segment, version

PROJECT = "0f5c4a2e9b7d4c1e8a6f3b2d1c0e9a87"
SCOPED = f"/v1/{PROJECT}"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{SCOPED}/segments", (PROJECT, "/v1/segments")),
        (f"{SCOPED}/segments/abc/hosts", (PROJECT, "/v1/segments/abc/hosts")),
        ("/v1/ab-12/notifications", ("ab-12", "/v1/notifications")),
        ("/v1/segments", None),  # not hex: the unscoped form itself
        (f"{SCOPED}/segmentsx", None),
        (f"{SCOPED}/haven/status", None),  # haven's own resources are not Masakari's
        (f"/v1/{PROJECT.upper()}/segments", None),  # Masakari's default regex is lower-case hex
        (SCOPED, None),
    ],
)
def test_only_masakari_resources_under_a_hex_project_are_unscoped(
    path: str, expected: tuple[str, str] | None
) -> None:
    assert unscoped(path) == expected


async def test_segments_and_hosts_crud_through_the_scoped_form(client: httpx.AsyncClient) -> None:
    body = {"segment": {"name": "scoped", "recovery_method": "auto", "service_type": "COMPUTE"}}
    created = await client.post(f"{SCOPED}/segments", json=body, headers=version("1.2"))
    assert created.status_code == 201, created.text
    assert created.headers["OpenStack-API-Version"] == "instance-ha 1.2"
    ref = created.json()["segment"]["uuid"]
    assert created.json()["segment"]["enabled"] is True
    # The same object under both forms.
    scoped = await client.get(f"{SCOPED}/segments/{ref}")
    plain = await client.get(f"/v1/segments/{ref}")
    assert scoped.status_code == plain.status_code == 200
    assert scoped.json() == plain.json()
    host = {"host": {"name": "compute-1", "type": "COMPUTE", "control_attributes": "SSH"}}
    made = await client.post(f"{SCOPED}/segments/{ref}/hosts", json=host)
    assert made.status_code == 201, made.text
    listed = await client.get(f"{SCOPED}/segments/{ref}/hosts")
    assert [h["name"] for h in listed.json()["hosts"]] == ["compute-1"]
    updated = await client.put(f"{SCOPED}/segments/{ref}", json={"segment": {"description": "rack 1"}})
    assert updated.status_code == 200 and updated.json()["segment"]["description"] == "rack 1"
    host_ref = made.json()["host"]["uuid"]
    assert (await client.delete(f"{SCOPED}/segments/{ref}/hosts/{host_ref}")).status_code == 204
    assert (await client.delete(f"{SCOPED}/segments/{ref}")).status_code == 204
    assert (await client.get(f"{SCOPED}/segments/{ref}")).status_code == 404


async def test_paging_and_filters_behave_the_same_scoped(client: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        await make_segment(client, name)
    query = {"limit": 2, "sort_key": "name", "sort_dir": "asc"}
    first = (await client.get(f"{SCOPED}/segments", params=query)).json()["segments"]
    assert [s["name"] for s in first] == ["a", "b"]
    rest = await client.get(f"{SCOPED}/segments", params={**query, "marker": first[-1]["uuid"]})
    assert [s["name"] for s in rest.json()["segments"]] == ["c"]
    assert "segments_links" not in rest.json()  # Masakari builds no next links, nor does haven
    unknown = await client.get(f"{SCOPED}/segments", params={"marker": "nope"})
    assert unknown.status_code == 400


async def test_notifications_and_vmoves_through_the_scoped_form(client: httpx.AsyncClient) -> None:
    segment = await make_segment(client)
    await make_host(client, segment["uuid"])
    created = await client.post(f"{SCOPED}/notifications", json=host_failure())
    assert created.status_code == 202, created.text
    ref = created.json()["notification"]["notification_uuid"]
    shown = await client.get(f"{SCOPED}/notifications/{ref}", headers=version("1.1"))
    assert shown.status_code == 200 and "recovery_workflow_details" in shown.json()["notification"]
    listed = await client.get(f"{SCOPED}/notifications", params={"source_host_uuid": "nope"})
    assert listed.status_code == 200
    moves = await client.get(f"{SCOPED}/notifications/{ref}/vmoves", headers=version("1.3"))
    assert moves.status_code == 200 and moves.json() == {"vmoves": []}


async def test_errors_keep_their_masakari_shape_scoped(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    assert (await anonymous.get(f"{SCOPED}/segments")).status_code == 401
    missing = await client.get(f"{SCOPED}/segments/0b1c2d3e-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and "itemNotFound" in missing.json()
    bad = await client.post(f"{SCOPED}/segments", json={"segment": {"name": "x"}})
    assert bad.status_code == 400 and "badRequest" in bad.json()
    too_new = await client.get(f"{SCOPED}/segments", headers=version("1.99"))
    assert too_new.status_code == 406
    assert (await client.get(f"{SCOPED}/nothing-here")).status_code == 404
    assert (await client.get(SCOPED)).status_code == 404  # Masakari routes nothing there either


async def test_the_versions_documents_do_not_change(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    root = (await anonymous.get("/")).json()["versions"][0]
    assert root["links"] == [{"rel": "self", "href": "http://haven/v1/"}]
    v1 = (await client.get("/v1", headers=AUTH)).json()["version"]
    assert v1["links"][0] == {"rel": "self", "href": "http://haven/v1/"}


class ProjectToken:
    """A token scoped to PROJECT, as a Keystone token is (the real one is in tests/auth)."""

    blocking = False

    def authenticate(self, token: str | None) -> Principal | None:
        return Principal("u", PROJECT, frozenset({"admin"})) if token == "scoped" else None


async def test_a_token_of_another_project_is_a_400_before_policy(
    store: Store, intake: FakeIntake, clock: VirtualClock
) -> None:
    app = create_app(store, intake, "unused", clock, authenticator=ProjectToken())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://haven", headers={"X-Auth-Token": "scoped"}
    ) as http:
        assert (await http.get(f"{SCOPED}/segments")).status_code == 200
        other = "ab" * 16
        refused = await http.get(f"/v1/{other}/notifications")
        assert refused.status_code == 400
        assert refused.json() == {
            "badRequest": {
                "code": 400,
                "message": f"Malformed request URL: URL's project_id '{other}' doesn't match "
                f"Context's project_id '{PROJECT}'",
            }
        }
        assert (
            await http.get("/v1/segments")
        ).status_code == 200  # the unscoped form has no project to compare
