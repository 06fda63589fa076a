"""Backups, rotation and a restore drill against the lab's real Nova and Glance (tests/servers/nova.py).

Judged from Nova's and Glance's own records, never from haven's bookkeeping. Nova's fake virt driver
(the lab's computes) implements snapshot without uploading anything: createBackup creates the Glance
image (``queued``, with Nova's instance_uuid, backup_type and haven's properties) and the compute ends
the task, but the image never becomes active (probed on this lab: it stays queued; booting from it is
refused, "Image ... is not active"). The test therefore plays the hypervisor's one missing part: it
uploads the image's bytes, as a libvirt compute does at the end of a snapshot. Everything else is the
real thing: Nova's createBackup and rotation, Glance's statuses and deletes, Nova booting the backup
with no network, reaching ACTIVE, and its delete. See docs/backups.md.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from haven.backups.config import parse_backups
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.cloud.openstack import open_cloud
from haven.domain.backups import BackupState, RestoreState
from haven.domain.clock import RealClock
from haven.domain.ids import ServerId
from haven.store import Store
from servers.nova import NovaLab

pytestmark = [
    pytest.mark.nova,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]


def _wait(what: str, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout_s} s for {what}")
        time.sleep(0.5)


async def test_backup_rotation_and_restore_drill_on_real_nova_and_glance(
    nova_lab: NovaLab, tmp_path: Any
) -> None:
    conn = nova_lab.connect("2.37")
    metadata = {"haven_backup": "daily", "haven_backup_keep": "1"}
    flavor = _flavor_id(conn, nova_lab)
    body = {"server": {"name": "bk-lab-1", "imageRef": nova_lab.image_id, "flavorRef": flavor,
                       "networks": "none", "metadata": metadata}}  # fmt: skip
    server_id = ServerId(_json(conn.compute.post("/servers", json=body, microversion="2.37"))["server"]["id"])
    cloud = open_cloud("lab", max_workers=2, clouds_yaml=nova_lab.clouds_yaml)
    store = Store.open(f"sqlite:///{tmp_path / 'haven.db'}")
    images: list[str] = []
    try:
        _wait("the server ACTIVE", lambda: _server(conn, server_id)["status"] == "ACTIVE")
        port = cloud.backups()
        config = parse_backups({"jitter_s": 0.0, "drills": {"timeout_s": 60.0}}, "test")
        runner = BackupRunner(config, port, store, RealClock())

        first = await runner.backup_now(server_id)
        assert first.state is BackupState.CREATING
        glance = _image(conn, first.image_id)
        assert glance["instance_uuid"] == server_id and glance["backup_type"] == "haven-daily"
        assert glance["haven_backup_id"] == first.id and glance["status"] == "queued"
        images.append(first.image_id)

        # a new engine on the same database adopts it: no second createBackup (one image of that name)
        await BackupRunner(config, port, store, RealClock()).run_pass()
        assert [i["id"] for i in _images(conn, first.name)] == [first.image_id]

        _upload(conn, first.image_id)  # the hypervisor's part (see the module's docstring)
        await runner.run_pass()
        assert store.get_backup(first.id).state is BackupState.AVAILABLE

        restorer = Restorer(port, store, RealClock(), config.drills)
        await restorer.drill_round([server_id])
        assert len(store.list_restores()) == 1
        drill_server = _wait("the drill's server", lambda: store.list_restores()[0].target_id)
        seen = _server(conn, drill_server)
        assert seen["name"].startswith("haven-drill-") and seen["addresses"] == {}  # no network at all

        for _ in range(120):
            await restorer.drill_round([])
            if not store.list_restores()[0].state.in_flight:
                break
            time.sleep(0.5)
        done = store.list_restores()[0]
        assert done.state is RestoreState.DONE and done.active_at is not None, done
        assert done.recovery_point == first.created_at
        _wait(
            "Nova to delete the drill's server",
            lambda: conn.compute.get(f"/servers/{drill_server}").status_code == 404,
        )

        # a second backup; keep=1 rotates the first out of Glance
        second = await runner.backup_now(server_id)
        images.append(second.image_id)
        _upload(conn, second.image_id)
        await runner.run_pass()  # the second becomes available
        await runner.run_pass()  # rotation
        assert store.get_backup(first.id).state is BackupState.DELETED
        assert _image_gone(conn, first.image_id)
        assert _image(conn, second.image_id)["status"] == "active"
    finally:
        store.close()
        cloud.close()
        conn.compute.delete(f"/servers/{server_id}")
        for image_id in images:
            conn.image.delete(f"/images/{image_id}")


def _json(response: Any) -> dict[str, Any]:
    assert response.status_code < 300, response.text
    return dict(response.json())


def _flavor_id(conn: Any, lab: NovaLab) -> str:
    flavors = _json(conn.compute.get("/flavors"))["flavors"]
    return str(next(f["id"] for f in flavors if f["name"] == lab.flavor))


def _server(conn: Any, server_id: str) -> dict[str, Any]:
    return dict(_json(conn.compute.get(f"/servers/{server_id}", microversion="2.37"))["server"])


def _image(conn: Any, image_id: str) -> dict[str, Any]:
    return _json(conn.image.get(f"/images/{image_id}"))


def _images(conn: Any, name: str) -> list[dict[str, Any]]:
    return list(_json(conn.image.get("/images", params={"name": name}))["images"])


def _image_gone(conn: Any, image_id: str) -> bool:
    response = conn.image.get(f"/images/{image_id}")
    return bool(response.status_code == 404 or response.json().get("status") == "deleted")


def _upload(conn: Any, image_id: str) -> None:
    r = conn.image.put(
        f"/images/{image_id}/file", data=b"\0" * 1024, headers={"Content-Type": "application/octet-stream"}
    )
    assert r.status_code == 204, r.text
