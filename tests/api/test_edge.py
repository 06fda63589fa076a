"""Behaviour at the edge: versions document, authentication, microversions, error shapes, health."""

from __future__ import annotations

import httpx
import pytest

from haven.api.auth import LocalTokenAuthenticator

from .conftest import TOKEN, version


async def test_versions_document_is_open_and_declares_the_microversion_range(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/")
    assert response.status_code == 200
    [v1] = response.json()["versions"]
    assert v1["id"] == "v1.0" and v1["status"] == "CURRENT"
    assert (v1["min_version"], v1["version"]) == ("1.0", "1.3")
    assert v1["links"] == [{"rel": "self", "href": "http://haven/v1/"}]


@pytest.mark.parametrize("path", ["/v1", "/v1/"])
async def test_v1_document_needs_a_token_as_in_masakari(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, path: str
) -> None:
    assert (await anonymous.get(path)).status_code == 401
    response = await client.get(path)
    assert response.status_code == 200
    assert response.json()["version"]["version"] == "1.3"
    assert response.json()["version"]["media-types"][0]["base"] == "application/json"


async def test_healthz_is_open(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-Auth-Token": "wrong"}, {"X-Auth-Token": ""}, {"X-Auth-Token": "\xe9t\xe9".encode("latin-1")}],
)
@pytest.mark.parametrize("path", ["/v1/segments", "/v1/notifications", "/v1/no-such-thing"])
async def test_protected_paths_refuse_without_the_token(
    anonymous: httpx.AsyncClient, headers: dict[str, str | bytes], path: str
) -> None:
    response = await anonymous.get(path, headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "unauthorized": {"code": 401, "message": "The request you have made requires authentication."}
    }
    assert TOKEN not in response.text
    assert "WWW-Authenticate" in response.headers


async def test_a_bad_token_is_refused_before_the_body_is_read(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(
        "/v1/segments",
        content=b"{not json",
        headers={"X-Auth-Token": "nope", "Content-Type": "application/json"},
    )
    assert response.status_code == 401


def test_the_local_authenticator_grants_admin_and_hides_its_token() -> None:
    gate = LocalTokenAuthenticator(TOKEN)
    principal = gate.authenticate(TOKEN)
    assert principal is not None and "admin" in principal.roles
    assert gate.authenticate("other") is None and gate.authenticate(None) is None
    assert TOKEN not in repr(gate)
    with pytest.raises(ValueError):
        LocalTokenAuthenticator("")


@pytest.mark.parametrize(
    ("asked", "echoed"),
    [
        (None, "instance-ha 1.0"),
        ("instance-ha 1.2", "instance-ha 1.2"),
        ("instance-ha latest", "instance-ha 1.3"),
        ("compute 2.90, instance-ha 1.1", "instance-ha 1.1"),
        ("compute 2.90", "instance-ha 1.0"),  # another service's version is not ours
    ],
)
async def test_microversion_is_echoed_with_vary(
    client: httpx.AsyncClient, asked: str | None, echoed: str
) -> None:
    headers = {} if asked is None else {"OpenStack-API-Version": asked}
    response = await client.get("/v1/segments", headers=headers)
    assert response.status_code == 200
    assert response.headers["OpenStack-API-Version"] == echoed
    assert "OpenStack-API-Version" in response.headers["Vary"]


async def test_microversion_is_echoed_on_errors_too(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/segments/unknown", headers=version("1.2"))
    assert response.status_code == 404
    assert response.headers["OpenStack-API-Version"] == "instance-ha 1.2"


@pytest.mark.parametrize(
    ("asked", "status"), [("1.4", 406), ("2.0", 406), ("0.9", 400), ("1.x", 400), ("", 400)]
)
async def test_bad_microversions_are_refused_like_masakari(
    client: httpx.AsyncClient, asked: str, status: int
) -> None:
    response = await client.get("/v1/segments", headers={"OpenStack-API-Version": f"instance-ha {asked}"})
    assert response.status_code == status
    fault_name = "masakariFault" if status == 406 else "badRequest"  # Masakari has no name for 406
    assert response.json()[fault_name]["code"] == status


async def test_microversion_does_not_apply_outside_v1(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers=version("9.9"))
    assert response.status_code == 200 and "OpenStack-API-Version" not in response.headers


async def test_unknown_path_and_wrong_method_have_masakari_bodies(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["itemNotFound"]["code"] == 404
    wrong = await client.patch("/v1/segments")
    assert wrong.status_code == 405 and wrong.json()["badMethod"]["code"] == 405


async def test_malformed_json_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/segments", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == "Malformed request body"


async def test_openapi_is_served(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {
        "/v1/segments",
        "/v1/segments/{segment_id}/hosts/{host_id}",
        "/v1/notifications/{notification_id}/vmoves",
    } <= set(paths)
