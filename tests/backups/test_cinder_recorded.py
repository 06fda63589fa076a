"""The Cinder path of the OpenStack backup driver, against recorded Cinder API answers.

Why recorded answers: these machines cannot run Cinder with a backend that cinder-backup can read (no
device-mapper in the kernel, so no LVM; the fake driver shipped in cinder has no data path), so the lab
has no Cinder; docs/backups.md ("Cinder on these machines") gives the probe and its figures. The
answers in tests/backups/cinder/ are written in the shape of Cinder's API reference samples for
microversion 3.43 (backups with metadata, ``has_dependent_backups``, ``is_incremental``; the restore's
``volume_id``; Cinder's ``badRequest`` and ``itemNotFound`` error bodies with its own messages), and
Nova's for the server and the boot. A small local HTTP server (tests/cloud/recorded_nova.py) serves
them over loopback; openstacksdk and keystoneauth run for real (version discovery, microversion
headers, error translation), and haven's runner and restorer drive the driver as haven serve does.
What is proven: the requests haven makes (paths, bodies, microversions) and what it does with each
answer; not what a real Cinder does (that needs a Cinder: "Not done yet" in docs/backups.md).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.recorded_nova import Answer, RecordedNova, serving
from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.restores import Restorer, volume_name
from haven.backups.runner import BackupRunner
from haven.cloud.openstack import OpenStackCloud, open_cloud
from haven.cloud.openstack.backups import OpenStackBackups
from haven.domain.backups import (
    BackupKind,
    BackupRecord,
    BackupState,
    RestoreState,
    Trigger,
)
from haven.domain.clock import VirtualClock
from haven.domain.ids import ServerId
from haven.store import Store

pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
RECORDED = Path(__file__).parent / "cinder"
SERVER = ServerId("6d2a1f3e-5b7c-4e8d-9a0b-1c2d3e4f5a6b")
VOL = "3f9e2b1c-7a6d-4c5b-8e9f-0a1b2c3d4e5f"
FULL = "b7c1d2e3-f4a5-4b6c-9d7e-8f9a0b1c2d3e"
INC = "c8d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
NEWVOL = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"
NEWSERVER = "f2a3b4c5-d6e7-4f8a-9b0c-1d2e3f4a5b6c"
C = "/volume/v3"  # Cinder's endpoint (no project id in the path: Cinder accepts both)
N = "/v2.1"


def recorded(file: str, /, **fields: Any) -> Any:
    """A recorded answer, its entities' ``fields`` set (a name haven chose, say)."""
    body = json.loads((RECORDED / f"{file}-response.json").read_text())
    for entity in body.values():
        for item in entity if isinstance(entity, list) else [entity]:
            item.update(fields)
    return copy.deepcopy(body)


@pytest.fixture
def stub() -> Iterator[RecordedNova]:
    for server in serving():
        server.serve_versions()
        versions = recorded("versions-v3")
        versions["versions"][0]["links"][0]["href"] = f"{server.url}{C}/"
        server.answer("GET", C, Answer(200, versions))
        server.answer("GET", f"{N}/servers/{SERVER}", Answer(200, recorded("nova-server-show-volume-backed")))
        yield server


@pytest.fixture
def cloud(stub: RecordedNova) -> Iterator[OpenStackCloud]:
    driver = open_cloud(
        None, max_workers=2, auth_type="admin_token", auth={"endpoint": stub.url, "token": "t"},
        compute_endpoint_override=f"{stub.url}{N}", block_storage_endpoint_override=f"{stub.url}{C}",
        image_endpoint_override=f"{stub.url}/image",
    )  # fmt: skip
    yield driver
    driver.close()


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.open("sqlite://")
    yield s
    s.close()


def config() -> BackupsConfig:
    return BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(jitter_s=0.0, chain_max=3),
        drills=DrillSettings(timeout_s=600.0),
    )


def record(
    backup_id: str, state: BackupState, at: float, volumes: dict[str, str], **extra: Any
) -> BackupRecord:
    return BackupRecord(
        backup_id, SERVER, "db-1", "p", BackupKind.VOLUME, at, Trigger.SCHEDULE, "haven-daily",
        f"haven-backup-{backup_id}", state, at, volume_backups=volumes, **extra,
    )  # fmt: skip


def stored(store: Store, r: BackupRecord, *states: BackupState) -> None:
    """``r`` issued, then through ``states`` as the runner commits them."""
    store.issue_backup(r)
    for was, now in zip((r.state, *states), states, strict=False):
        store.save_backup(dataclasses.replace(r, state=now), [was])


def version(request: Any) -> str:
    return str(request.headers.get("openstack-api-version"))


async def test_a_full_then_an_incremental_backup_of_a_volume_backed_server(
    cloud: OpenStackCloud, stub: RecordedNova, store: Store
) -> None:
    port = cloud.backups()
    assert isinstance(port, OpenStackBackups)
    clock = VirtualClock(1796529600.0)  # 2026-12-06T04:00:00Z
    runner = BackupRunner(config(), port, store, clock)
    stub.answer("GET", f"{C}/backups/detail", Answer(200, recorded("backups-list-detailed-empty")))
    stub.answer("POST", f"{C}/backups", Answer(202, recorded("backup-create-full")))
    stub.answer(
        "GET", f"{C}/backups/{FULL}",
        Answer(200, recorded("backup-show-full-creating")),
        Answer(200, recorded("backup-show-full-available")),
    )  # fmt: skip

    first = await runner.backup_now(SERVER)
    assert first.state is BackupState.CREATING and first.volume_backups == {VOL: FULL}
    ((create,),) = [stub.made("POST", f"{C}/backups")]
    assert create.body == {
        "backup": {"volume_id": VOL, "name": f"{first.name}-{VOL}", "incremental": False, "force": True,
                   "metadata": {"haven_backup": f"{first.name}-{VOL}"}}
    }  # fmt: skip
    assert version(create) == "volume 3.43"
    (lookup,) = stub.made("GET", f"{C}/backups/detail")  # a resumed step's lookup came first
    assert lookup.query == {"name": [f"{first.name}-{VOL}"]}
    await runner.advance(first)  # Cinder: creating
    assert store.get_backup(first.id).state is BackupState.CREATING
    await runner.advance(store.get_backup(first.id))  # Cinder: available
    assert store.get_backup(first.id).state is BackupState.AVAILABLE

    clock.advance_to(clock.now() + 3600)
    stub.answer("POST", f"{C}/backups", Answer(202, recorded("backup-create-incremental")))
    second = await runner.backup_now(SERVER)
    assert second.incremental and second.parent_id == first.id and second.volume_backups == {VOL: INC}
    incremental = stub.made("POST", f"{C}/backups")[-1]
    assert incremental.body["backup"]["incremental"] is True  # the parent's backup read available first
    assert len(stub.made("POST", f"{C}/backups")) == 2


async def test_rotation_waits_while_cinder_says_backups_depend_on_one(
    cloud: OpenStackCloud, stub: RecordedNova, store: Store
) -> None:
    clock = VirtualClock(1796540400.0)
    runner = BackupRunner(config(), cloud.backups(), store, clock)
    doomed = record("r-full", BackupState.ISSUED, 1796529600.0, {VOL: FULL})
    stored(store, doomed, BackupState.CREATING, BackupState.AVAILABLE, BackupState.DELETING)  # rotated
    refused = Answer(400, recorded("backup-delete-with-dependents-400"))
    stub.answer(
        "GET", f"{C}/backups/{FULL}",
        Answer(200, recorded("backup-show-full-with-dependents")),  # an incremental still deleting
        Answer(200, recorded("backup-show-full-available")),  # it is gone: none depends on it now
        Answer(200, recorded("backup-show-full-available")),
        Answer(200, recorded("backup-show-full-deleting")),  # Cinder took the delete
        Answer(404, recorded("backup-not-found-404")),
    )  # fmt: skip
    stub.answer("DELETE", f"{C}/backups/{FULL}", refused, Answer(202))

    await runner.advance(store.get_backup(doomed.id))
    assert stub.made("DELETE", f"{C}/backups/{FULL}") == []  # has_dependent_backups: not even asked
    assert store.get_backup(doomed.id).state is BackupState.DELETING
    await runner.advance(store.get_backup(doomed.id))  # asked, Cinder's 400 (a race): waits, no error
    assert len(stub.made("DELETE", f"{C}/backups/{FULL}")) == 1
    assert store.get_backup(doomed.id).state is BackupState.DELETING
    await runner.advance(store.get_backup(doomed.id))  # asked again: accepted (202)
    (_, accepted) = stub.made("DELETE", f"{C}/backups/{FULL}")
    assert version(accepted) == "volume 3.43"
    assert store.get_backup(doomed.id).state is BackupState.DELETING  # Cinder deletes later
    await runner.advance(store.get_backup(doomed.id))  # Cinder: deleting
    assert store.get_backup(doomed.id).state is BackupState.DELETING
    await runner.advance(store.get_backup(doomed.id))  # Cinder: 404, gone
    assert store.get_backup(doomed.id).state is BackupState.DELETED
    assert len(stub.made("DELETE", f"{C}/backups/{FULL}")) == 2


async def test_a_restore_as_new_restores_the_volume_once_then_boots_from_it(
    cloud: OpenStackCloud, stub: RecordedNova, store: Store
) -> None:
    clock = VirtualClock(1796536800.0)
    good = record("r-full", BackupState.ISSUED, 1796529600.0, {VOL: FULL})
    stored(store, good, BackupState.CREATING, BackupState.AVAILABLE)
    restorer = Restorer(cloud.backups(), store, clock, config().drills)
    stub.answer("GET", f"{N}/servers/detail", Answer(200, recorded("nova-servers-list-empty")))
    stub.answer("GET", f"{C}/volumes/detail", Answer(200, recorded("volumes-list-detailed-empty")))
    stub.answer("POST", f"{C}/backups/{FULL}/restore", Answer(202, recorded("backup-restore")))
    stub.answer("GET", f"{C}/volumes/{NEWVOL}", Answer(200, recorded("volume-show-restoring")))

    # the server is gone and its backup recorded no networks: they are named (here: none at all)
    issued = await restorer.restore(SERVER, None, "db-restored", networks=[])
    assert issued.state is RestoreState.ISSUED  # Cinder restores: nothing booted yet
    name = volume_name(issued, 0)
    ((restore,),) = [stub.made("POST", f"{C}/backups/{FULL}/restore")]
    assert restore.body == {"restore": {"name": name}} and version(restore) == "volume 3.43"
    assert stub.made("POST", f"{N}/servers") == []

    stub.answer(
        "GET", f"{C}/volumes/detail", Answer(200, recorded("volumes-list-detailed-available", name=name))
    )
    stub.answer("GET", f"{N}/flavors", Answer(200, recorded("nova-flavors")))
    stub.answer("POST", f"{N}/servers", Answer(202, recorded("nova-server-create")))
    clock.advance_to(clock.now() + 30)
    booting = await restorer.advance(issued)  # what a resumed engine does: find the volume by its name
    assert booting.state is RestoreState.BOOTING and booting.target_id == NEWSERVER
    assert len(stub.made("POST", f"{C}/backups/{FULL}/restore")) == 1  # never a second restore
    assert stub.made("GET", f"{C}/volumes/detail")[-1].query == {"name": [name]}
    (boot,) = stub.made("POST", f"{N}/servers")
    server = boot.body["server"]
    assert server["block_device_mapping_v2"] == [
        {"boot_index": 0, "uuid": NEWVOL, "source_type": "volume", "destination_type": "volume",
         "delete_on_termination": False}
    ]  # fmt: skip
    assert server["networks"] == "none" and server["flavorRef"] == "2" and server["name"] == "db-restored"
    assert server["metadata"]["haven_restore_id"] == issued.id
    assert boot.headers["x-openstack-nova-api-version"] == "2.37"


async def test_a_volume_that_ends_error_restoring_fails_the_restore_and_is_deleted(
    cloud: OpenStackCloud, stub: RecordedNova, store: Store
) -> None:
    clock = VirtualClock(1796536800.0)
    good = record("r-full", BackupState.ISSUED, 1796529600.0, {VOL: FULL})
    stored(store, good, BackupState.CREATING, BackupState.AVAILABLE)
    restorer = Restorer(cloud.backups(), store, clock, config().drills)
    stub.answer("GET", f"{N}/servers/detail", Answer(200, recorded("nova-servers-list-empty")))
    stub.answer("GET", f"{C}/volumes/detail", Answer(200, recorded("volumes-list-detailed-empty")))
    stub.answer("POST", f"{C}/backups/{FULL}/restore", Answer(202, recorded("backup-restore")))
    stub.answer("GET", f"{C}/volumes/{NEWVOL}", Answer(200, recorded("volume-show-restoring")))
    issued = await restorer.restore(SERVER, None, "db-restored", networks=[])  # gone, none recorded
    name = volume_name(issued, 0)
    failed_volume = recorded("volumes-list-detailed-available", name=name, status="error_restoring")
    stub.answer("GET", f"{C}/volumes/detail", Answer(200, failed_volume))
    stub.answer("DELETE", f"{C}/volumes/{NEWVOL}", Answer(202))
    clock.advance_to(clock.now() + 30)
    failed = await restorer.advance(issued)
    assert failed.state is RestoreState.FAILED and "error_restoring" in failed.error
    assert stub.made("POST", f"{N}/servers") == []  # nothing booted from a broken volume
    (delete,) = stub.made("DELETE", f"{C}/volumes/{NEWVOL}")  # and the volume it left is deleted
    assert version(delete) == "volume 3.43"
