"""SimBackups: the backup port on the simulated cloud, with Glance's images, Cinder's backups and each
disk's data as ground truth.

Called by haven.backups through haven.cloud.backups.BackupPort, exactly as the OpenStack driver is;
by tests, drills and the fleet benchmark to inject faults (a backup that fails, a server resized or
deleted mid-backup, an image that boots into ERROR, a corrupted disk) and to read the truth (what each
server's disk holds, how many backups were ever uploading at once, every create call made).
Behaves as Nova and Glance do where haven relies on it: createBackup creates the image (``queued``)
before it answers and refuses a busy server (409); the upload finishes ``backup_s`` later, then Nova
rotates (deletes the oldest backups of that server and ``backup_type`` beyond ``rotation``); a server
deleted while its backup uploads leaves no image (Nova deletes it). Its Cinder follows Cinder's rules
where haven relies on them: a volume with a backup still creating is ``backing-up`` and refuses another
(400, raised as the OpenStack driver classes it: temporary); an incremental's parent is the volume's
newest backup, which must be available (400 otherwise, and with none); deleting a backup that is not
available or error, or that another backup depends on (one still ``deleting`` counts), is a 400; a
delete leaves the backup ``deleting`` for ``volume_delete_s``, then gone; a restore makes a new volume,
``restoring-backup`` for ``restore_s`` (the backup ``restoring`` meanwhile); a server booted from
restored volumes deletes them with itself when asked to (``delete_on_termination``). Its Neutron is a
catalogue of networks (``add_network``) and, as ground truth, the networks each server has a port on
(``ports``; ``attach`` for a protected server): a boot names networks by id or asks ``none``, and an
unknown id is refused as Nova refuses it (400, "Network ... could not be found").
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from haven.cloud.sim.cloud import SimCloud
from haven.cloud.sim.state import SimServer
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
from haven.domain.cloud import Flavor, ServerAction, TaskState, VmState
from haven.domain.errors import Conflict, NotFound, PermanentError, TemporaryError
from haven.domain.ids import ServerId

_BUSY_IMAGE = (ImageStatus.QUEUED, ImageStatus.SAVING)
REBUILD_ACTION = "rebuild"  # Nova's instance action name


@dataclass(slots=True)
class SimImage:
    id: str
    name: str
    status: ImageStatus
    created_at: float
    server_id: str
    backup_type: str
    properties: dict[str, str]
    data: str  # ground truth: the disk content this image holds
    broken: bool = False  # fault: a server booted from it ends in ERROR


@dataclass(slots=True)
class SimVolumeBackup:
    id: str
    name: str
    volume_id: str
    status: VolumeBackupStatus
    incremental: bool
    parent: str
    created_at: float
    data: str
    broken: bool = False  # fault: a server booted from a volume restored from it ends in ERROR


@dataclass(slots=True)
class SimVolume:
    """A volume a restore made (Cinder's restore to a new volume); the protected servers' own volumes
    are ``SimBackups.volumes`` (ids only: their data is the server's disk)."""

    id: str
    name: str
    status: str  # restoring-backup, available, in-use, error_restoring, deleted
    data: str
    server_id: str = ""  # attached to
    delete_on_termination: bool = False
    backup_id: str = ""  # ground truth: the Cinder backup it was restored from
    broken: bool = False


@dataclass(slots=True)
class BackupTimings:
    backup_s: float = 120.0  # createBackup to an active image (a snapshot's upload)
    volume_backup_s: float = 60.0
    volume_delete_s: float = 10.0  # a Cinder backup stays ``deleting`` this long after the delete call
    restore_s: float = 30.0  # a backup restored to a new volume: ``restoring-backup`` to ``available``
    boot_s: float = 20.0  # a restored server's boot to ACTIVE


@dataclass(slots=True)
class SimBackupFaults:
    fail_backups: int = 0  # the next N uploads fail (the image ends killed)
    refuse_calls: int = 0  # the next N createBackup calls answer 503 before any effect
    lose_answers: int = 0  # the next N createBackup calls take effect but their answer is lost
    refuse_permanently: str = ""  # createBackup answers this refusal (Nova's 403: a quota) until cleared
    fail_restores: int = 0  # the next N Cinder restores end ``error_restoring``
    slow_volumes: dict[str, float] = field(default_factory=dict)  # volume id -> extra seconds per backup


class SimBackups:
    def __init__(self, cloud: SimCloud, timings: BackupTimings | None = None) -> None:
        self.cloud = cloud
        self.timings = timings or BackupTimings()
        self.faults = SimBackupFaults()
        self.images: dict[str, SimImage] = {}
        self.volume_backups: dict[str, SimVolumeBackup] = {}
        self.disks: dict[ServerId, str] = {}  # ground truth: each server's data (absent: its initial data)
        self.projects: dict[ServerId, str] = {}
        self.volumes: dict[ServerId, tuple[str, ...]] = {}  # volume-backed servers' volumes
        self.image_of: dict[ServerId, str] = {}
        self.restored: dict[str, SimVolume] = {}  # ground truth: every volume a restore made
        self.volume_backup_calls: list[tuple[float, str, bool]] = []  # (at, volume, incremental) accepted
        self.restore_calls: list[tuple[float, str, str]] = []  # (at, backup, volume name) accepted
        self.create_calls: list[tuple[float, ServerId, str]] = []  # ground truth: every accepted createBackup
        self.rebuild_calls: list[tuple[float, ServerId, str]] = []  # ground truth: every accepted rebuild
        self.peak_uploading = 0  # ground truth: the most backups uploading at once
        self.network_names: dict[str, str] = {}  # Neutron's networks: id -> name
        self.ports: dict[ServerId, tuple[str, ...]] = {}  # ground truth: the networks each server is on
        self.boot_calls: list[tuple[float, str, tuple[str, ...]]] = []  # (at, name, networks) accepted
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()

    # ---- ground truth and faults ---------------------------------------------------------------

    def disk(self, server_id: ServerId) -> str:
        return self.disks.get(server_id, f"data of {server_id}")

    def write(self, server_id: ServerId, data: str) -> None:
        """The guest writes (or corrupts) its disk."""
        self.disks[server_id] = data

    def make_volume_backed(self, server_id: ServerId, *volume_ids: str) -> None:
        self.volumes[server_id] = volume_ids or (f"vol-{server_id}",)

    def add_network(self, name: str, network_id: str = "") -> str:
        """A Neutron network (its id: ``network_id`` or a new uuid)."""
        network_id = network_id or str(uuid.uuid4())
        self.network_names[network_id] = name
        return network_id

    def attach(self, server_id: ServerId, *network_ids: str) -> None:
        """The server gets a port on each network (as it was booted with them)."""
        self.cloud.sim_server(server_id)
        for n in network_ids:
            if n not in self.network_names:
                raise NotFound(f"Network {n} could not be found.")
        self.ports[server_id] = tuple(dict.fromkeys((*self.ports.get(server_id, ()), *network_ids)))

    def uploading(self) -> int:
        self._catch_up()
        return sum(1 for i in self.images.values() if i.status in _BUSY_IMAGE) + sum(
            1 for b in self.volume_backups.values() if b.status is VolumeBackupStatus.CREATING
        )

    def next_event_time(self) -> float | None:
        self._catch_up()
        return self._events[0][0] if self._events else None

    # ---- servers -------------------------------------------------------------------------------

    async def list_targets(self) -> Sequence[BackupTarget]:
        self._catch_up()
        return [self._target(self.cloud.sim_server(s.id)) for s in await self.cloud.list_servers()]

    async def get_target(self, server_id: ServerId) -> BackupTarget:
        self._catch_up()
        return self._target(self.cloud.sim_server(server_id))

    async def find_targets(self, name: str) -> Sequence[BackupTarget]:
        return [t for t in await self.list_targets() if t.name == name]

    async def find_restored(self, restore_id: str, name: str) -> Sequence[BackupTarget]:
        return [t for t in await self.find_targets(name) if t.metadata.get(RESTORE_ID_KEY) == restore_id]

    async def server_networks(self, server_id: ServerId) -> tuple[str, ...]:
        self._catch_up()
        self.cloud.sim_server(server_id)  # NotFound once it is deleted
        return self.ports.get(server_id, ())

    async def find_network(self, name_or_id: str) -> str:
        if name_or_id in self.network_names:
            return name_or_id
        named = sorted(n for n, name in self.network_names.items() if name == name_or_id)
        if not named:
            raise NotFound(f"no network with the id or name {name_or_id!r}")
        if len(named) > 1:
            raise Conflict(f"{len(named)} networks are named {name_or_id!r} ({', '.join(named)})")
        return named[0]

    async def rebuilt_since(self, server_id: ServerId, since: float) -> bool:
        self._catch_up()
        self.cloud.sim_server(server_id)  # NotFound once it is deleted
        return any(
            a.server_id == server_id and a.action == REBUILD_ACTION and a.at >= since
            for a in self.cloud.vm_actions
        )

    def _target(self, s: SimServer) -> BackupTarget:
        vols = self.volumes.get(s.id, ())
        return BackupTarget(
            id=s.id, name=s.name, project=self.projects.get(s.id, "demo"), vm_state=s.vm_state,
            busy=s.task_state is not TaskState.NONE, metadata=dict(s.metadata),
            image_id="" if vols else self.image_of.get(s.id, "sim-base-image"),
            volumes=tuple(VolumeRef(v, boot=i == 0) for i, v in enumerate(vols)), flavor_id=s.flavor.name,
            host=s.host,
        )  # fmt: skip

    async def delete_server(self, server_id: ServerId) -> None:
        self._catch_up()
        self.cloud.delete_server(server_id)
        self.ports.pop(server_id, None)  # Nova deletes its ports with it
        for vol in self.restored.values():
            if vol.server_id == server_id:
                vol.status = "deleted" if vol.delete_on_termination else "available"
                vol.server_id = ""
        for image in self.images.values():  # Nova deletes the image of a snapshot it could not finish
            if image.server_id == server_id and image.status in _BUSY_IMAGE:
                image.status = ImageStatus.DELETED

    async def rebuild(self, server_id: ServerId, image_id: str) -> None:
        self._catch_up()
        server, image = self.cloud.sim_server(server_id), self._image(image_id)
        if image.status is not ImageStatus.ACTIVE:
            raise Conflict(f"image {image_id} is not active")
        if server.task_state is not TaskState.NONE:
            raise Conflict(f"server {server_id} is busy ({server.task_state.value})")
        server.task_state, server.vm_state = TaskState.REBUILDING, VmState.BUILDING
        self.image_of[server_id] = image_id
        self.rebuild_calls.append((self.cloud.clock.now(), server_id, image_id))
        self.cloud.vm_actions.append(ServerAction(server_id, REBUILD_ACTION, self.cloud.clock.now()))

        def done() -> None:
            if server.id not in {s.id for s in self.cloud.servers_on(server.host)}:
                return
            server.task_state = TaskState.NONE
            server.vm_state = VmState.ERROR if image.broken else VmState.ACTIVE
            if not image.broken:
                self.disks[server_id] = image.data

        self._at(self.cloud.clock.now() + self.timings.boot_s, done)

    async def boot_from_image(
        self, name: str, image_id: str, flavor_id: str, metadata: Mapping[str, str],
        networks: Sequence[str] = (),
    ) -> ServerId:  # fmt: skip
        self._catch_up()
        image = self._image(image_id)
        if image.status is not ImageStatus.ACTIVE:
            raise Conflict(f"Image {image_id} is not active.")
        return self._boot(name, flavor_id, metadata, image.data, image.broken, image_id, networks)

    async def restore_volume_backup(self, backup_id: str, name: str) -> str:
        """Cinder's restore to a new volume: the backup is ``restoring`` and the volume
        ``restoring-backup`` for ``restore_s``; an incremental restores its whole chain."""
        self._catch_up()
        backup = self._volume_backup(backup_id)
        if backup.status is not VolumeBackupStatus.AVAILABLE:
            raise PermanentError("Invalid backup: Backup status must be available (HTTP 400)")
        vol = SimVolume(
            str(uuid.uuid4()),
            name,
            "restoring-backup",
            backup.data,
            backup_id=backup.id,
            broken=backup.broken,
        )
        self.restored[vol.id] = vol
        now = self.cloud.clock.now()
        self.restore_calls.append((now, backup_id, name))
        backup.status = VolumeBackupStatus.RESTORING
        fails = self.faults.fail_restores > 0
        self.faults.fail_restores -= 1 if fails else 0

        def done() -> None:
            if backup.status is VolumeBackupStatus.RESTORING:
                backup.status = VolumeBackupStatus.AVAILABLE
            if vol.status == "restoring-backup":
                vol.status = "error_restoring" if fails else "available"

        self._at(now + self.timings.restore_s, done)
        return vol.id

    async def find_volumes(self, name: str) -> Sequence[Volume]:
        self._catch_up()
        return [
            self._volume_view(v) for v in self.restored.values() if v.name == name and v.status != "deleted"
        ]

    async def get_volume(self, volume_id: str) -> Volume:
        self._catch_up()
        return self._volume_view(self._volume(volume_id))

    async def delete_volume(self, volume_id: str) -> None:
        self._catch_up()
        vol = self._volume(volume_id)
        if vol.status not in ("available", "error", "error_restoring"):
            raise PermanentError(f"Invalid volume: Volume status must be available or error, is {vol.status}")
        vol.status = "deleted"

    def _volume(self, volume_id: str) -> SimVolume:
        vol = self.restored.get(volume_id)
        if vol is None or vol.status == "deleted":
            raise NotFound(f"Volume {volume_id} could not be found.")
        return vol

    @staticmethod
    def _volume_view(v: SimVolume) -> Volume:
        return Volume(v.id, v.name, v.status)

    async def boot_from_volumes(
        self, name: str, volume_ids: Sequence[str], flavor_id: str, metadata: Mapping[str, str],
        delete_on_termination: bool, networks: Sequence[str] = (),
    ) -> ServerId:  # fmt: skip
        self._catch_up()
        vols = [self._volume(v) for v in volume_ids]
        for vol in vols:
            if vol.status != "available":
                raise PermanentError(f"Invalid volume: volume {vol.id} is {vol.status}, not available")
        server_id = self._boot(name, flavor_id, metadata, vols[0].data, vols[0].broken, "", networks)
        for vol in vols:
            vol.status, vol.server_id, vol.delete_on_termination = "in-use", server_id, delete_on_termination
        self.volumes[server_id] = tuple(v.id for v in vols)
        return server_id

    def _boot(
        self, name: str, flavor_id: str, metadata: Mapping[str, str], data: str, broken: bool, image_id: str,
        networks: Sequence[str] = (),
    ) -> ServerId:  # fmt: skip
        for n in networks:  # Nova asks Neutron for each before it accepts the boot
            if n not in self.network_names:
                raise PermanentError(f"Network {n} could not be found. (HTTP 400)")
        known = (s.flavor for h in self.cloud.host_names() for s in self.cloud.servers_on(h))
        flavor = next((f for f in known if f.name == flavor_id), None)
        flavor = flavor or Flavor(flavor_id or "sim.tiny", 1, 512, 1)
        hosts = [h for h in self.cloud.host_names() if self.cloud.is_powered(h)]
        if not hosts:
            raise Conflict("No valid host was found.")
        server_id = ServerId(str(uuid.uuid4()))
        server = SimServer(
            server_id, name, hosts[0], flavor, vm_state=VmState.BUILDING, metadata=dict(metadata)
        )
        self.cloud.boot_server(server)
        self.boot_calls.append((self.cloud.clock.now(), name, tuple(networks)))
        if networks:
            self.ports[server_id] = tuple(dict.fromkeys(networks))
        if image_id:
            self.image_of[server_id] = image_id

        def booted() -> None:
            if server.id in {s.id for s in self.cloud.servers_on(server.host)}:
                server.vm_state = VmState.ERROR if broken else VmState.ACTIVE
                server.fault = "Build of instance aborted: disk image is unusable" if broken else ""
                self.disks[server_id] = data

        self._at(self.cloud.clock.now() + self.timings.boot_s, booted)
        return server_id

    # ---- images ----------------------------------------------------------------------------------

    async def create_image_backup(
        self, server_id: ServerId, name: str, backup_type: str, rotation: int, properties: Mapping[str, str]
    ) -> str:
        self._catch_up()
        server = self.cloud.sim_server(server_id)
        if server.id in self.volumes:
            raise Conflict("Backup is not supported for volume-backed instances.")
        if self.faults.refuse_permanently:
            raise PermanentError(f"createBackup: 403 Forbidden: {self.faults.refuse_permanently}")
        if self.faults.refuse_calls:
            self.faults.refuse_calls -= 1
            raise TemporaryError("createBackup: 503 Service Unavailable", 5.0)
        if server.task_state is not TaskState.NONE or server.vm_state not in (
            VmState.ACTIVE,
            VmState.STOPPED,
        ):
            raise Conflict(
                f"Cannot 'createBackup' instance {server_id} while in task_state {server.task_state.value}"
            )
        now = self.cloud.clock.now()
        image = SimImage(
            str(uuid.uuid4()), name, ImageStatus.QUEUED, now, server_id, backup_type, dict(properties),
            self.disk(server_id),
        )  # fmt: skip
        self.images[image.id] = image
        self.create_calls.append((now, server_id, name))
        self.peak_uploading = max(self.peak_uploading, self.uploading())
        fails = self.faults.fail_backups > 0
        self.faults.fail_backups -= 1 if fails else 0

        def uploaded() -> None:
            if image.status not in _BUSY_IMAGE:
                return
            image.status = ImageStatus.KILLED if fails else ImageStatus.ACTIVE
            if not fails:
                self._rotate(server_id, backup_type, rotation)

        self._at(now + self.timings.backup_s, uploaded)
        if self.faults.lose_answers:
            self.faults.lose_answers -= 1
            raise TemporaryError("createBackup: the answer was lost (timeout)", 5.0)
        return image.id

    def _rotate(self, server_id: ServerId, backup_type: str, rotation: int) -> None:
        """Nova's rotation: the oldest of this server's ``backup_type`` beyond ``rotation`` go."""
        mine = sorted(
            (i for i in self.images.values()
             if i.server_id == server_id and i.backup_type == backup_type and i.status is ImageStatus.ACTIVE),
            key=lambda i: i.created_at,
        )  # fmt: skip
        for image in mine[: max(len(mine) - rotation, 0)]:
            image.status = ImageStatus.DELETED

    async def find_images(self, name: str) -> Sequence[Image]:
        self._catch_up()
        return [
            self._image_view(i)
            for i in self.images.values()
            if i.name == name and i.status is not ImageStatus.DELETED
        ]

    async def get_image(self, image_id: str) -> Image:
        self._catch_up()
        return self._image_view(self._image(image_id))

    async def delete_image(self, image_id: str) -> None:
        self._catch_up()
        self._image(image_id).status = ImageStatus.DELETED

    def _image(self, image_id: str) -> SimImage:
        image = self.images.get(image_id)
        if image is None or image.status is ImageStatus.DELETED:
            raise NotFound(f"image {image_id} not found")
        return image

    @staticmethod
    def _image_view(i: SimImage) -> Image:
        return Image(i.id, i.name, i.status, i.created_at, i.server_id, i.backup_type, dict(i.properties))

    # ---- volume backups -------------------------------------------------------------------------

    async def create_volume_backup(self, volume_id: str, name: str, incremental: bool) -> str:
        """Cinder's backup create: refused (400) while a backup of the volume is still creating (the
        volume is ``backing-up``); an incremental's parent is the volume's newest backup (by Cinder's
        rule), which must be available; with none, Cinder refuses (400)."""
        self._catch_up()
        owner = next((sid for sid, vols in self.volumes.items() if volume_id in vols), None)
        if owner is None:
            raise NotFound(f"Volume {volume_id} could not be found.")
        self.cloud.sim_server(owner)  # NotFound once the server (and its volume) is gone
        if any(
            b.volume_id == volume_id and b.status is VolumeBackupStatus.CREATING
            for b in self.volume_backups.values()
        ):  # Cinder's 400 while the volume is ``backing-up``; the OpenStack driver's TemporaryError
            raise TemporaryError(
                f"back up volume {volume_id}: Invalid volume: Volume to be backed up must be available or "
                'in-use, but the current status is "backing-up". (HTTP 400)',
                30.0,
            )
        mine = [
            b
            for b in self.volume_backups.values()
            if b.volume_id == volume_id and b.status is not VolumeBackupStatus.DELETED
        ]
        parent = ""
        if incremental:
            if not mine:
                raise PermanentError("Invalid backup: No backups available to do an incremental backup.")
            latest = max(mine, key=lambda b: b.created_at)
            if latest.status is not VolumeBackupStatus.AVAILABLE:
                raise PermanentError(
                    "Invalid backup: The parent backup must be available for incremental backup."
                )
            parent = latest.id
        now = self.cloud.clock.now()
        backup = SimVolumeBackup(
            str(uuid.uuid4()), name, volume_id, VolumeBackupStatus.CREATING, incremental, parent, now,
            self.disk(owner),
        )  # fmt: skip
        self.volume_backups[backup.id] = backup
        self.volume_backup_calls.append((now, volume_id, incremental))
        self.peak_uploading = max(self.peak_uploading, self.uploading())
        fails = self.faults.fail_backups > 0
        self.faults.fail_backups -= 1 if fails else 0

        def done() -> None:
            if backup.status is VolumeBackupStatus.CREATING:
                backup.status = VolumeBackupStatus.ERROR if fails else VolumeBackupStatus.AVAILABLE

        self._at(now + self.timings.volume_backup_s + self.faults.slow_volumes.get(volume_id, 0.0), done)
        return backup.id

    async def find_volume_backups(self, name: str) -> Sequence[VolumeBackup]:
        self._catch_up()
        return [
            self._vb_view(b)
            for b in self.volume_backups.values()
            if b.name == name and b.status is not VolumeBackupStatus.DELETED
        ]

    async def get_volume_backup(self, backup_id: str) -> VolumeBackup:
        self._catch_up()
        return self._vb_view(self._volume_backup(backup_id))

    async def delete_volume_backup(self, backup_id: str) -> None:
        """Cinder's delete: refused (400) unless available or error, and while any backup depends on
        it (one still ``deleting`` counts: Cinder removes it later); accepted, it is ``deleting`` for
        ``volume_delete_s``, then gone."""
        self._catch_up()
        backup = self._volume_backup(backup_id)
        if backup.status not in (VolumeBackupStatus.AVAILABLE, VolumeBackupStatus.ERROR):
            raise PermanentError(
                f"Invalid backup: Backup status must be available or error, is {backup.status.value}."
            )
        if self._has_dependents(backup.id):
            raise PermanentError("Invalid backup: Incremental backups exist for this backup.")
        backup.status = VolumeBackupStatus.DELETING

        def gone() -> None:
            backup.status = VolumeBackupStatus.DELETED

        self._at(self.cloud.clock.now() + self.timings.volume_delete_s, gone)

    def _has_dependents(self, backup_id: str) -> bool:
        return any(
            b.parent == backup_id and b.status is not VolumeBackupStatus.DELETED
            for b in self.volume_backups.values()
        )

    def _volume_backup(self, backup_id: str) -> SimVolumeBackup:
        backup = self.volume_backups.get(backup_id)
        if backup is None or backup.status is VolumeBackupStatus.DELETED:
            raise NotFound(f"Backup {backup_id} could not be found.")
        return backup

    def _vb_view(self, b: SimVolumeBackup) -> VolumeBackup:
        return VolumeBackup(
            b.id, b.name, b.volume_id, b.status, b.incremental, self._has_dependents(b.id), b.created_at
        )

    # ---- time ------------------------------------------------------------------------------------

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    def _catch_up(self) -> None:
        self.cloud.settle()
        now = self.cloud.clock.now()
        while self._events and self._events[0][0] <= now:
            _, _, action = heapq.heappop(self._events)
            action()
