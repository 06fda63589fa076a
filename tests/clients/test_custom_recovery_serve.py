"""Custom recovery against a real `haven serve`: segments put in notify mode by haven.toml.

The simulated cloud lives inside the server process, so its ground truth is judged in-process by
tests/api/test_custom_recovery_e2e.py; here the point is the real path: the config file applied at
start, a failure injected into the running service, and an external client on a real socket that
claims, reports and finishes while the engine keeps running. openstacksdk keeps working with
haven's extension fields present.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openstack
import pytest

from .conftest import HavenServer, start_haven

NOTIFY_EVERYWHERE = "".join(f'[[segments]]\nname = "segment-az{z}"\nmode = "notify"\n' for z in (1, 2, 3))

pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]


@pytest.fixture(scope="module")
def notify_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    yield from start_haven(
        tmp_path_factory.mktemp("notify") / "home",
        "--inject",
        "host-power-loss",
        "--inject-after",
        "1",
        config=NOTIFY_EVERYWHERE,
    )


def wait_for(http: httpx.Client, victim: str, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = [n for n in http.get("/v1/notifications").json()["notifications"] if n["hostname"] == victim]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, f"no notification about {victim} after {timeout_s} s"
        time.sleep(0.2)


def test_a_notify_segment_waits_for_an_external_client(notify_server: HavenServer) -> None:
    victim = notify_server.wait_for_log(r"injected:.* power lost on (compute-\d+)").group(1)
    headers = {"X-Auth-Token": notify_server.token, "OpenStack-API-Version": "instance-ha 1.1"}
    with httpx.Client(base_url=notify_server.url, headers=headers, timeout=10) as http:
        segments = http.get("/v1/segments").json()["segments"]
        assert {s["haven_mode"] for s in segments} == {"notify"}  # applied from haven.toml at start
        note = wait_for(http, victim)
        url = f"/v1/notifications/{note['notification_uuid']}"
        time.sleep(2.0)  # the engine runs on: a notify-mode notification stays new, with no steps
        shown = http.get(url).json()["notification"]
        assert shown["status"] == "new" and shown["recovery_workflow_details"] == []

        assert http.post(f"{url}/claim", json={"claim": {"owner": "ext"}}).status_code == 200
        progress = {"progress": {"owner": "ext", "message": "on it", "percentage": 50}}
        assert http.post(f"{url}/progress", json=progress).status_code == 200
        assert http.post(f"{url}/finish", json={"finish": {"owner": "ext"}}).status_code == 200
        time.sleep(1.0)
        shown = http.get(url).json()["notification"]
    assert shown["status"] == "finished" and shown["haven_recovery"]["claimed_by"] == "ext"
    assert [t["name"] for t in shown["recovery_workflow_details"]] == ["ExternalRecoveryTask"]

    sdk = openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": notify_server.endpoint, "token": notify_server.token},
        instance_ha_endpoint_override=notify_server.endpoint,
        load_yaml_config=False,
        load_envvars=False,
    )
    assert sorted(s.name for s in sdk.instance_ha.segments()) == ["segment-az1", "segment-az2", "segment-az3"]
    assert sdk.instance_ha.get_notification(note["notification_uuid"]).status == "finished"
    sdk.close()
