"""``haven drill backup-restore``: a virtual day of scheduled backups on the simulated cloud, then a
corrupted server rebuilt in place and a deleted one booted anew from their latest backups.

One server in four is volume-backed (its backups are Cinder backups of its volume, full then
incremental, on the simulated cloud's Cinder model); the deleted server is one of them, so its
restore is a Cinder restore to a new volume and a boot from it.

Called by haven.cli.backups (``haven drill backup-restore [--json]``). Every server is protected
(hourly, keep 3) and its guest writes new data each hour; haven serve's backup service
(haven.backups.serving: the runner, rotation and restore drills) runs pass by pass in virtual time.
Then one server's disk is corrupted and another server is deleted; each is restored through
haven.backups.restores, as ``haven backups restore`` and the API do. The verdict is judged from the
simulated cloud's world, never from haven's records: the restored servers exist and are ACTIVE, were
booted (or rebuilt) from the newest backup image Glance holds for them, and their disks hold what the
guest had written when that backup was taken.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.serving import BackupService
from haven.cloud.sim.backups import SimBackups, SimImage, SimVolumeBackup
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import ImageStatus, RestoreRecord, VolumeBackupStatus
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
from haven.domain.errors import NotFound
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind
from haven.store import Store

NAME = "backup-restore"
HOUR = 3600.0
KEEP = 3
STEP_S = 300.0  # virtual time between two rounds of the backup service (an upload takes 120 s)


@dataclass
class RestoreVerdict:
    server_id: str
    how: str  # "rebuild in place" or "as new"
    restored_id: str
    state: str  # haven's restore record's state (done/failed)
    exists: bool
    vm_state: str
    image_id: str  # the image (a volume-backed server: the Cinder backup) the simulated cloud booted it from
    expected_image_id: str  # the newest active backup image Glance (available backup Cinder) holds for it
    data_ok: bool  # the restored disk holds what the guest wrote before that backup was taken
    ok: bool = False
    source: str = "image"  # image (Nova createBackup, Glance) or cinder (a volume-backed server)


@dataclass
class BackupDrillReport:
    scenario: str
    servers: int
    seed: int
    virtual_hours: float
    backups_taken: int  # createBackup calls the simulated cloud accepted
    volume_backups_taken: int  # Cinder backups it accepted (volume-backed servers), full or incremental
    volume_backed: int  # servers that boot from a volume
    cinder_chains_intact: bool  # every incremental Cinder still holds has its parent
    max_concurrent: int
    peak_uploading: int  # the most backups uploading at once, as the simulated cloud saw it
    images_per_server: dict[str, int]  # image-backed servers: active backup images in Glance at the end
    drills_passed: int
    drills_failed: int
    alerts: dict[str, int]  # active backup alerts by kind before the failure
    restores: list[RestoreVerdict] = field(default_factory=list)
    verdict: str = "not_recovered"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_backup_restore(
    servers: int = 20,
    hosts: int = 10,
    seed: int = 1,
    hours: float = 24.0,
    max_concurrent: int = 4,
    step_s: float = STEP_S,
    broken_backups: bool = False,
) -> BackupDrillReport:
    """``broken_backups``: a fault for the judge's own test, the victims' backups do not boot."""
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=hosts, vms=servers, zones=1, seed=seed), clock)
    port = SimBackups(cloud)
    ids = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    for sid in ids:
        cloud.sim_server(sid).metadata.update({"haven_backup": "hourly", "haven_backup_keep": str(KEEP)})
    on_volumes = ids[1::4]  # one in four boots from a Cinder volume (at least one of two servers)
    for sid in on_volumes:
        port.make_volume_backed(sid)
    on_images = [sid for sid in ids if sid not in on_volumes]
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(max_concurrent=max_concurrent),
        # a deleted server's backup boots with this flavor (the server's own is gone with it)
        drills=DrillSettings(interval_s=6 * HOUR, concurrency=2, flavor=cloud.sim_server(ids[0]).flavor.name),
    )
    with Store.open("sqlite://") as store:
        service = BackupService(config, port, store, clock)
        written: dict[ServerId, list[tuple[float, str]]] = {sid: [] for sid in ids}  # the guests' writes
        start = clock.now()

        def guests_write() -> None:
            hour = int((clock.now() - start) // HOUR)
            for sid in ids:
                if not written[sid] or written[sid][-1][1] != f"{sid} hour {hour}":
                    data = f"{sid} hour {hour}"
                    port.write(sid, data)
                    written[sid].append((clock.now(), data))

        while clock.now() < start + hours * HOUR:
            guests_write()
            await service.run_round()
            clock.advance_to(clock.now() + step_s)
        alerts = _alert_counts(store)
        rng = random.Random(seed)
        corrupted, deleted = rng.choice(on_images), rng.choice(on_volumes)
        expected: dict[ServerId, SimImage | SimVolumeBackup | None] = {
            corrupted: _newest_image(port, corrupted),
            deleted: _newest_volume_backup(port, deleted),
        }
        for source in expected.values():
            if source is not None:
                source.broken = broken_backups
        port.write(corrupted, "CORRUPTED")
        await port.delete_server(deleted)
        in_place = await service.restorer.restore(corrupted, None, None)
        as_new = await service.restorer.restore(deleted, None, f"{deleted}-restored")
        end = clock.now() + HOUR
        while clock.now() < end and any(r.state.in_flight for r in _restores(store, in_place, as_new)):
            await service.run_round()
            clock.advance_to(clock.now() + step_s)
        finished = _restores(store, in_place, as_new)
        drills = [r for r in store.list_restores() if r.purpose.value == "drill"]
        report = BackupDrillReport(
            NAME, len(ids), seed, hours, len(port.create_calls), len(port.volume_backup_calls),
            len(on_volumes), _chains_intact(port), max_concurrent, port.peak_uploading,
            _images_per_server(port, on_images),
            sum(1 for d in drills if d.state.value == "done"),
            sum(1 for d in drills if d.state.value == "failed"),
            alerts,
        )  # fmt: skip
        for record, how in zip(finished, ("rebuild in place", "as new"), strict=True):
            source = expected[record.server_id]
            report.restores.append(await _judge(port, record, how, source, written[record.server_id]))
    report.verdict = (
        "recovered" if report.restores and all(r.ok for r in report.restores) else "not_recovered"
    )
    return report


def _restores(store: Store, *records: RestoreRecord) -> list[RestoreRecord]:
    by_id = {r.id: r for r in store.list_restores()}
    return [by_id[r.id] for r in records]


def _newest_image(port: SimBackups, server_id: ServerId) -> SimImage | None:
    mine = [i for i in port.images.values() if i.server_id == server_id and i.status is ImageStatus.ACTIVE]
    return max(mine, key=lambda i: i.created_at, default=None)


def _newest_volume_backup(port: SimBackups, server_id: ServerId) -> SimVolumeBackup | None:
    boot = port.volumes[server_id][0]
    mine = [
        b
        for b in port.volume_backups.values()
        if b.volume_id == boot and b.status is VolumeBackupStatus.AVAILABLE
    ]
    return max(mine, key=lambda b: b.created_at, default=None)


def _chains_intact(port: SimBackups) -> bool:
    held = {b.id for b in port.volume_backups.values() if b.status is not VolumeBackupStatus.DELETED}
    return all(b.parent in held for b in port.volume_backups.values() if b.id in held and b.incremental)


def _images_per_server(port: SimBackups, ids: list[ServerId]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sid in ids:
        n = sum(1 for i in port.images.values() if i.server_id == sid and i.status is ImageStatus.ACTIVE)
        counts[str(n)] = counts.get(str(n), 0) + 1
    return counts


def _alert_counts(store: Store) -> dict[str, int]:
    kinds = (AlertKind.BACKUP_MISSED, AlertKind.RECOVERY_POINT_STALE, AlertKind.RESTORE_DRILL_FAILED)
    alerts = [a for a in store.list_alerts() if a.kind in kinds]
    return {k.value: sum(1 for a in alerts if a.kind is k) for k in kinds}


async def _judge(
    port: SimBackups,
    record: RestoreRecord,
    how: str,
    source: SimImage | SimVolumeBackup | None,
    writes: list[tuple[float, str]],
) -> RestoreVerdict:
    """From the simulated cloud's world: the server, its state, the image (or the Cinder backup its
    volume was restored from) it came from, its disk."""
    restored = ServerId(record.target_id)
    expected_id = source.id if source else ""
    verdict = RestoreVerdict(
        record.server_id, how, restored, record.state.value, False, "", "", expected_id, False,
        source="cinder" if isinstance(source, SimVolumeBackup) else "image",
    )  # fmt: skip
    try:
        target = await port.get_target(restored) if restored else None
    except NotFound:
        target = None
    if target is None or source is None:
        return verdict
    verdict.exists, verdict.vm_state = True, target.vm_state.value
    if isinstance(source, SimVolumeBackup):
        boot = port.restored.get(port.volumes.get(restored, ("",))[0])
        verdict.image_id = boot.backup_id if boot is not None else ""
    else:
        verdict.image_id = port.image_of.get(restored, "")
    written_before = [data for at, data in writes if at <= source.created_at]
    verdict.data_ok = bool(written_before) and port.disk(restored) == written_before[-1] == source.data
    verdict.ok = target.vm_state is VmState.ACTIVE and verdict.image_id == source.id and verdict.data_ok
    return verdict
