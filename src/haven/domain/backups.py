"""Instance backups: what a server's policy asks, the images and volume backups made, and restores.

Pure values shared by haven.backups (the scheduler, the runner, restores and drills), the store
(which persists BackupRecord and RestoreRecord) and the cloud drivers (which return Image, VolumeBackup
and BackupTarget). Times are epoch seconds (UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from haven.domain.cloud import VmState
from haven.domain.ids import ServerId

# Server metadata that opts a server in and sets its retention (Staffeln's idea, haven's keys).
BACKUP_KEY = "haven_backup"  # hourly | daily | weekly | a 5-field cron expression | off
KEEP_KEY = "haven_backup_keep"  # keep the newest N
KEEP_DAILY_KEY = "haven_backup_keep_daily"  # and the newest of each of the last N days
KEEP_WEEKLY_KEY = "haven_backup_keep_weekly"  # and the newest of each of the last N ISO weeks
# Properties haven sets on every backup image it asks Nova for (createBackup's metadata).
IMAGE_BACKUP_ID = "haven_backup_id"
IMAGE_SLOT = "haven_backup_slot"
# Metadata haven sets on every server a restore (or drill) boots: how a resumed restore finds it.
RESTORE_ID_KEY = "haven_restore_id"
BACKUP_TYPE_PREFIX = "haven-"  # Nova's backup_type of haven's images: its rotation touches only haven's


def nova_backup_type(backup_type: str) -> str:
    """The backup_type haven asks of Nova; a record written before the prefix (``daily``) gets it too."""
    return backup_type if backup_type.startswith(BACKUP_TYPE_PREFIX) else BACKUP_TYPE_PREFIX + backup_type


class BackupKind(StrEnum):
    IMAGE = "image"  # Nova createBackup: a Glance image of an image-backed server
    VOLUME = "volume"  # Cinder backups of a volume-backed server's volumes


class BackupState(StrEnum):
    """A backup's life; ISSUED and CREATING are in flight, DELETED and FAILED are over."""

    ISSUED = "issued"  # intent committed; the create call may or may not have been made
    CREATING = "creating"  # the cloud accepted it: the image (or volume backups) exist, not ready yet
    AVAILABLE = "available"  # a good backup: the image is active (the volume backups available)
    DELETING = "deleting"  # rotation decided; the delete call may or may not have been made
    DELETED = "deleted"
    FAILED = "failed"

    @property
    def in_flight(self) -> bool:
        return self in (BackupState.ISSUED, BackupState.CREATING)


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"  # haven backups run


@dataclass(frozen=True, slots=True)
class Retention:
    """Keep the newest ``keep``, plus the newest of each of the last ``daily`` days and ``weekly`` weeks."""

    keep: int = 7
    daily: int = 0
    weekly: int = 0

    @property
    def ceiling(self) -> int:
        """The most backups this retention can keep at once."""
        return self.keep + self.daily + self.weekly


@dataclass(frozen=True, slots=True)
class BackupPolicy:
    schedule: str  # hourly | daily | weekly | a cron expression (haven.backups.schedule parses it)
    retention: Retention = field(default_factory=Retention)
    source: str = "metadata"  # where it came from: metadata, project NAME, segment NAME, default

    @property
    def backup_type(self) -> str:
        """Nova's ``backup_type`` for createBackup: haven's own (``haven-daily``, ``haven-cron`` for an
        expression), never a tenant's: Nova's rotation deletes every image of the server with that
        type, the tenant's own ``openstack server backup create --type daily`` too."""
        name = self.schedule if self.schedule in ("hourly", "daily", "weekly") else "cron"
        return nova_backup_type(name)


@dataclass(frozen=True, slots=True)
class VolumeRef:
    id: str
    boot: bool = False


@dataclass(frozen=True, slots=True)
class BackupTarget:
    """A server as backups see it: its project, how it boots, its state and metadata."""

    id: ServerId
    name: str
    project: str
    vm_state: VmState
    busy: bool  # a task in progress (resize, migration, another snapshot): Nova refuses a backup now
    metadata: Mapping[str, str] = field(default_factory=dict)
    image_id: str = ""  # the image it boots from; "" for a volume-backed server
    volumes: tuple[VolumeRef, ...] = ()
    flavor_id: str = ""
    segment: str = ""  # the segment of its host, when haven knows it (haven.backups.runner fills it)
    host: str = ""  # the compute host it runs on, as Nova names it ("" unknown)

    @property
    def volume_backed(self) -> bool:
        return not self.image_id and any(v.boot for v in self.volumes)


@dataclass(frozen=True, slots=True)
class BackupRecord:
    """One backup of one server, persisted before the create call (intent) and after each outcome."""

    id: str
    server_id: ServerId
    server_name: str
    project: str
    kind: BackupKind
    slot: float  # the schedule window it satisfies (a manual backup: its own start)
    trigger: Trigger
    backup_type: str
    name: str  # the image's (or volume backups') name: the key a resumed step finds it by
    state: BackupState
    created_at: float
    attempt: int = 1
    image_id: str = ""
    volume_backups: Mapping[str, str] = field(default_factory=dict)  # volume id -> Cinder backup id
    incremental: bool = False
    parent_id: str = ""  # the record this incremental chain continues ("" for an image or a full)
    completed_at: float | None = None  # when it became available (its recovery point is created_at)
    finished_at: float | None = None  # deleted or failed at
    error: str = ""
    # A process outside the leader working on it (haven backups run): the leader's passes leave the
    # record alone while ``held_until`` (epoch seconds) is ahead, then resume it as a dead engine's.
    held_by: str = ""
    held_until: float = 0.0
    accepted_at: float | None = None  # when the cloud accepted the create call(s): creating since
    late_at: float | None = None  # still creating past the scheduler's timeout_s (a Cinder backup)
    leftover: bool = False  # failed, but Cinder (or Glance) may still hold what it made: removed pass by pass
    # The server's networks (Neutron ids, Nova's order) read when the cloud took the backup: a restore
    # as new of a deleted server boots on them. None: not read (a record from before, or the read failed).
    networks: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.networks is not None and not isinstance(self.networks, tuple):  # the store's JSON list
            object.__setattr__(self, "networks", tuple(self.networks))


class RestorePurpose(StrEnum):
    DRILL = "drill"  # boot the backup isolated (no network), check ACTIVE, delete
    AS_NEW = "as_new"  # boot a new server from the backup, kept
    REBUILD = "rebuild"  # rebuild the server in place from the backup image


class RestoreState(StrEnum):
    ISSUED = "issued"  # intent committed; the boot or rebuild may or may not have been asked
    BOOTING = "booting"  # Nova accepted it
    CLEANING = "cleaning"  # a drill: ACTIVE seen (or failed), its server being deleted
    DONE = "done"
    FAILED = "failed"

    @property
    def in_flight(self) -> bool:
        return self in (RestoreState.ISSUED, RestoreState.BOOTING, RestoreState.CLEANING)


@dataclass(frozen=True, slots=True)
class RestoreRecord:
    id: str
    purpose: RestorePurpose
    server_id: ServerId  # the protected server the backup is of
    backup_id: str
    image_id: str
    name: str  # the new server's name (a drill's is haven-drill-...): the key a resumed step finds it by
    state: RestoreState
    created_at: float
    recovery_point: float  # when the backup was taken
    target_id: str = ""  # the server booted (or rebuilt)
    active_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    held_by: str = ""  # as BackupRecord's: haven backups restore, in another process than the leader
    held_until: float = 0.0
    asked_by: str = ""  # who asked for it outside the schedule (the dashboard's drill: the audit record)
    networks: tuple[str, ...] = ()  # the networks (Neutron ids) a restore as new boots on; () none (a drill)

    def __post_init__(self) -> None:
        if not isinstance(self.networks, tuple):  # the store's JSON list
            object.__setattr__(self, "networks", tuple(self.networks))


class ImageStatus(StrEnum):
    """Glance's image statuses."""

    QUEUED = "queued"
    SAVING = "saving"
    ACTIVE = "active"
    KILLED = "killed"
    DELETED = "deleted"
    PENDING_DELETE = "pending_delete"
    DEACTIVATED = "deactivated"
    UPLOADING = "uploading"
    IMPORTING = "importing"


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    name: str
    status: ImageStatus
    created_at: float
    server_id: str = ""  # Glance's instance_uuid property, set by Nova on a snapshot or backup
    backup_type: str = ""
    properties: Mapping[str, str] = field(default_factory=dict)
    size: int | None = None


class VolumeBackupStatus(StrEnum):
    CREATING = "creating"
    AVAILABLE = "available"
    DELETING = "deleting"
    ERROR = "error"
    RESTORING = "restoring"
    ERROR_DELETING = "error_deleting"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class VolumeBackup:
    id: str
    name: str
    volume_id: str
    status: VolumeBackupStatus
    incremental: bool
    has_dependent_backups: bool = False
    created_at: float = 0.0


def held_by_another(record: BackupRecord | RestoreRecord, holder: str, now: float) -> bool:
    """Whether another process (not ``holder``) holds ``record`` now: leave it alone."""
    return bool(record.held_by) and record.held_by != holder and record.held_until > now


@dataclass(frozen=True, slots=True)
class Volume:
    """A Cinder volume as a restore sees it: the one a backup was restored to, found again by its name."""

    id: str
    name: str
    status: str  # Cinder's: creating, restoring-backup, available, error_restoring, ...
