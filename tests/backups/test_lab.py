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

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.conftest import FakeIntake
from haven.api.app import create_app
from haven.api.routes.haven_backups import attach_backups
from haven.backups import schedule
from haven.backups.config import parse_backups
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.backups.serving import BackupService
from haven.cli.main import main
from haven.cloud.openstack import open_cloud
from haven.domain.backups import BackupRecord, BackupState, RestoreRecord, RestoreState
from haven.domain.clock import RealClock, VirtualClock
from haven.domain.errors import PermanentError, UserError
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


async def test_restore_at_the_older_of_two_backups_as_new_then_in_place_on_real_nova(
    nova_lab: NovaLab, tmp_path: Any
) -> None:
    """keep=2, two backups; ``--at`` between them chooses the first, booted as a new server and then
    rebuilt into the server itself, each judged from Nova (the server's image, its instance actions)."""
    conn = nova_lab.connect("2.37")
    server_id = _boot(conn, nova_lab, "bk-lab-at", {"haven_backup": "daily", "haven_backup_keep": "2"})
    servers: list[str] = [server_id]
    images: list[str] = []
    cloud = open_cloud("lab", max_workers=2, clouds_yaml=nova_lab.clouds_yaml)
    store = Store.open(f"sqlite:///{tmp_path / 'haven.db'}")
    try:
        _wait("the server ACTIVE", lambda: _server(conn, server_id)["status"] == "ACTIVE")
        port = cloud.backups()
        config = parse_backups({"jitter_s": 0.0, "drills": {"timeout_s": 60.0}}, "test")
        runner = BackupRunner(config, port, store, RealClock())
        taken: list[BackupRecord] = []
        for _ in range(2):
            record = await runner.backup_now(server_id)
            images.append(record.image_id)
            _upload(conn, record.image_id)  # the hypervisor's part (see the module's docstring)
            await runner.run_pass()
            taken.append(store.get_backup(record.id))
        first, second = taken
        assert [b.state for b in taken] == [BackupState.AVAILABLE] * 2
        await runner.run_pass()  # rotation: keep=2 keeps both, in Glance too
        assert [_image(conn, i)["status"] for i in images] == ["active", "active"]
        at = (first.created_at + second.created_at) / 2  # after the first, before the second
        restorer = Restorer(port, store, RealClock(), config.drills)

        copy = await _finish(restorer, await restorer.restore(server_id, at, "bk-lab-at-copy"), servers)
        assert copy.state is RestoreState.DONE and copy.backup_id == first.id, copy
        seen = _server(conn, copy.target_id)  # Nova's own answer from here on
        assert (seen["name"], seen["status"]) == ("bk-lab-at-copy", "ACTIVE")
        assert seen["image"]["id"] == first.image_id
        assert seen["metadata"]["haven_restored_from"] == first.id and seen["addresses"] == {}

        rebuilt = await _finish(restorer, await restorer.restore(server_id, at, None), servers)
        assert rebuilt.state is RestoreState.DONE and rebuilt.target_id == server_id, rebuilt
        seen = _server(conn, server_id)
        assert (seen["status"], seen["OS-EXT-STS:task_state"]) == ("ACTIVE", None)
        assert seen["image"]["id"] == first.image_id != nova_lab.image_id  # the first backup, not the newest
        actions = _json(conn.compute.get(f"/servers/{server_id}/os-instance-actions"))["instanceActions"]
        assert [a["action"] for a in actions].count("rebuild") == 1, actions
    finally:
        store.close()
        cloud.close()
        _delete_all(conn, servers, images)


def test_haven_backups_run_and_restore_from_the_cli_on_real_nova(
    nova_lab: NovaLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """As an operator runs them: ``haven backups run|restore ... --cloud lab --json`` (clouds.yaml named by
    OS_CLIENT_CONFIG_FILE), judged from their JSON and from Nova's and Glance's records. ``run`` is its own
    process; the restores are the same command run in this process (``haven.cli.main.main``: a process
    start costs seconds under load)."""
    conn = nova_lab.connect("2.37")
    server_id = _boot(conn, nova_lab, "bk-lab-cli", {})  # no policy: a backup now is still taken
    servers: list[str] = [server_id]
    images: list[str] = []
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(nova_lab.clouds_yaml))
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    lab = ["--cloud", "lab", "--json", "--wait", "120"]
    try:
        _wait("the server ACTIVE", lambda: _server(conn, server_id)["status"] == "ACTIVE")
        haven, pipe = str(Path(sys.executable).with_name("haven")), subprocess.PIPE
        run = subprocess.Popen(
            [haven, "backups", "run", server_id, *lab], stdout=pipe, stderr=pipe, text=True
        )
        try:
            image = _wait("the CLI's backup image in Glance", lambda: _backup_image_of(conn, server_id))
            images.append(image["id"])
            _upload(conn, image["id"])  # the hypervisor's part (see the module's docstring)
            out, err = run.communicate(timeout=90)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
        assert run.returncode == 0, err
        backup = json.loads(out)
        assert (backup["server_id"], backup["state"]) == (server_id, "available")
        assert backup["image_id"] == image["id"]
        glance = _image(conn, image["id"])
        assert (glance["status"], glance["instance_uuid"], glance["haven_backup_id"]) == (
            "active", server_id, backup["id"]
        )  # fmt: skip

        code = main(["backups", "restore", server_id, "--as-new", "bk-lab-cli-copy", *lab])
        printed = capsys.readouterr()
        restored = json.loads(printed.out) if printed.out.strip() else {}
        if restored.get("target_id"):
            servers.append(restored["target_id"])
        assert code == 0, printed.err
        assert (restored["state"], restored["backup_id"]) == ("done", backup["id"])
        seen = _server(conn, restored["target_id"])
        assert (seen["name"], seen["status"]) == ("bk-lab-cli-copy", "ACTIVE")
        assert seen["image"]["id"] == image["id"]

        early = ["--at", "2020-01-01T00:00Z", "--as-new", "bk-lab-cli-early"]
        code = main(["backups", "restore", server_id, *early, *lab])
        printed = capsys.readouterr()
        assert code == 2 and printed.out == "", printed.err
        assert f"server {server_id} has no good backup at or before that time" in printed.err
        named = _json(conn.compute.get("/servers", params={"name": "bk-lab-cli-early"}))["servers"]
        assert named == []  # nothing booted
    finally:
        _delete_all(conn, servers, images)


async def test_a_backup_and_a_restore_as_new_through_the_api_on_real_nova(
    nova_lab: NovaLab, tmp_path: Path
) -> None:
    """``POST /v1/haven/backups`` then ``POST /v1/haven/backups/restores`` (as new) over the real app in
    this process, with haven serve's BackupService on the lab's cloud; its rounds carry both on, as
    haven serve's leader does. Judged from Nova and Glance: the new server ACTIVE, booted from the
    backup's image."""
    conn = nova_lab.connect("2.37")
    server_id = _boot(conn, nova_lab, "bk-lab-api", {})  # no policy: the rounds start nothing of their own
    servers: list[str] = [server_id]
    images: list[str] = []
    cloud = open_cloud("lab", max_workers=2, clouds_yaml=nova_lab.clouds_yaml)
    store = Store.open(f"sqlite:///{tmp_path / 'haven.db'}")
    config = parse_backups({"jitter_s": 0.0, "drills": {"timeout_s": 60.0}}, "test")
    service = BackupService(config, cloud.backups(), store, RealClock())
    app = create_app(store, FakeIntake(store, VirtualClock()), "lab-token", RealClock())
    attach_backups(app, service)
    admin = {"X-Auth-Token": "lab-token"}
    try:
        _wait("the server ACTIVE", lambda: _server(conn, server_id)["status"] == "ACTIVE")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as http:
            taken = await http.post("/v1/haven/backups", json={"server_id": server_id}, headers=admin)
            assert taken.status_code == 202, taken.text
            backup = taken.json()["backup"]
            images.append(backup["image_id"])
            glance = _image(conn, backup["image_id"])
            assert (glance["instance_uuid"], glance["haven_backup_id"]) == (server_id, backup["id"])
            _upload(conn, backup["image_id"])  # the hypervisor's part (see the module's docstring)
            await service.run_round()
            assert _image(conn, backup["image_id"])["status"] == "active"

            asked = await http.post(
                "/v1/haven/backups/restores",
                json={"server_id": server_id, "as_new": "bk-lab-api-copy"},
                headers=admin,
            )
            assert asked.status_code == 202, asked.text
            restore_id = asked.json()["restore"]["id"]
            deadline = time.monotonic() + 90.0
            while True:
                listed = (await http.get("/v1/haven/backups/restores", headers=admin)).json()["restores"]
                (restore,) = [r for r in listed if r["id"] == restore_id]
                if restore["target_id"] and restore["target_id"] not in servers:
                    servers.append(restore["target_id"])
                if not RestoreState(restore["state"]).in_flight:
                    break
                assert time.monotonic() < deadline, f"restore not ended after 90 s: {restore}"
                await asyncio.sleep(0.5)
                await service.run_round()
        assert (restore["state"], restore["backup_id"]) == ("done", backup["id"]), restore
        named = _json(conn.compute.get("/servers", params={"name": "^bk-lab-api-copy$"}))["servers"]
        assert [s["id"] for s in named] == [restore["target_id"]]  # one server booted, not two
        seen = _server(conn, restore["target_id"])  # Nova's own answer
        assert (seen["name"], seen["status"]) == ("bk-lab-api-copy", "ACTIVE")
        assert seen["image"]["id"] == backup["image_id"] != nova_lab.image_id
        assert seen["metadata"]["haven_restored_from"] == backup["id"]
    finally:
        store.close()
        cloud.close()
        _delete_all(conn, servers, images)


async def test_a_restore_as_new_on_real_nova_takes_the_original_servers_networks(
    nova_lab: NovaLab, tmp_path: Path
) -> None:
    """What the lab can show of a restore's networks. Its Neutron is a stand-in with no networks at all
    (haven.lab.netstub: every list is empty, every create a 404), so no server on it can have a port:
    the original boots with ``networks: none``. Shown here, from Nova's records: the original's networks
    as Nova's os-interface shows them (none) are recorded with the backup and the copy boots with them
    (no address, no interface); a network Neutron does not know is refused before Nova is asked
    (nothing booted); and a boot naming a network id reaches Nova in a body its 2.37 schema accepts,
    Nova then asking Neutron for that network and refusing it as unknown (its own 400). A copy
    actually attached to a network needs a Neutron that makes ports: not on this lab."""
    conn = nova_lab.connect("2.37")
    server_id = _boot(conn, nova_lab, "bk-lab-net", {})
    servers: list[str] = [server_id]
    images: list[str] = []
    cloud = open_cloud("lab", max_workers=2, clouds_yaml=nova_lab.clouds_yaml)
    store = Store.open(f"sqlite:///{tmp_path / 'haven.db'}")
    try:
        _wait("the server ACTIVE", lambda: _server(conn, server_id)["status"] == "ACTIVE")
        port = cloud.backups()
        config = parse_backups({"jitter_s": 0.0, "drills": {"timeout_s": 60.0}}, "test")
        runner = BackupRunner(config, port, store, RealClock())
        record = await runner.backup_now(server_id)
        images.append(record.image_id)
        assert record.networks == ()  # Nova's os-interface for the server: no port
        _upload(conn, record.image_id)  # the hypervisor's part (see the module's docstring)
        await runner.run_pass()
        assert store.get_backup(record.id).state is BackupState.AVAILABLE
        restorer = Restorer(port, store, RealClock(), config.drills)

        with pytest.raises(UserError, match="no network 'bk-lab-no-such-net' in the cloud"):
            await restorer.restore(server_id, None, "bk-lab-net-bad", ["bk-lab-no-such-net"])
        named = _json(conn.compute.get("/servers", params={"name": "^bk-lab-net-bad$"}))["servers"]
        assert named == []  # nothing booted

        copy = await _finish(restorer, await restorer.restore(server_id, None, "bk-lab-net-copy"), servers)
        assert copy.state is RestoreState.DONE and copy.networks == (), copy
        seen = _server(conn, copy.target_id)  # Nova's own answer
        assert (seen["status"], seen["addresses"]) == ("ACTIVE", {})
        ports = _json(conn.compute.get(f"/servers/{copy.target_id}/os-interface"))["interfaceAttachments"]
        assert ports == []

        missing = "3f6c2a1e-9b7d-4c5e-8a2f-0d1e2f3a4b5c"
        with pytest.raises(PermanentError, match=f"Network {missing} could not be found"):
            await port.boot_from_image("bk-lab-net-asked", record.image_id, nova_lab.flavor, {}, [missing])
        named = _json(conn.compute.get("/servers", params={"name": "^bk-lab-net-asked$"}))["servers"]
        assert named == []
    finally:
        store.close()
        cloud.close()
        _delete_all(conn, servers, images)


async def test_the_scheduled_pass_starts_a_backup_on_real_nova_once_in_its_window(
    nova_lab: NovaLab, tmp_path: Path
) -> None:
    """No backup now: the runner's own pass, its clock placed at the due time of the server's next daily
    window (the sim tests' virtual clock), asks Nova for createBackup by itself; passes later in the
    same window (the backup in flight, then available) ask for none. Judged from Glance's images with
    the server's instance_uuid and from Nova's instance actions."""
    conn = nova_lab.connect("2.37")
    policy = {"haven_backup": "daily", "haven_backup_keep": "2"}
    server_id = _boot(conn, nova_lab, "bk-lab-sched", policy)
    servers: list[str] = [server_id]
    images: list[str] = []
    cloud = open_cloud("lab", max_workers=2, clouds_yaml=nova_lab.clouds_yaml)
    store = Store.open(f"sqlite:///{tmp_path / 'haven.db'}")
    try:
        _wait("the server ACTIVE", lambda: _server(conn, server_id)["status"] == "ACTIVE")
        config = parse_backups({"jitter_s": 0.0}, "test")
        daily = schedule.parse("daily")
        slot = daily.next_slot(time.time())  # the next window: tomorrow 00:00 UTC
        clock = VirtualClock(slot + schedule.jitter(server_id, daily, 0.0))  # its due time
        runner = BackupRunner(config, cloud.backups(), store, clock)

        await runner.run_pass()
        glance = _backup_images(conn, server_id)
        images.extend(i["id"] for i in glance)
        assert len(glance) == 1, glance
        assert (glance[0]["backup_type"], glance[0]["haven_backup_slot"]) == ("haven-daily", str(int(slot)))
        assert _actions(conn, server_id).count("createBackup") == 1
        (record,) = store.backups_of(server_id)
        assert (record.trigger.value, record.image_id) == ("schedule", glance[0]["id"])

        clock.advance_to(clock.now() + 60.0)
        await runner.run_pass()  # the window's backup in flight: nothing more asked
        _upload(conn, glance[0]["id"])  # the hypervisor's part (see the module's docstring)
        clock.advance_to(clock.now() + 60.0)
        await runner.run_pass()
        assert store.get_backup(record.id).state is BackupState.AVAILABLE
        clock.advance_to(clock.now() + 3600.0)
        await runner.run_pass()  # an hour on, the same window: covered
        assert [i["id"] for i in _backup_images(conn, server_id)] == [glance[0]["id"]]
        assert _actions(conn, server_id).count("createBackup") == 1
    finally:
        store.close()
        cloud.close()
        _delete_all(conn, servers, images)


def _backup_images(conn: Any, server_id: str) -> list[dict[str, Any]]:
    """Glance's images of the server (its instance_uuid), any name."""
    listed = _json(conn.image.get("/images", params={"limit": 1000}))["images"]
    return [i for i in listed if i.get("instance_uuid") == server_id]


def _actions(conn: Any, server_id: str) -> list[str]:
    found = _json(conn.compute.get(f"/servers/{server_id}/os-instance-actions"))["instanceActions"]
    return [str(a["action"]) for a in found]


async def _finish(restorer: Restorer, record: RestoreRecord, servers: list[str]) -> RestoreRecord:
    """Advance a restore until it ends (as the CLI's wait does); its server is noted for the clean-up."""
    deadline = time.monotonic() + 90.0
    while True:
        if record.target_id and record.target_id not in servers:
            servers.append(record.target_id)
        if not record.state.in_flight:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"restore not ended after 90 s: {record}")
        await asyncio.sleep(0.5)
        record = await restorer.advance(record)


def _boot(conn: Any, lab: NovaLab, name: str, metadata: dict[str, str]) -> ServerId:
    body = {"server": {"name": name, "imageRef": lab.image_id, "flavorRef": _flavor_id(conn, lab),
                       "networks": "none", "metadata": metadata}}  # fmt: skip
    return ServerId(_json(conn.compute.post("/servers", json=body, microversion="2.37"))["server"]["id"])


def _backup_image_of(conn: Any, server_id: str) -> dict[str, Any] | None:
    found = [
        i for i in _json(conn.image.get("/images", params={"limit": 1000}))["images"]
        if i.get("instance_uuid") == server_id and i["name"].startswith(f"haven-backup-{server_id}-")
    ]  # fmt: skip
    return found[0] if found else None


def _delete_all(conn: Any, servers: list[str], images: list[str]) -> None:
    """What a test made goes, servers first (and waited for), then the images: the lab is left whole."""
    for server_id in servers:
        conn.compute.delete(f"/servers/{server_id}")
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and any(
        conn.compute.get(f"/servers/{s}").status_code != 404 for s in servers
    ):
        time.sleep(0.5)
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
