"""The backup port: images (Nova createBackup, Glance), Cinder volume backups, and boots from a backup.

Driven by haven.backups (the runner, restores and drills); implemented by haven.cloud.sim.backups
(the simulated cloud, with ground truth about each disk's data) and haven.cloud.openstack.backups
(Nova, Glance and Cinder through openstacksdk). Every call returns once the cloud accepted it; the
effect shows later in get_image, get_volume_backup or get_target, read by the runner's next pass.
Errors cross as haven.domain.errors (NotFound, Conflict, TemporaryError, PermanentError).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from haven.domain.backups import BackupTarget, Image, Volume, VolumeBackup
from haven.domain.ids import ServerId


class BackupPort(Protocol):
    async def list_targets(self) -> Sequence[BackupTarget]:
        """Every server of every project, with what backups need (project, boot image or volumes)."""
        ...

    async def get_target(self, server_id: ServerId) -> BackupTarget:
        """One server; NotFound once it is deleted."""
        ...

    async def find_targets(self, name: str) -> Sequence[BackupTarget]:
        """Servers named exactly ``name`` (any project)."""
        ...

    async def find_restored(self, restore_id: str, name: str) -> Sequence[BackupTarget]:
        """The servers a restore booted: named ``name`` and tagged ``haven_restore_id=restore_id`` in
        their metadata (how a resumed restore finds its boot; never a server that only shares the name)."""
        ...

    async def rebuilt_since(self, server_id: ServerId, since: float) -> bool:
        """Whether Nova's instance actions show a rebuild of the server started at or after ``since``
        (how a resumed in-place restore knows its rebuild was asked)."""
        ...

    async def create_image_backup(
        self, server_id: ServerId, name: str, backup_type: str, rotation: int, properties: Mapping[str, str]
    ) -> str:
        """Nova's createBackup; returns the new image's id (Nova creates the image before it answers)."""
        ...

    async def find_images(self, name: str) -> Sequence[Image]:
        """Images named exactly ``name``, in any status."""
        ...

    async def get_image(self, image_id: str) -> Image:
        """NotFound once it is deleted."""
        ...

    async def delete_image(self, image_id: str) -> None: ...

    async def create_volume_backup(self, volume_id: str, name: str, incremental: bool) -> str:
        """Cinder's backup of an attached volume (``force``), full or incremental; returns its id."""
        ...

    async def find_volume_backups(self, name: str) -> Sequence[VolumeBackup]: ...

    async def get_volume_backup(self, backup_id: str) -> VolumeBackup: ...

    async def delete_volume_backup(self, backup_id: str) -> None: ...

    async def server_networks(self, server_id: ServerId) -> tuple[str, ...]:
        """The networks (Neutron ids) the server has ports on, as Nova shows them, in Nova's order, each
        once; () for a server with no network. NotFound once it is deleted."""
        ...

    async def find_network(self, name_or_id: str) -> str:
        """The id of the network with this id, else of the one network with this name (as Neutron
        lists them); NotFound when none, Conflict when several share the name."""
        ...

    async def boot_from_image(
        self, name: str, image_id: str, flavor_id: str, metadata: Mapping[str, str],
        networks: Sequence[str] = (),
    ) -> ServerId:  # fmt: skip
        """A new server from ``image_id`` with a port on each of ``networks`` (Neutron ids); with none,
        no network at all (Nova's ``networks: none``: a drill's)."""
        ...

    async def restore_volume_backup(self, backup_id: str, name: str) -> str:
        """Cinder restores the backup to a new volume named ``name``; returns the volume's id at once
        (the volume is ``restoring-backup`` until it is ``available``: read it with get_volume)."""
        ...

    async def find_volumes(self, name: str) -> Sequence[Volume]:
        """Volumes named exactly ``name`` (how a resumed restore finds the volume it restored)."""
        ...

    async def get_volume(self, volume_id: str) -> Volume:
        """NotFound once it is deleted."""
        ...

    async def delete_volume(self, volume_id: str) -> None: ...

    async def boot_from_volumes(
        self, name: str, volume_ids: Sequence[str], flavor_id: str, metadata: Mapping[str, str],
        delete_on_termination: bool, networks: Sequence[str] = (),
    ) -> ServerId:  # fmt: skip
        """A new server booting from ``volume_ids[0]``, the others attached, on ``networks`` as
        boot_from_image's (none: no network); the volumes go with the server when
        ``delete_on_termination`` (a drill's)."""
        ...

    async def rebuild(self, server_id: ServerId, image_id: str) -> None:
        """Rebuild the server in place from ``image_id`` (its disk replaced by the backup's)."""
        ...

    async def delete_server(self, server_id: ServerId) -> None: ...
