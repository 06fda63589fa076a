"""haven's API behind a real Keystone: 401 without a valid token, Masakari's policy (403), 503 when
Keystone is gone, and openstacksdk finding haven through the catalog with a password login."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import openstack
import pytest

from clients.conftest import OPENSTACK, HavenServer
from haven.api.auth import AuthUnavailable
from haven.api.keystone_auth import KeystoneAuthenticator, KeystoneCredentials
from servers.keystone import KeystoneLab

pytestmark = [
    pytest.mark.keystone,
    # openstacksdk warns about its own future removals from inside itself (see tests/clients).
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]


@pytest.fixture(scope="module")
def api(haven_keystone: HavenServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=haven_keystone.url, timeout=30) as client:
        yield client


def as_(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token}


def segment_body() -> dict[str, object]:
    return {"segment": {"name": f"auth-{uuid.uuid4().hex[:8]}", "recovery_method": "auto",
                        "service_type": "COMPUTE"}}  # fmt: skip


def test_no_token_and_an_invalid_token_are_401(api: httpx.Client) -> None:
    assert api.get("/v1/segments").status_code == 401
    forged = "gAAAAAB" + "x" * 180  # shaped like a fernet token; Keystone does not know it
    response = api.get("/v1/segments", headers=as_(forged))
    assert response.status_code == 401
    assert response.json()["unauthorized"]["message"] == "The request you have made requires authentication."
    assert forged not in response.text


def test_the_local_token_is_not_accepted_in_keystone_mode(
    api: httpx.Client, haven_keystone: HavenServer
) -> None:
    assert api.get("/v1/segments", headers=as_(haven_keystone.token)).status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/v1/segments", "os_masakari_api:segments:index"),
        ("POST", "/v1/segments", "os_masakari_api:segments:create"),
        ("GET", "/v1/notifications", "os_masakari_api:notifications:index"),
    ],
)
@pytest.mark.parametrize("who", ["member", "reader"])
def test_member_and_reader_are_refused_as_masakari_defaults_say(
    api: httpx.Client, keystone: KeystoneLab, who: str, method: str, path: str, action: str
) -> None:
    account = keystone.member if who == "member" else keystone.reader
    body = segment_body() if method == "POST" else None
    response = api.request(method, path, headers=as_(account.token()), json=body)
    assert response.status_code == 403, response.text
    assert response.json() == {
        "forbidden": {"code": 403, "message": f"Policy doesn't allow {action} to be performed."}
    }


def test_a_reader_may_read_the_v1_document_which_has_no_policy_in_masakari(
    api: httpx.Client, keystone: KeystoneLab
) -> None:
    response = api.get("/v1", headers=as_(keystone.reader.token()))
    assert response.status_code == 200
    assert response.json()["version"]["id"] == "v1.0"


def test_an_admin_creates_reads_and_deletes(api: httpx.Client, keystone: KeystoneLab) -> None:
    headers = as_(keystone.admin.token())
    created = api.post("/v1/segments", headers=headers, json=segment_body())
    assert created.status_code == 201, created.text
    ref = created.json()["segment"]["uuid"]
    assert api.get(f"/v1/segments/{ref}", headers=headers).status_code == 200
    assert api.get("/v1/notifications", headers=headers).status_code == 200
    assert api.delete(f"/v1/segments/{ref}", headers=headers).status_code == 204


def test_openstacksdk_finds_haven_in_the_catalog_with_a_password_login(keystone: KeystoneLab) -> None:
    conn = admin_connection(keystone)
    try:
        names = sorted(segment.name for segment in conn.instance_ha.segments())
    finally:
        conn.close()
    assert {"segment-az1", "segment-az2", "segment-az3"} <= set(names)


def test_keystone_down_is_503_for_new_tokens_while_cached_ones_still_pass(
    api: httpx.Client, keystone: KeystoneLab, haven_keystone: HavenServer
) -> None:
    cached = keystone.admin.token()
    assert api.get("/v1/segments", headers=as_(cached)).status_code == 200  # now in haven's cache
    fresh = keystone.member.token()  # issued, never shown to haven
    keystone.server.stop()
    assert keystone.server.process is not None and not keystone.server.process.running
    assert not keystone.server.answers()  # gunicorn's workers went with their master
    try:
        response = api.get("/v1/segments", headers=as_(fresh))
        assert response.status_code == 503, response.text
        message = response.json()["serviceUnavailable"]["message"]
        assert "Keystone" in message and "unreachable" in message
        assert api.get("/v1/segments", headers=as_(cached)).status_code == 200
    finally:
        keystone.server.start()
    log = haven_keystone.log.read_text()
    assert fresh not in log and cached not in log and keystone.service.password not in log


def test_a_service_user_without_the_service_role_is_a_503_naming_the_fix(keystone: KeystoneLab) -> None:
    member = keystone.member  # may validate only its own tokens under Keystone's policy
    credentials = KeystoneCredentials(member.auth_url, member.username, member.password, member.project_name)
    authenticator = KeystoneAuthenticator(credentials)
    with pytest.raises(AuthUnavailable, match="may not validate tokens; give it the service"):
        authenticator.authenticate(keystone.reader.token())
    assert member.password not in repr(authenticator)


def test_wrong_service_credentials_are_a_503_not_a_401(keystone: KeystoneLab) -> None:
    service = keystone.service
    credentials = KeystoneCredentials(service.auth_url, service.username, "wrong", service.project_name)
    with pytest.raises(AuthUnavailable, match="refused haven's service credentials"):
        KeystoneAuthenticator(credentials).authenticate(keystone.reader.token())


def test_the_openstack_cli_logs_in_with_a_password_and_finds_haven_in_the_catalog(
    keystone: KeystoneLab, haven_keystone: HavenServer
) -> None:
    env = openstack_env(keystone)
    listed = run_openstack(env, "segment", "list", "-f", "json")
    assert listed.returncode == 0, listed.stderr
    assert {"segment-az1", "segment-az2", "segment-az3"} <= {s["name"] for s in json.loads(listed.stdout)}
    member = {**env, "OS_USERNAME": keystone.member.username, "OS_PASSWORD": keystone.member.password}
    refused = run_openstack(member, "segment", "list")
    assert refused.returncode != 0 and "os_masakari_api:segments:index" in refused.stderr


def admin_connection(keystone: KeystoneLab) -> openstack.connection.Connection:
    """openstacksdk logged in to Keystone as the lab's admin with a password (no clouds.yaml, no env)."""
    account = keystone.admin
    return openstack.connect(
        auth_url=account.auth_url,
        username=account.username,
        password=account.password,
        project_name=account.project_name,
        user_domain_name="Default",
        project_domain_name="Default",
        region_name=keystone.server.region,
        load_yaml_config=False,
        load_envvars=False,
    )


def openstack_env(keystone: KeystoneLab) -> dict[str, str]:
    """The environment of an `openstack` CLI logged in to Keystone as the lab's admin, with a password."""
    account = keystone.admin
    return {
        "PATH": os.environ.get("PATH", ""),
        "OS_AUTH_URL": account.auth_url,
        "OS_USERNAME": account.username,
        "OS_PASSWORD": account.password,
        "OS_PROJECT_NAME": account.project_name,
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": keystone.server.region,
        "OS_IDENTITY_API_VERSION": "3",
    }


def run_openstack(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    command = [OPENSTACK, *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
