"""/v1/haven/backups, /v1/haven/backups/restores and /v1/haven/recovery-points over the real app, with
haven serve's BackupService on a simulated cloud in virtual time; judged from the simulated cloud's
ground truth (its createBackup calls, its servers and each disk's data)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from haven.api.app import create_app
from haven.api.auth import Principal
from haven.api.routes.haven_backups import attach_backups
from haven.backups.config import BackupsConfig, SchedulerSettings
from haven.backups.serving import BackupService
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
from haven.domain.ids import ServerId
from haven.store import Store

from .conftest import FakeIntake


class Roles:
    def authenticate(self, token: str | None) -> Principal | None:
        return None if token is None else Principal(user_id=token, project_id="p", roles=frozenset({token}))


ADMIN, READER = {"X-Auth-Token": "admin"}, {"X-Auth-Token": "reader"}


@dataclass
class Rig:
    http: httpx.AsyncClient
    clock: VirtualClock
    port: SimBackups
    service: BackupService
    server: ServerId

    async def settle(self, seconds: float = 400.0) -> None:
        """Rounds of haven serve's backup service while ``seconds`` of virtual time pass."""
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            await self.service.run_round()
            self.clock.advance_to(self.clock.now() + 30.0)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=3, vms=3, zones=1), clock)
    port = SimBackups(cloud)
    server = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]
    config = BackupsConfig(enabled=True, scheduler=SchedulerSettings(jitter_s=0.0))
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        service = BackupService(config, port, store, clock)
        app = create_app(store, FakeIntake(store, clock), "t", clock, authenticator=Roles())
        attach_backups(app, service)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
            yield Rig(http, clock, port, service, server)


async def test_a_backup_now_then_a_restore_as_new_and_in_place_bring_the_backed_up_data_back(
    rig: Rig,
) -> None:
    taken = await rig.http.post("/v1/haven/backups", json={"server_id": rig.server}, headers=ADMIN)
    assert taken.status_code == 202, taken.text
    assert [s for _, s, _ in rig.port.create_calls] == [rig.server]  # Nova was asked, once
    again = await rig.http.post("/v1/haven/backups", json={"server_id": rig.server}, headers=ADMIN)
    assert again.status_code == 409 and "in flight" in again.json()["conflictingRequest"]["message"]
    await rig.settle()
    listed = await rig.http.get(f"/v1/haven/backups?server={rig.server}&state=available", headers=READER)
    assert [b["id"] for b in listed.json()["backups"]] == [taken.json()["backup"]["id"]]

    data = rig.port.disk(rig.server)
    rig.port.write(rig.server, "corrupted")
    as_new = await rig.http.post(
        "/v1/haven/backups/restores", json={"server_id": rig.server, "as_new": "restored"}, headers=ADMIN
    )
    assert as_new.status_code == 202, as_new.text
    in_place = await rig.http.post(
        "/v1/haven/backups/restores", json={"server_id": rig.server}, headers=ADMIN
    )
    assert in_place.status_code == 202, in_place.text
    await rig.settle()
    (restored,) = await rig.port.find_targets("restored")  # ground truth: the simulated cloud's servers
    assert restored.vm_state is VmState.ACTIVE and rig.port.disk(restored.id) == data
    assert (await rig.port.get_target(rig.server)).vm_state is VmState.ACTIVE
    assert rig.port.disk(rig.server) == data  # rebuilt in place from the backup
    restores = (await rig.http.get("/v1/haven/backups/restores", headers=READER)).json()["restores"]
    assert {r["state"] for r in restores} == {"done"}
    points = (await rig.http.get("/v1/haven/recovery-points", headers=READER)).json()["recovery_points"]
    assert [(p["server_id"], p["backup_id"]) for p in points] == [(rig.server, taken.json()["backup"]["id"])]


async def test_bad_input_is_a_4xx_naming_it_and_changes_nothing(rig: Rig) -> None:
    cases = [
        ("/v1/haven/backups", {"server_id": "no-such"}, 404, "No server with id no-such"),
        ("/v1/haven/backups", {"server": rig.server}, 400, "server_id"),
        ("/v1/haven/backups/restores", {"server_id": rig.server}, 400, "has no good backup"),
        ("/v1/haven/backups/restores", {"server_id": rig.server, "at": "yesterday"}, 400, "at"),
    ]
    for path, body, status, words in cases:
        answer = await rig.http.post(path, json=body, headers=ADMIN)
        assert answer.status_code == status and words in answer.text, (path, body, answer.text)
    bad_state = await rig.http.get("/v1/haven/backups?state=lost", headers=READER)
    assert bad_state.status_code == 400 and "'lost' is not one of" in bad_state.text
    refused = await rig.http.post("/v1/haven/backups", json={"server_id": rig.server}, headers=READER)
    assert refused.status_code == 403
    assert rig.port.create_calls == []  # nothing was asked of the cloud


async def test_without_backups_enabled_a_backup_now_is_a_409_naming_the_setting(tmp_path: Path) -> None:
    clock = VirtualClock()
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        app = create_app(store, FakeIntake(store, clock), "t", clock, authenticator=Roles())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
            answer = await http.post("/v1/haven/backups", json={"server_id": "x"}, headers=ADMIN)
            listed = await http.get("/v1/haven/backups?limit=5", headers=READER)
    assert answer.status_code == 409 and "[backups] enabled = true" in answer.text
    assert listed.status_code == 200 and listed.json() == {"backups": []}
