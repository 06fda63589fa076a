"""Which volume a volume-backed server boots from, as the OpenStack driver reads it from Nova.

Nova's ``os-extended-volumes:volumes_attached`` lists the server's block device mappings in the
database's order (``block_device_mapping_get_all_by_instance_uuids`` has no ORDER BY): the boot volume
need not be first. Nova's API shows no ``boot_index``; it shows the server's
``OS-EXT-SRV-ATTR:root_device_name`` (admin, 2.3+) and each attachment's ``device``
(``GET /servers/{id}/os-volume_attachments``). These answers (recorded, served over loopback by
tests/cloud/recorded_nova.py, openstacksdk for real) list the data volume first; the driver must
still take the volume at the root device as the boot volume, and the runner must back it up first
(a restore boots from the first). Before the fix the driver took the first listed (the data volume).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.recorded_nova import Answer, RecordedNova, serving
from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.runner import BackupRunner
from haven.cloud.openstack import OpenStackCloud, open_cloud
from haven.domain.clock import VirtualClock
from haven.domain.errors import NotFound
from haven.domain.ids import ServerId
from haven.store import Store

pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
RECORDED = Path(__file__).parent / "cinder"
SERVER = ServerId("6d2a1f3e-5b7c-4e8d-9a0b-1c2d3e4f5a6b")
BOOT = "3f9e2b1c-7a6d-4c5b-8e9f-0a1b2c3d4e5f"
DATA = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
C = "/volume/v3"
N = "/v2.1"


def recorded(file: str) -> Any:
    return json.loads((RECORDED / f"{file}-response.json").read_text())


def server_body(root: str | None) -> Any:
    body = recorded("nova-server-show-volume-backed")
    server = body["server"]
    server["os-extended-volumes:volumes_attached"] = [
        {"delete_on_termination": False, "id": DATA},  # the data volume listed first, as Nova may
        {"delete_on_termination": False, "id": BOOT},
    ]
    if root is not None:
        server["OS-EXT-SRV-ATTR:root_device_name"] = root
    return body


def attachments() -> Any:
    return {
        "volumeAttachments": [
            {"id": DATA, "volumeId": DATA, "serverId": SERVER, "device": "/dev/vdb"},
            {"id": BOOT, "volumeId": BOOT, "serverId": SERVER, "device": "/dev/vda"},
        ]
    }


@pytest.fixture
def stub() -> Iterator[RecordedNova]:
    for server in serving():
        server.serve_versions()
        versions = recorded("versions-v3")
        versions["versions"][0]["links"][0]["href"] = f"{server.url}{C}/"
        server.answer("GET", C, Answer(200, versions))
        server.answer("GET", f"{N}/servers/{SERVER}/os-volume_attachments", Answer(200, attachments()))
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


@pytest.mark.parametrize("root", ["/dev/vda", None], ids=["root-device-name", "no-root-device-name"])
async def test_the_boot_volume_is_the_one_at_the_root_device_not_the_first_listed(
    cloud: OpenStackCloud, stub: RecordedNova, root: str | None
) -> None:
    stub.answer("GET", f"{N}/servers/{SERVER}", Answer(200, server_body(root)))
    port = cloud.backups()
    target = await port.get_target(SERVER)
    assert target.volume_backed
    assert [(v.id, v.boot) for v in target.volumes] == [(DATA, False), (BOOT, True)]
    assert len(stub.made("GET", f"{N}/servers/{SERVER}/os-volume_attachments")) == 1
    await port.get_target(SERVER)  # the same volumes and root device: not read again
    assert len(stub.made("GET", f"{N}/servers/{SERVER}/os-volume_attachments")) == 1

    # the runner backs the boot volume up first (a restore boots from the first Cinder backup)
    stub.answer("GET", f"{C}/backups/detail", Answer(200, recorded("backups-list-detailed-empty")))
    created = [{"backup": {"id": f"b{i}0000000-0000-4000-8000-000000000000", "name": "x"}} for i in (1, 2)]
    stub.answer("POST", f"{C}/backups", Answer(202, created[0]), Answer(202, created[1]))
    store = Store.open("sqlite://")
    try:
        config = BackupsConfig(
            enabled=True, scheduler=SchedulerSettings(jitter_s=0.0), drills=DrillSettings()
        )
        record = await BackupRunner(config, port, store, VirtualClock(1796529600.0)).backup_now(SERVER)
        posts = stub.made("POST", f"{C}/backups")
        assert [p.body["backup"]["volume_id"] for p in posts] == [BOOT, DATA]
        assert list(store.get_backup(record.id).volume_backups) == [BOOT, DATA]
    finally:
        store.close()


async def test_a_server_listed_with_one_volume_reads_no_attachments(
    cloud: OpenStackCloud, stub: RecordedNova
) -> None:
    stub.answer("GET", f"{N}/servers/{SERVER}", Answer(200, recorded("nova-server-show-volume-backed")))
    target = await cloud.backups().get_target(SERVER)
    assert [(v.id, v.boot) for v in target.volumes] == [(BOOT, True)]
    assert stub.made("GET", f"{N}/servers/{SERVER}/os-volume_attachments") == []


OTHER = ServerId("7e3b2a4f-6c8d-4f9e-8b1c-2d3e4f5a6b7c")


def listing(*ids: str) -> Any:
    """servers/detail listing these volume-backed servers (each with the data volume listed first)."""
    servers = []
    for sid in ids:
        body = server_body("/dev/vda")["server"]
        body["id"] = sid
        servers.append(body)
    return {"servers": servers}


async def test_a_server_whose_attachments_are_gone_is_left_out_not_guessed(
    cloud: OpenStackCloud, stub: RecordedNova
) -> None:
    stub.answer("GET", f"{N}/servers/detail", Answer(200, listing(SERVER, OTHER)))
    gone = Answer(404, {"itemNotFound": {"code": 404, "message": f"Instance {SERVER} could not be found."}})
    stub.answer("GET", f"{N}/servers/{SERVER}/os-volume_attachments", gone)
    stub.answer("GET", f"{N}/servers/{OTHER}/os-volume_attachments", Answer(200, attachments()))
    port = cloud.backups()
    targets = await port.list_targets()
    # deleted since the list: nothing to back up (before the fix: kept, its data volume taken as boot)
    assert [(t.id, [(v.id, v.boot) for v in t.volumes]) for t in targets] == [
        (OTHER, [(DATA, False), (BOOT, True)])
    ]
    stub.answer("GET", f"{N}/servers/{SERVER}", Answer(200, server_body("/dev/vda")))
    with pytest.raises(NotFound):
        await port.get_target(SERVER)


async def test_unreadable_attachments_leave_that_server_out_of_the_round_the_others_go_on(
    cloud: OpenStackCloud, stub: RecordedNova, caplog: pytest.LogCaptureFixture
) -> None:
    stub.answer("GET", f"{N}/servers/detail", Answer(200, listing(SERVER, OTHER)))
    broken = Answer(500, {"computeFault": {"code": 500, "message": "Unexpected API Error."}})
    stub.answer("GET", f"{N}/servers/{SERVER}/os-volume_attachments", broken)
    stub.answer("GET", f"{N}/servers/{OTHER}/os-volume_attachments", Answer(200, attachments()))
    port = cloud.backups()
    with caplog.at_level(logging.WARNING, logger="haven.cloud.openstack.backups"):
        targets = await port.list_targets()  # before the fix: the 500 failed the whole list (the round)
    # that server not backed up this round (busy, no boot volume guessed); still listed: its alerts hold
    assert [(t.id, t.busy, t.volume_backed) for t in targets] == [(SERVER, True, False), (OTHER, False, True)]
    assert any(SERVER in r.getMessage() and "left out" in r.getMessage() for r in caplog.records)
    # the next round reads it again, and backs it up once its attachments answer
    stub.answer("GET", f"{N}/servers/{SERVER}/os-volume_attachments", Answer(200, attachments()))
    assert [(t.id, t.busy, t.volume_backed) for t in await port.list_targets()] == [
        (SERVER, False, True),
        (OTHER, False, True),
    ]


async def test_the_boot_volume_cache_forgets_servers_no_longer_listed(
    cloud: OpenStackCloud, stub: RecordedNova
) -> None:
    stub.answer(
        "GET", f"{N}/servers/detail",
        Answer(200, listing(SERVER, OTHER)), Answer(200, listing(OTHER)), Answer(200, listing(SERVER, OTHER)),
    )  # fmt: skip
    stub.answer("GET", f"{N}/servers/{OTHER}/os-volume_attachments", Answer(200, attachments()))
    port = cloud.backups()
    for _ in range(3):
        await port.list_targets()
    reads = stub.made("GET", f"{N}/servers/{SERVER}/os-volume_attachments")
    assert len(reads) == 2  # forgotten while it was not listed: read again when it came back
    assert len(stub.made("GET", f"{N}/servers/{OTHER}/os-volume_attachments")) == 1  # kept while listed
