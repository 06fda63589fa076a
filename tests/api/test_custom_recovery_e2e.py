"""Custom recovery end to end: the real API over a real Engine on the simulated cloud, in virtual time.

An operator sets a segment's mode through the API, a host fails on the simulated cloud, and an
external client works through the API alone. What haven did (or did not do) is judged by the
simulated cloud's ground truth: evacuation records, power, Nova service state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.api.app import create_app
from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.ids import HostName
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store

from .conftest import AUTH, TOKEN, version

SPEC = CloudSpec(hosts=10, vms=100, zones=1, ha_fraction=1.0, seed=5)


@dataclass
class World:
    cloud: SimCloud
    clock: VirtualClock
    store: Store
    engine: Engine
    http: httpx.AsyncClient

    async def run_for(self, seconds: float) -> None:
        await run_until(
            self.engine, self.clock, self.clock.now() + seconds, wake_sources=[self.cloud.next_event_time]
        )

    async def set_mode(self, mode: str) -> None:
        (segment,) = (await self.http.get("/v1/segments")).json()["segments"]
        changed = await self.http.put(
            f"/v1/segments/{segment['uuid']}", json={"segment": {"haven_mode": mode}}
        )
        assert changed.status_code == 200 and changed.json()["segment"]["haven_mode"] == mode

    async def only_notification(self) -> dict[str, Any]:
        (listed,) = (await self.http.get("/v1/notifications")).json()["notifications"]
        shown = await self.http.get(
            f"/v1/notifications/{listed['notification_uuid']}", headers=version("1.1")
        )
        assert shown.status_code == 200
        notification: dict[str, Any] = shown.json()["notification"]
        return notification

    async def untouched(self, victim: HostName) -> None:
        """Ground truth: still powered (never fenced), not forced down, service enabled, nothing moved."""
        host = await self.cloud.get_host(victim)
        assert self.cloud.is_powered(victim) and not host.forced_down and host.service_enabled
        assert self.cloud.evacuations == [] and self.cloud.live_hosts_fenced == []


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = VirtualClock()
    cloud, _ = build_cloud(SPEC, clock)
    store = Store.open(f"sqlite:///{tmp_path}/haven.db")
    segments_per_zone(store, await cloud.list_hosts())
    engine = Engine(cloud, cloud, SimFencer(cloud), store, clock)
    engine.start()
    app = create_app(store, engine, TOKEN, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://haven", headers=AUTH) as http:
        made = World(cloud, clock, store, engine, http)
        await made.run_for(5.0)
        yield made
    store.close()


async def test_notify_only_segment_then_an_external_client_recovers(world: World) -> None:
    await world.set_mode("notify")
    victim = world.cloud.host_names()[3]
    world.cloud.hang(victim)  # powered but silent: haven's own recovery would have to power it off
    await world.run_for(60.0)
    note = await world.only_notification()
    assert (note["type"], note["hostname"], note["status"]) == ("COMPUTE_HOST", victim, "new")
    assert note["haven_recovery"]["mode"] == "notify" and note["recovery_workflow_details"] == []
    await world.untouched(victim)

    url = f"/v1/notifications/{note['notification_uuid']}"
    owner = {"owner": "ops-runbook"}
    assert (await world.http.post(f"{url}/claim", json={"claim": owner})).status_code == 200
    await world.run_for(10.0)  # the engine keeps running: it leaves a claimed notification alone
    for percentage, message in ((25, "powered off through our PDU"), (75, "12 VMs rebuilt")):
        body = {"progress": {**owner, "message": message, "percentage": percentage}}
        assert (await world.http.post(f"{url}/progress", json=body)).status_code == 200
    finished = await world.http.post(f"{url}/finish", json={"finish": {**owner, "message": "done by ops"}})
    assert finished.status_code == 200
    await world.run_for(30.0)

    note = await world.only_notification()
    assert note["status"] == "finished" and note["haven_recovery"]["claimed_by"] == "ops-runbook"
    (task,) = note["recovery_workflow_details"]
    assert task["name"] == "ExternalRecoveryTask" and task["state"] == "SUCCESS"
    assert [(d["message"], d["progress"]) for d in task["progress_details"]] == [
        ("claim by ops-runbook: claimed by ops-runbook", "0.0"),
        ("progress by ops-runbook: powered off through our PDU", "0.25"),
        ("progress by ops-runbook: 12 VMs rebuilt", "0.75"),
        ("finish by ops-runbook: done by ops", "1.0"),
    ]
    await world.untouched(victim)  # haven did nothing itself, before or after the claim
    assert world.engine.open_notifications() == []


async def test_dry_run_segment_says_what_it_would_have_done_and_does_nothing(world: World) -> None:
    await world.set_mode("dry_run")
    victim = world.cloud.host_names()[3]
    ha = [s for s in await world.cloud.list_servers(victim) if s.ha_enabled]
    world.cloud.hang(victim)
    await world.run_for(60.0)
    note = await world.only_notification()
    assert note["status"] == "finished"
    would = note["haven_recovery"]["summary"]["dry_run"]
    assert would.startswith(f"would fence {victim} (BMC reports power on), force down and disable")
    assert f"evacuate {len(ha)} VM(s) to compute-" in would and would.endswith("did nothing (dry run)")
    (task,) = note["recovery_workflow_details"]
    assert task["name"] == "DryRunTask" and task["progress_details"][0]["message"] == would
    await world.untouched(victim)
    assert {s.id for s in await world.cloud.list_servers(victim)} >= {s.id for s in ha}  # nothing moved
