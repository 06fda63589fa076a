"""The backup port over OpenStack: Nova's createBackup, Glance's images and Cinder's backups.

Called by haven.backups through haven.cloud.backups.BackupPort; built by OpenStackCloud.backups() on
the same openstacksdk connection and worker pool. Requests are pinned like haven.cloud.openstack.nova's:
createBackup at 2.45 (Nova answers the new image's id in the body), servers at 2.71, boots at 2.37
(``networks: "none"``, so a drill's server has no network at all; a restore as new names its networks'
ids), a server's networks from Nova's os-interface (its ports, as Nova shows them), rebuild at 2.1;
Glance v2; Neutron v2.0 (a network found by id or name); Cinder v3 at 3.43 (backups with metadata).
Every error becomes a haven error in CallPool.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from openstack import exceptions as os_exc
from openstack.connection import Connection

from haven.cloud.openstack import convert
from haven.cloud.openstack.calls import CallPool
from haven.domain.backups import (
    RESTORE_ID_KEY,
    BackupTarget,
    Image,
    ImageStatus,
    Volume,
    VolumeBackup,
    VolumeBackupStatus,
    VolumeRef,
)
from haven.domain.cloud import ServerAction
from haven.domain.errors import CloudError, Conflict, NotFound, PermanentError, TemporaryError
from haven.domain.ids import ServerId

log = logging.getLogger(__name__)

BACKUP_MV = "2.45"
SERVERS_MV = "2.71"
BOOT_MV = "2.37"
CINDER_MV = "3.43"
ACTIONS_MV = "2.58"
VOLUME_BUSY_RETRY_S = 30.0  # a volume ``backing-up``: Cinder's backup of it takes minutes, not seconds
REBUILD_SLACK_S = 2.0  # Nova's start_time has whole seconds (MySQL): a rebuild just after ``since``
Json = dict[str, Any]
Actions = Callable[[ServerId, float], Awaitable[Sequence[ServerAction]]]


class BackupApi:
    """Blocking calls; run in CallPool's threads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def servers(self, name: str | None = None, all_tenants: bool = True) -> list[Json]:
        """Servers (every project's unless ``all_tenants`` is False), those named exactly ``name`` when
        given: Nova reads the name filter as a regular expression, so the name is escaped."""
        query = {"all_tenants": "True"} if all_tenants else {}
        if name is not None:
            query["name"] = f"^{re.escape(name)}$"
        out: list[Json] = []
        while True:
            if out:
                query["marker"] = str(out[-1]["id"])
            page = self._json(
                self._conn.compute.get("/servers/detail", params=query, microversion=SERVERS_MV)
            )
            out.extend(page["servers"])
            if not page.get("servers_links"):
                return out

    def volume_attachments(self, server_id: str) -> list[Json]:
        r = self._conn.compute.get(f"/servers/{server_id}/os-volume_attachments", microversion="2.1")
        return list(self._json(r)["volumeAttachments"])

    def server(self, server_id: str) -> Json:
        r = self._conn.compute.get(f"/servers/{server_id}", microversion=SERVERS_MV)
        return dict(self._json(r)["server"])

    def interfaces(self, server_id: str) -> list[Json]:
        """The server's ports as Nova shows them (os-interface: ``net_id``, ``port_id``, ``fixed_ips``)."""
        r = self._conn.compute.get(f"/servers/{server_id}/os-interface", microversion="2.1")
        return list(self._json(r)["interfaceAttachments"])

    def networks(self, **query: str) -> list[Json]:
        """Neutron's networks matching ``query`` (``id`` or ``name``: exact), all an admin sees."""
        return list(self._json(self._conn.network.get("/networks", params=query))["networks"])

    def create_backup(self, server_id: str, body: Json) -> str:
        r = self._conn.compute.post(f"/servers/{server_id}/action", json=body, microversion=BACKUP_MV)
        return str(self._json(r)["image_id"])

    def boot(self, body: Json) -> str:
        return str(
            self._json(self._conn.compute.post("/servers", json=body, microversion=BOOT_MV))["server"]["id"]
        )

    def server_action(self, server_id: str, body: Json) -> None:
        self._check(self._conn.compute.post(f"/servers/{server_id}/action", json=body, microversion="2.1"))

    def delete_server(self, server_id: str) -> None:
        self._check(self._conn.compute.delete(f"/servers/{server_id}"))

    def instance_actions(self, server_id: str) -> list[Json]:
        """The server's os-instance-actions (Nova's newest 1,000), newest first."""
        r = self._conn.compute.get(f"/servers/{server_id}/os-instance-actions", microversion=ACTIONS_MV)
        return list(self._json(r)["instanceActions"])

    def flavors(self) -> list[Json]:
        return list(self._json(self._conn.compute.get("/flavors", params={"is_public": "None"}))["flavors"])

    def images(self, name: str) -> list[Json]:
        return list(self._json(self._conn.image.get("/images", params={"name": name}))["images"])

    def image(self, image_id: str) -> Json:
        return dict(self._json(self._conn.image.get(f"/images/{image_id}")))

    def delete_image(self, image_id: str) -> None:
        self._check(self._conn.image.delete(f"/images/{image_id}"))

    def create_volume_backup(self, body: Json) -> str:
        r = self._conn.block_storage.post("/backups", json=body, microversion=CINDER_MV)
        return str(self._json(r)["backup"]["id"])

    def volume_backups(self, name: str) -> list[Json]:
        r = self._conn.block_storage.get("/backups/detail", params={"name": name}, microversion=CINDER_MV)
        return list(self._json(r)["backups"])

    def volume_backup(self, backup_id: str) -> Json:
        r = self._conn.block_storage.get(f"/backups/{backup_id}", microversion=CINDER_MV)
        return dict(self._json(r)["backup"])

    def delete_volume_backup(self, backup_id: str) -> None:
        self._check(self._conn.block_storage.delete(f"/backups/{backup_id}", microversion=CINDER_MV))

    def restore_volume_backup(self, backup_id: str, name: str) -> str:
        body = {"restore": {"name": name}}  # no volume_id: Cinder creates a new volume of that name
        r = self._conn.block_storage.post(f"/backups/{backup_id}/restore", json=body, microversion=CINDER_MV)
        return str(self._json(r)["restore"]["volume_id"])

    def volumes(self, name: str) -> list[Json]:
        r = self._conn.block_storage.get("/volumes/detail", params={"name": name}, microversion=CINDER_MV)
        return list(self._json(r)["volumes"])

    def volume(self, volume_id: str) -> Json:
        r = self._conn.block_storage.get(f"/volumes/{volume_id}", microversion=CINDER_MV)
        return dict(self._json(r)["volume"])

    def delete_volume(self, volume_id: str) -> None:
        self._check(self._conn.block_storage.delete(f"/volumes/{volume_id}", microversion=CINDER_MV))

    @staticmethod
    def _check(response: Any) -> None:
        os_exc.raise_from_response(response)

    @classmethod
    def _json(cls, response: Any) -> Json:
        cls._check(response)
        return dict(response.json())


def _image_id(body: Json) -> str:
    image = body.get("image")
    return str(image.get("id", "")) if isinstance(image, Mapping) else ""


def _attached(body: Json) -> list[str]:
    return [str(v["id"]) for v in body.get("os-extended-volumes:volumes_attached") or []]


def needs_attachments(body: Json) -> bool:
    """A volume-backed server with several volumes: which one it boots from needs its attachments."""
    return not _image_id(body) and len(_attached(body)) > 1


def boot_volume(body: Json, attachments: Sequence[Json] = ()) -> str:
    """The volume a volume-backed server boots from ("" for an image-backed one or none attached).

    Nova's ``volumes_attached`` is its block device mappings in the database's order (no ORDER BY):
    not the boot volume first. Nova's API shows no ``boot_index``; what it shows is the server's
    ``OS-EXT-SRV-ATTR:root_device_name`` (admin, 2.3+) and each attachment's ``device``
    (os-volume_attachments): the boot volume is the one attached at the root device. Without the root
    device name (a non-admin view), the attachment with the first device name (``/dev/vda`` before
    ``/dev/vdb``: Nova names the root device first); without devices, the first attached volume."""
    ids = _attached(body)
    if _image_id(body) or not ids:
        return ""
    if len(ids) == 1:
        return ids[0]
    devices = {
        str(a.get("volumeId")): str(a["device"]) for a in attachments if a.get("device") and a.get("volumeId")
    }
    devices = {vid: dev for vid, dev in devices.items() if vid in ids}
    root = body.get("OS-EXT-SRV-ATTR:root_device_name")
    for vid, device in devices.items():
        if root and device == root:
            return vid
    if devices:
        return min(devices, key=lambda vid: (len(devices[vid]), devices[vid]))
    return ids[0]


def target(body: Json, boot: str | None = None) -> BackupTarget:
    """``boot``: the boot volume when known (boot_volume with the attachments); else found from the body
    alone (right for one volume; for several, the root device's or else the first)."""
    image_id = _image_id(body)
    boot = boot_volume(body) if boot is None else boot
    volumes = tuple(VolumeRef(vid, boot=bool(boot) and vid == boot) for vid in _attached(body))
    flavor = body.get("flavor") or {}
    return BackupTarget(
        id=ServerId(str(body["id"])), name=str(body.get("name", "")), project=str(body.get("tenant_id", "")),
        vm_state=convert.vm_state(body.get("OS-EXT-STS:vm_state")),
        busy=bool(body.get("OS-EXT-STS:task_state")), metadata=dict(body.get("metadata") or {}),
        image_id=image_id, volumes=volumes,
        flavor_id=str(flavor.get("original_name") or flavor.get("id") or ""),
        host=str(body.get("OS-EXT-SRV-ATTR:host") or ""),  # admin: haven's segments map it to a segment
    )  # fmt: skip


def image(body: Json) -> Image:
    known = {f for f in ("id", "name", "status", "created_at", "instance_uuid", "backup_type", "size")}
    props = {k: str(v) for k, v in body.items() if k not in known and isinstance(v, str)}
    return Image(
        id=str(body["id"]), name=str(body.get("name") or ""), status=_image_status(body.get("status")),
        created_at=convert.timestamp(str(body.get("created_at") or "")) or 0.0,
        server_id=str(body.get("instance_uuid") or ""), backup_type=str(body.get("backup_type") or ""),
        properties=props, size=body.get("size") if isinstance(body.get("size"), int) else None,
    )  # fmt: skip


def _image_status(value: object) -> ImageStatus:
    try:
        return ImageStatus(str(value))
    except ValueError:
        return ImageStatus.QUEUED


def volume_backup(body: Json) -> VolumeBackup:
    try:
        status = VolumeBackupStatus(str(body.get("status")))
    except ValueError:
        status = VolumeBackupStatus.CREATING
    return VolumeBackup(
        id=str(body["id"]), name=str(body.get("name") or ""), volume_id=str(body.get("volume_id") or ""),
        status=status, incremental=bool(body.get("is_incremental")),
        has_dependent_backups=bool(body.get("has_dependent_backups")),
        created_at=convert.timestamp(str(body.get("created_at") or "")) or 0.0,
    )  # fmt: skip


_BUSY_VOLUME = re.compile(
    r"current status is \W*(backing-up|attaching|detaching|extending|retyping|reserved)\b", re.IGNORECASE
)


def busy_volume(message: str) -> bool:
    """Whether Cinder refused a backup for a status the volume only passes through (its message:
    'Invalid volume: Volume to be backed up must be available or in-use, but the current status is
    "backing-up".'), not for good."""
    return bool(_BUSY_VOLUME.search(message))


def _networks(networks: Sequence[str]) -> str | list[Json]:
    """Nova's ``networks`` of a boot (2.37): a port on each network, or ``none`` (no network at all)."""
    return [{"uuid": n} for n in networks] if networks else "none"


def volume(body: Json) -> Volume:
    return Volume(id=str(body["id"]), name=str(body.get("name") or ""), status=str(body.get("status") or ""))


class OpenStackBackups:
    """haven.cloud.backups.BackupPort over Nova, Glance and Cinder."""

    def __init__(self, api: BackupApi, pool: CallPool, actions: Actions | None = None) -> None:
        """``actions``: the cloud's os-instance-actions reader with Nova's clock offset corrected
        (OpenStackCloud.server_actions); without it, Nova's times are taken as haven's."""
        self._api, self._pool = api, pool
        self._actions = actions
        # (server, its volumes, its root device) -> its boot volume: a server's root volume cannot be
        # detached, so the answer holds while those stay the same (one attachments read per server)
        self._boot: dict[tuple[str, tuple[str, ...], str], str] = {}

    async def _targets(self, bodies: Sequence[Json], listing: bool = False) -> list[BackupTarget]:
        """The bodies' targets; a server whose attachments are gone (NotFound: deleted since the list)
        is left out, nothing to back up. ``listing`` (list_targets, a backup round): a server whose
        attachments cannot be read is not backed up this round (shown busy, its boot volume unknown,
        so the planner waits and its alerts still count), with a logged reason; the others go on, and
        the boot-volume cache keeps only the servers listed."""
        targets, seen = [], set()
        for body in bodies:
            seen.add(str(body["id"]))
            try:
                boot = await self._boot_of(body)
            except NotFound:  # deleted since the list: nothing to back up, whichever volume it booted
                continue
            except CloudError as exc:
                if not listing:
                    raise
                log.warning(
                    "server %s (%s) left out of this backup round: its volume attachments could not "
                    "be read to tell its boot volume: %s", body["id"], body.get("name", ""), exc,
                )  # fmt: skip
                targets.append(dataclasses.replace(target(body, ""), busy=True))
                continue
            targets.append(target(body, boot))
        if listing:
            self._boot = {k: v for k, v in self._boot.items() if k[0] in seen}
        return targets

    async def _boot_of(self, body: Json) -> str | None:
        """The boot volume read from the attachments (cached), or None when the body alone tells."""
        if not needs_attachments(body):
            return None
        key = (
            str(body["id"]),
            tuple(sorted(_attached(body))),
            str(body.get("OS-EXT-SRV-ATTR:root_device_name")),
        )
        if key not in self._boot:
            attachments = await self._pool.run(
                f"list volume attachments of server {key[0]}", self._api.volume_attachments, key[0]
            )
            for old in [k for k in self._boot if k[0] == key[0]]:  # its volumes changed since
                del self._boot[old]
            self._boot[key] = boot_volume(body, attachments)
        return self._boot[key]

    async def list_targets(self) -> Sequence[BackupTarget]:
        return await self._targets(await self._pool.run("list servers", self._api.servers), listing=True)

    async def get_target(self, server_id: ServerId) -> BackupTarget:
        body = await self._pool.run(f"show server {server_id}", self._api.server, server_id)
        found = await self._targets([body])
        if not found:
            raise NotFound(f"server {server_id} is gone (its volume attachments are)")
        return found[0]

    async def find_targets(self, name: str) -> Sequence[BackupTarget]:
        bodies = await self._pool.run(f"find servers named {name}", self._api.servers, name)
        return await self._targets([b for b in bodies if b.get("name") == name])

    async def find_restored(self, restore_id: str, name: str) -> Sequence[BackupTarget]:
        bodies = await self._pool.run(
            f"find servers named {name}", self._api.servers, name, False
        )  # haven boots in its own project: only its servers, and only the one its tag names
        return await self._targets(
            [
                b
                for b in bodies
                if b.get("name") == name and (b.get("metadata") or {}).get(RESTORE_ID_KEY) == restore_id
            ]
        )

    async def rebuilt_since(self, server_id: ServerId, since: float) -> bool:
        if self._actions is not None:
            found = await self._actions(server_id, since - REBUILD_SLACK_S)
        else:
            bodies = await self._pool.run(
                f"list instance actions of server {server_id}", self._api.instance_actions, server_id
            )
            found = [convert.server_action(server_id, b) for b in bodies]
        return any(a.action == "rebuild" and a.at >= since - REBUILD_SLACK_S for a in found)

    async def create_image_backup(
        self, server_id: ServerId, name: str, backup_type: str, rotation: int, properties: Mapping[str, str]
    ) -> str:
        body = {"createBackup": {"name": name, "backup_type": backup_type, "rotation": rotation,
                                 "metadata": dict(properties)}}  # fmt: skip
        return await self._pool.run(
            f"createBackup of server {server_id}", self._api.create_backup, server_id, body
        )

    async def find_images(self, name: str) -> Sequence[Image]:
        return [image(b) for b in await self._pool.run(f"find images named {name}", self._api.images, name)]

    async def get_image(self, image_id: str) -> Image:
        return image(await self._pool.run(f"show image {image_id}", self._api.image, image_id))

    async def delete_image(self, image_id: str) -> None:
        await self._pool.run(f"delete image {image_id}", self._api.delete_image, image_id)

    async def create_volume_backup(self, volume_id: str, name: str, incremental: bool) -> str:
        """Cinder's 400 for a volume in a passing status (``backing-up``: a backup of it is still being
        taken) is a TemporaryError: a later pass may be answered, and the window's attempt is kept."""
        body = {"backup": {"volume_id": volume_id, "name": name, "incremental": incremental, "force": True,
                           "metadata": {"haven_backup": name}}}  # fmt: skip
        try:
            return await self._pool.run(f"back up volume {volume_id}", self._api.create_volume_backup, body)
        except PermanentError as exc:
            if busy_volume(str(exc)):
                raise TemporaryError(str(exc), VOLUME_BUSY_RETRY_S) from exc
            raise

    async def find_volume_backups(self, name: str) -> Sequence[VolumeBackup]:
        bodies = await self._pool.run(f"find volume backups named {name}", self._api.volume_backups, name)
        return [volume_backup(b) for b in bodies if b.get("name") == name]

    async def get_volume_backup(self, backup_id: str) -> VolumeBackup:
        return volume_backup(
            await self._pool.run(f"show backup {backup_id}", self._api.volume_backup, backup_id)
        )

    async def delete_volume_backup(self, backup_id: str) -> None:
        await self._pool.run(f"delete backup {backup_id}", self._api.delete_volume_backup, backup_id)

    async def server_networks(self, server_id: ServerId) -> tuple[str, ...]:
        ports = await self._pool.run(
            f"list interfaces of server {server_id}", self._api.interfaces, server_id
        )
        return tuple(dict.fromkeys(str(p["net_id"]) for p in ports if p.get("net_id")))

    async def find_network(self, name_or_id: str) -> str:
        found = await self._pool.run(f"find network {name_or_id}", self._api.networks, id=name_or_id)
        if not found:
            found = await self._pool.run(f"find network {name_or_id}", self._api.networks, name=name_or_id)
        if not found:
            raise NotFound(f"no network with the id or name {name_or_id!r}")
        if len(found) > 1:
            ids = ", ".join(sorted(str(n["id"]) for n in found))
            raise Conflict(f"{len(found)} networks are named {name_or_id!r} ({ids}): name one by its id")
        return str(found[0]["id"])

    async def boot_from_image(
        self, name: str, image_id: str, flavor_id: str, metadata: Mapping[str, str],
        networks: Sequence[str] = (),
    ) -> ServerId:  # fmt: skip
        flavor_ref = await self._flavor_ref(flavor_id)
        body = {"server": {"name": name, "imageRef": image_id, "flavorRef": flavor_ref,
                           "networks": _networks(networks), "metadata": dict(metadata)}}  # fmt: skip
        return ServerId(await self._pool.run(f"boot {name} from image {image_id}", self._api.boot, body))

    async def restore_volume_backup(self, backup_id: str, name: str) -> str:
        return await self._pool.run(
            f"restore backup {backup_id}", self._api.restore_volume_backup, backup_id, name
        )

    async def find_volumes(self, name: str) -> Sequence[Volume]:
        bodies = await self._pool.run(f"find volumes named {name}", self._api.volumes, name)
        return [volume(b) for b in bodies if b.get("name") == name]

    async def get_volume(self, volume_id: str) -> Volume:
        return volume(await self._pool.run(f"show volume {volume_id}", self._api.volume, volume_id))

    async def delete_volume(self, volume_id: str) -> None:
        await self._pool.run(f"delete volume {volume_id}", self._api.delete_volume, volume_id)

    async def boot_from_volumes(
        self, name: str, volume_ids: Sequence[str], flavor_id: str, metadata: Mapping[str, str],
        delete_on_termination: bool, networks: Sequence[str] = (),
    ) -> ServerId:  # fmt: skip
        mapping = [
            {"boot_index": 0 if i == 0 else -1, "uuid": vid, "source_type": "volume",
             "destination_type": "volume", "delete_on_termination": delete_on_termination}
            for i, vid in enumerate(volume_ids)
        ]  # fmt: skip
        body = {"server": {"name": name, "flavorRef": await self._flavor_ref(flavor_id),
                           "networks": _networks(networks), "metadata": dict(metadata),
                           "block_device_mapping_v2": mapping}}  # fmt: skip
        return ServerId(
            await self._pool.run(f"boot {name} from volume {volume_ids[0]}", self._api.boot, body)
        )

    async def _flavor_ref(self, flavor: str) -> str:
        """A flavor's id from its name (servers show their flavor's name since 2.47); an id stays as is."""
        for body in await self._pool.run("list flavors", self._api.flavors):
            if flavor in (body.get("name"), body.get("id")):
                return str(body["id"])
        return flavor

    async def rebuild(self, server_id: ServerId, image_id: str) -> None:
        body = {"rebuild": {"imageRef": image_id}}
        await self._pool.run(f"rebuild server {server_id}", self._api.server_action, server_id, body)

    async def delete_server(self, server_id: ServerId) -> None:
        await self._pool.run(f"delete server {server_id}", self._api.delete_server, server_id)
