"""Defects a review found in backups and restores, each reproduced on the simulated cloud in virtual
time and judged from its ground truth (its rebuild and createBackup calls, its servers, its images and
each disk's data), never from haven's own records alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest

from haven.api.app import create_app
from haven.api.auth import Principal
from haven.api.intake import NotificationIntake
from haven.api.routes.haven_backups import attach_backups
from haven.backups.config import BackupsConfig, SchedulerSettings
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.backups.serving import BackupService
from haven.cloud.sim.backups import SimBackups, SimImage
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupState, ImageStatus, RestoreState
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
from haven.domain.ids import ServerId
from haven.store import Store


@dataclass
class Rig:
    clock: VirtualClock
    port: SimBackups
    store: Store
    servers: list[ServerId]
    config: BackupsConfig

    def runner(self) -> BackupRunner:
        return BackupRunner(self.config, self.port, self.store, self.clock)

    def restorer(self) -> Restorer:
        return Restorer(self.port, self.store, self.clock, self.config.drills)

    def later(self, seconds: float = 30.0) -> None:
        self.clock.advance_to(self.clock.now() + seconds)

    async def backed_up(self, server: ServerId) -> None:
        """One good backup of ``server`` (a backup now, passes until Glance's image is active)."""
        runner = self.runner()
        await runner.backup_now(server)
        for _ in range(20):
            self.later()
            await runner.run_pass()
            if self.store.backups_of(server)[-1].state is BackupState.AVAILABLE:
                return
        raise AssertionError("the backup never became available")


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=2, zones=1), clock)
    store = Store.open("sqlite://")
    servers = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    config = BackupsConfig(enabled=True, scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=2))
    yield Rig(clock, SimBackups(cloud), store, servers, config)
    store.close()


# ---- B1: a resumed in-place restore never rebuilds a second time --------------------------------------


async def test_a_resumed_rebuild_is_adopted_and_never_wipes_what_the_guest_wrote_since(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = rig.servers[0]
    await rig.backed_up(server)
    backed_up = rig.port.disk(server)
    rig.port.write(server, "corrupted")

    def killed(*_: object, **__: object) -> None:
        raise RuntimeError("haven killed after the rebuild call, before committing its outcome")

    monkeypatch.setattr(rig.store, "save_restore", killed)
    with pytest.raises(RuntimeError):
        await rig.restorer().restore(server, None, None)
    monkeypatch.undo()
    assert len(rig.port.rebuild_calls) == 1
    rig.later(60.0)
    assert (await rig.port.get_target(server)).vm_state is VmState.ACTIVE
    assert rig.port.disk(server) == backed_up  # the rebuild finished: the backup's data is back
    rig.port.write(server, "written by the guest after the restore")

    restarted = rig.restorer()  # a new engine resumes the unfinished restore
    for _ in range(5):
        await restarted.drill_round([])
        rig.later()
    assert len(rig.port.rebuild_calls) == 1  # Nova was asked once
    assert rig.port.disk(server) == "written by the guest after the restore"
    (record,) = rig.store.list_restores()
    assert record.state is RestoreState.DONE


async def test_a_second_restore_of_the_same_backup_rebuilds_again(rig: Rig) -> None:
    server = rig.servers[0]
    await rig.backed_up(server)
    restorer = rig.restorer()
    for _ in range(2):
        rig.port.write(server, "corrupted")
        record = await restorer.restore(server, None, None)
        for _ in range(5):
            rig.later()
            record = await restorer.advance(record)
        assert record.state is RestoreState.DONE
    assert len(rig.port.rebuild_calls) == 2 and rig.port.disk(server) != "corrupted"


# ---- B2: a restore as new finds its own boot by its tag, never a server that shares the name ----------


async def test_a_restore_as_new_never_adopts_another_server_of_that_name(rig: Rig) -> None:
    server, other = rig.servers
    await rig.backed_up(server)
    backed_up = rig.port.disk(server)
    name = rig.port.cloud.sim_server(other).name
    record = await rig.restorer().restore(server, None, name)
    for _ in range(5):
        rig.later()
        record = await rig.restorer().advance(record)
    assert record.state is RestoreState.DONE and record.target_id not in rig.servers
    named = await rig.port.find_targets(name)
    assert {t.id for t in named} == {other, record.target_id}  # a new server was booted
    assert rig.port.disk(ServerId(record.target_id)) == backed_up
    assert rig.port.disk(other) != backed_up  # the other server was never touched


async def test_a_restore_as_new_whose_answer_was_lost_adopts_its_own_boot(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = rig.servers[0]
    await rig.backed_up(server)

    def killed(*_: object, **__: object) -> None:
        raise RuntimeError("haven killed after the boot call, before committing its outcome")

    monkeypatch.setattr(rig.store, "save_restore", killed)
    with pytest.raises(RuntimeError):
        await rig.restorer().restore(server, None, "db(1")  # a name that is no valid regular expression
    monkeypatch.undo()
    restarted = rig.restorer()
    for _ in range(5):
        await restarted.drill_round([])
        rig.later()
    named = await rig.port.find_targets("db(1")
    assert len(named) == 1 and named[0].vm_state is VmState.ACTIVE  # one boot, never two
    (record,) = rig.store.list_restores()
    assert record.state is RestoreState.DONE and record.target_id == named[0].id


async def test_an_issued_restore_the_cloud_keeps_refusing_fails_after_the_timeout(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from haven.domain.errors import TemporaryError

    server = rig.servers[0]
    await rig.backed_up(server)

    async def refused(*_: object, **__: object) -> object:
        raise TemporaryError("Nova answered 500", 5.0)

    monkeypatch.setattr(rig.port, "find_restored", refused)
    record = await rig.restorer().restore(server, None, "restored")
    assert record.state is RestoreState.ISSUED
    rig.later(rig.config.drills.timeout_s + 1)
    record = await rig.restorer().advance(record)
    assert record.state is RestoreState.FAILED and "Nova answered 500" in record.error
    assert await rig.port.find_targets("restored") == []


# ---- B3: a pass never advances a record this process is still asking the cloud for --------------------


async def test_a_pass_during_a_backup_now_never_asks_nova_twice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = rig.servers[0]
    runner = rig.runner()
    create = rig.port.create_image_backup

    async def slow(*args: Any, **kw: Any) -> str:
        await asyncio.sleep(0.5)  # Nova takes a moment to answer createBackup
        return await create(*args, **kw)

    monkeypatch.setattr(rig.port, "create_image_backup", slow)
    api = asyncio.create_task(runner.backup_now(server))  # POST /v1/haven/backups
    while not rig.store.backups_of(server):  # the API committed the backup and is asking Nova
        await asyncio.sleep(0.01)
    await runner.run_pass()  # the leader's pass meanwhile
    record = await api
    assert record.state is BackupState.CREATING
    assert [s for _, s, _ in rig.port.create_calls] == [server]  # Nova was asked once
    images = [i for i in rig.port.images.values() if i.server_id == server]
    assert len(images) == 1


async def test_a_drill_round_during_an_api_restore_never_boots_twice(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = rig.servers[0]
    await rig.backed_up(server)
    restorer = rig.restorer()
    boot = rig.port.boot_from_image

    async def slow(*args: Any, **kw: Any) -> ServerId:
        await asyncio.sleep(0.5)  # Nova takes a moment to answer the boot
        return await boot(*args, **kw)

    monkeypatch.setattr(rig.port, "boot_from_image", slow)
    api = asyncio.create_task(restorer.restore(server, None, "restored"))
    while not rig.store.list_restores():  # the API committed the restore and is asking Nova
        await asyncio.sleep(0.01)
    await restorer.drill_round([])  # the leader's round meanwhile
    await api
    assert len(await rig.port.find_targets("restored")) == 1


# ---- B4: a follower's API refuses a backup or a restore, asking nothing of the cloud -----------------


@dataclass(frozen=True)
class Follower:
    identity: str = "engine-b"
    backend: str = "etcd"

    def is_leader(self) -> bool:
        return False


async def test_a_followers_api_refuses_backups_and_restores_with_a_503_naming_it(rig: Rig) -> None:
    server = rig.servers[0]
    await rig.backed_up(server)
    calls, records = list(rig.port.create_calls), rig.store.backups_of(server)
    service = BackupService(rig.config, rig.port, rig.store, rig.clock)
    intake = cast(NotificationIntake, None)  # the backup routes never use the engine's intake
    app = create_app(rig.store, intake, "t", rig.clock, authenticator=Roles(), leadership=Follower())
    attach_backups(app, service)
    admin = {"X-Auth-Token": "admin"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
        taken = await http.post("/v1/haven/backups", json={"server_id": server}, headers=admin)
        restored = await http.post(
            "/v1/haven/backups/restores", json={"server_id": server, "as_new": "x"}, headers=admin
        )
    for answer in (taken, restored):
        assert answer.status_code == 503 and "engine-b" in answer.text and "not the leader" in answer.text
    assert rig.port.create_calls == calls and rig.port.rebuild_calls == []  # nothing asked of the cloud
    assert await rig.port.find_targets("x") == []
    assert rig.store.backups_of(server) == records and rig.store.list_restores() == []


class Roles:
    def authenticate(self, token: str | None) -> Principal | None:
        return None if token is None else Principal(user_id=token, project_id="p", roles=frozenset({token}))


# ---- B5: a permanent refusal fails the backup with Nova's words, never leaves it issued ----------------

QUOTA = "Maximum number of images exceeded (quota: 10)"


async def test_a_permanent_refusal_fails_the_backup_and_never_blocks_the_schedule(rig: Rig) -> None:
    server = rig.servers[0]
    rig.port.cloud.sim_server(server).metadata.update({"haven_backup": "hourly"})
    rig.port.faults.refuse_permanently = QUOTA
    runner = rig.runner()
    for _ in range(3):
        await runner.run_pass()
        rig.later(60.0)
    records = rig.store.backups_of(server)
    assert records and all(r.state is BackupState.FAILED and QUOTA in r.error for r in records)
    assert rig.port.create_calls == [] and rig.port.images == {}
    rig.port.faults.refuse_permanently = ""  # the quota raised: the schedule goes on
    for _ in range(3 * 60):
        await runner.run_pass()
        rig.later(60.0)
    assert [s for _, s, _ in rig.port.create_calls].count(server) >= 1
    assert any(i.status.value == "active" for i in rig.port.images.values() if i.server_id == server)


async def test_the_api_answers_a_permanent_refusal_with_a_409_carrying_novas_message(rig: Rig) -> None:
    server = rig.servers[0]
    rig.port.faults.refuse_permanently = QUOTA
    service = BackupService(rig.config, rig.port, rig.store, rig.clock)
    intake = cast(NotificationIntake, None)
    app = create_app(rig.store, intake, "t", rig.clock, authenticator=Roles())
    attach_backups(app, service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
        answer = await http.post(
            "/v1/haven/backups", json={"server_id": server}, headers={"X-Auth-Token": "admin"}
        )
    assert answer.status_code == 409 and QUOTA in answer.text, answer.text
    (record,) = rig.store.backups_of(server)
    assert record.state is BackupState.FAILED and QUOTA in record.error
    assert rig.port.images == {}


# ---- B6: Nova's rotation of haven's backups never deletes the tenant's own ----------------------------


async def test_novas_rotation_of_havens_backups_keeps_the_tenants_own_backup_images(rig: Rig) -> None:
    server = rig.servers[0]
    rig.port.cloud.sim_server(server).metadata.update({"haven_backup": "hourly", "haven_backup_keep": "1"})
    # the tenant's own `openstack server backup create --type hourly`, taken before haven's
    tenant = SimImage(
        "tenant-image", "mine", ImageStatus.ACTIVE, rig.clock.now(), server, "hourly", {}, "tenant data"
    )
    rig.port.images[tenant.id] = tenant
    runner = rig.runner()
    for _ in range(5 * 60):
        await runner.run_pass()
        rig.later(60.0)
    assert tenant.status is ImageStatus.ACTIVE  # Nova's rotation left the tenant's image alone
    havens = [i for i in rig.port.images.values() if i.server_id == server and i.id != tenant.id]
    assert len(havens) >= 4 and {i.backup_type for i in havens} == {"haven-hourly"}
    assert sum(i.status is ImageStatus.ACTIVE for i in havens) <= 2  # haven's own still rotate
