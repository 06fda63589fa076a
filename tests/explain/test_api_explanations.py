"""``GET /v1/haven/explanations[/{id}]`` and ``/v1/haven/canaries`` over the real app and a real store:
what the explainer and a canary round stored, with the API's own authentication, and the mistakes refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.conftest import TOKEN, FakeIntake
from haven.api.app import create_app
from haven.canary.model import CanarySettings
from haven.canary.runner import CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.cloud.sim import CloudSpec, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, NodeEvent
from haven.domain.clock import VirtualClock
from haven.explain.explainer import Explainer
from haven.store import Store
from haven.topology import openstack_topology


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, str]]:
    clock = VirtualClock()
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        cloud = build_cloud(CloudSpec(hosts=2, vms=0, zones=1, seed=1), clock)[0]
        for host in await cloud.list_hosts():
            await cloud.force_down(host.name, True)  # nowhere to boot: the canary fails
        store.keep_evidence({"m": NodeEvent("placement-api", EvidenceKind.DOWN, clock.now() - 30)}, 0.0)
        explainer = Explainer(store, openstack_topology(CATALOGUE.values()), clock)
        settings = CanarySettings(probes=False, poll_s=0.5)
        runner = CanaryRunner(
            SimCanaryCloud(cloud, clock), store, clock, settings, explainer.open_and_explain
        )
        (run,) = (await runner.round()).runs
        app = create_app(store, FakeIntake(store, clock), TOKEN, clock)
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(
                transport=transport, base_url="http://h", headers={"X-Auth-Token": TOKEN}
            ) as ok,
            httpx.AsyncClient(transport=transport, base_url="http://h") as anonymous,
        ):
            yield ok, anonymous, run.id


async def test_explanations_and_canaries_are_read_with_the_api_s_auth(
    rig: tuple[httpx.AsyncClient, httpx.AsyncClient, str],
) -> None:
    client, anonymous, run_id = rig
    listed = (await client.get("/v1/haven/explanations")).json()["explanations"]
    assert [e["id"] for e in listed] == [f"canary:{run_id}"]
    one = await client.get(f"/v1/haven/explanations/canary:{run_id}")
    assert one.status_code == 200
    body = one.json()["explanation"]
    assert body["state"] == "done" and body["explanations"][0]["node"] == "placement-api"
    assert "Placement went down" in body["summary"]
    canaries = (await client.get("/v1/haven/canaries")).json()["canaries"]
    assert [(c["id"], c["outcome"], c["failed_in"]) for c in canaries] == [(run_id, "failed", "scheduled")]
    assert (await client.get("/v1/haven/explanations", params={"state": "pending"})).json() == {
        "explanations": []
    }
    for path in ("/v1/haven/explanations", f"/v1/haven/explanations/canary:{run_id}", "/v1/haven/canaries"):
        assert (await anonymous.get(path)).status_code == 401


async def test_mistakes_are_4xx_naming_what_is_wrong(
    rig: tuple[httpx.AsyncClient, httpx.AsyncClient, str],
) -> None:
    client, _, _ = rig
    missing = await client.get("/v1/haven/explanations/canary:nope")
    assert missing.status_code == 404 and "canary:nope" in missing.text
    bad = await client.get("/v1/haven/explanations", params={"state": "sideways"})
    assert bad.status_code == 400 and "state" in bad.text
    assert (await client.get("/v1/haven/canaries", params={"limit": 0})).status_code == 400
