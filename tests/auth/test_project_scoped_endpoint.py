"""haven registered in Keystone the way devstack registers Masakari: ``.../v1/$(tenant_id)s``.

Keystone puts the token's project id into the catalog URL, so openstacksdk and the
``openstack segment ...`` CLI call ``/v1/<project_id>/segments``. haven serves that form and,
as Masakari does, answers 400 when the URL's project is not the token's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from clients.conftest import HavenServer
from haven.lab.keystone import INSTANCE_HA
from servers.keystone import KeystoneLab

from .test_keystone_auth import admin_connection, as_, openstack_env, run_openstack, segment_body

pytestmark = [
    pytest.mark.keystone,
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]


@pytest.fixture(scope="module")
def scoped_catalog(keystone: KeystoneLab, haven_keystone: HavenServer) -> Iterator[str]:
    """The catalog lists haven as devstack lists Masakari; the plain endpoint comes back after."""
    keystone.provisioner.endpoint(INSTANCE_HA, "haven", f"{haven_keystone.url}/v1/$(tenant_id)s")
    try:
        yield haven_keystone.url
    finally:
        keystone.provisioner.endpoint(INSTANCE_HA, "haven", haven_keystone.endpoint)


def test_openstacksdk_works_through_a_tenant_id_endpoint(scoped_catalog: str, keystone: KeystoneLab) -> None:
    conn = admin_connection(keystone)
    try:
        project = conn.current_project_id
        assert conn.instance_ha.get_endpoint().rstrip("/") == f"{scoped_catalog}/v1/{project}"
        created = conn.instance_ha.create_segment(name="scoped-sdk", recovery_method="auto",
                                                  service_type="COMPUTE")  # fmt: skip
        try:
            conn.instance_ha.update_segment(created.uuid, description="through $(tenant_id)s")
            shown = conn.instance_ha.get_segment(created.uuid)
            assert shown.description == "through $(tenant_id)s"
            names = {segment.name for segment in conn.instance_ha.segments()}
            assert {"segment-az1", "scoped-sdk"} <= names
        finally:
            conn.instance_ha.delete_segment(created.uuid, ignore_missing=False)
    finally:
        conn.close()


def test_the_openstack_cli_works_through_a_tenant_id_endpoint(
    scoped_catalog: str, keystone: KeystoneLab
) -> None:
    env = openstack_env(keystone)
    listed = run_openstack(env, "segment", "list", "-f", "json")
    assert listed.returncode == 0, listed.stderr
    assert {"segment-az1", "segment-az2", "segment-az3"} <= {s["name"] for s in json.loads(listed.stdout)}


def test_another_projects_url_is_a_400_as_in_masakari(
    haven_keystone: HavenServer, keystone: KeystoneLab
) -> None:
    session = keystone.admin.session()
    token, project = session.get_token(), session.get_project_id()
    assert token and project
    other = "0" * 32 if project != "0" * 32 else "1" * 32
    with httpx.Client(base_url=haven_keystone.url, headers=as_(token), timeout=30) as api:
        assert api.get(f"/v1/{project}/segments").status_code == 200
        refused = api.post(f"/v1/{other}/segments", json=segment_body())
        assert refused.status_code == 400, refused.text
        assert refused.json()["badRequest"]["message"] == (
            f"Malformed request URL: URL's project_id '{other}' doesn't match "
            f"Context's project_id '{project}'"
        )
        # No token at all is still a 401 before anything else, and a member still gets Masakari's 403.
        assert httpx.get(f"{haven_keystone.url}/v1/{project}/segments").status_code == 401
        member = keystone.member.session()
        forbidden = api.get(f"/v1/{member.get_project_id()}/segments", headers=as_(str(member.get_token())))
        assert forbidden.status_code == 403
