"""Volume-backed servers on the simulated cloud's Cinder model, in virtual time, judged from its ground
truth (its Cinder backups and their parents, the volumes restores made, every backup and restore call
it accepted, each disk's data), never from haven's records alone. The model follows Cinder's rules
where haven relies on them: an incremental's parent is the volume's newest backup and must be
available; deleting a backup that another depends on (even one still ``deleting``) or one not available
is a 400; a delete is accepted as ``deleting`` and the backup is gone later; a restore makes a new
volume, ``restoring-backup`` until ``available``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from openstack import exceptions as os_exc

from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings, parse_backups
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.cloud.openstack.backups import OpenStackBackups
from haven.cloud.openstack.calls import CallPool
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupState, RestoreRecord, RestoreState, VolumeBackupStatus
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
from haven.domain.errors import ConfigError, PermanentError, TemporaryError
from haven.domain.ids import ServerId
from haven.store import Store

HOUR = 3600.0


@dataclass
class Rig:
    clock: VirtualClock
    port: SimBackups
    store: Store
    server: ServerId
    config: BackupsConfig

    def runner(self) -> BackupRunner:
        return BackupRunner(self.config, self.port, self.store, self.clock)

    def restorer(self) -> Restorer:
        return Restorer(self.port, self.store, self.clock, self.config.drills)

    def later(self, seconds: float = 30.0) -> None:
        self.clock.advance_to(self.clock.now() + seconds)

    async def run_for(self, runner: BackupRunner, seconds: float, step: float = 60.0) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            await runner.run_pass()
            self.later(step)

    def cinder(self, volume: str) -> list[tuple[str, bool, str, VolumeBackupStatus]]:
        """Cinder's backups of ``volume`` (id, incremental, parent, status), oldest first."""
        mine = [b for b in self.port.volume_backups.values() if b.volume_id == volume]
        mine.sort(key=lambda b: b.created_at)
        return [(b.id, b.incremental, b.parent, b.status) for b in mine]


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=2, zones=1), clock)
    store = Store.open("sqlite://")
    server = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]
    cloud.sim_server(server).metadata.update({"haven_backup": "hourly", "haven_backup_keep": "2"})
    port = SimBackups(cloud)
    port.make_volume_backed(server, "vol-boot", "vol-data")
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=4, chain_max=3),
        drills=DrillSettings(interval_s=10 * 86400.0, timeout_s=600.0),
    )
    yield Rig(clock, port, store, server, config)
    store.close()


async def test_chains_are_full_then_incremental_and_rotation_never_breaks_one(rig: Rig) -> None:
    runner = rig.runner()
    await rig.run_for(runner, 10 * HOUR + 1800)
    for volume in ("vol-boot", "vol-data"):
        made = rig.cinder(volume)
        assert [inc for _, inc, _, _ in made[:7]] == [False, True, True, False, True, True, False]
        alive = {bid for bid, _, _, status in made if status is not VolumeBackupStatus.DELETED}
        for _, incremental, parent, status in made:
            if status is not VolumeBackupStatus.DELETED and incremental:
                assert parent in alive  # Cinder still holds every parent a kept incremental needs
        # keep 2 backups, plus the parents they need (a chain is at most 3): never a whole history
        assert 2 <= len(alive) <= 5
        assert len(alive) < len(made)  # rotation did delete whole chains
    calls = {(v, inc) for _, v, inc in rig.port.volume_backup_calls}
    assert ("vol-boot", True) in calls and ("vol-data", True) in calls
    # haven's records agree with Cinder: a record is deleted only once Cinder's backups are gone
    for record in rig.store.backups_relevant(0.0):
        for backup_id in record.volume_backups.values():
            status = rig.port.volume_backups[backup_id].status
            if record.state is BackupState.DELETED:
                assert status is VolumeBackupStatus.DELETED
            if record.state is BackupState.AVAILABLE:
                assert status is VolumeBackupStatus.AVAILABLE


async def test_a_full_whose_incremental_cinder_still_deletes_waits_and_is_never_refused(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused: list[str] = []
    delete = rig.port.delete_volume_backup

    async def counting(backup_id: str) -> None:
        try:
            await delete(backup_id)
        except Exception as exc:
            refused.append(str(exc))
            raise

    monkeypatch.setattr(rig.port, "delete_volume_backup", counting)
    rig.port.timings.volume_delete_s = 600.0  # Cinder deletes slowly: a chain's links stay ``deleting``
    await rig.run_for(rig.runner(), 12 * HOUR)
    assert refused == []  # haven read has_dependent_backups and waited, never asked Cinder in vain
    deleted = [r for r in rig.store.backups_relevant(0.0) if r.state is BackupState.DELETED]
    assert deleted  # and the chains did go, link by link


async def test_a_parent_gone_from_cinder_makes_the_next_backup_a_full(rig: Rig) -> None:
    runner = rig.runner()
    await rig.run_for(runner, 600)  # the clock starts on the hour: the first window's backup
    ((full, inc, _, status),) = rig.cinder("vol-boot")
    assert not inc and status is VolumeBackupStatus.AVAILABLE
    rig.port.volume_backups[full].status = VolumeBackupStatus.DELETED  # an operator deleted it in Cinder
    await rig.run_for(runner, HOUR)
    made = rig.cinder("vol-boot")
    assert [i for _, i, _, _ in made] == [False, False]  # a full again, not an incremental Cinder refuses
    assert [i for _, i, _, _ in rig.cinder("vol-data")] == [False, True]  # the other volume's chain goes on
    newest = rig.store.backups_of(rig.server)[-1]
    assert newest.state is BackupState.AVAILABLE


async def test_a_restore_as_new_resumed_by_another_engine_restores_each_volume_once(rig: Rig) -> None:
    runner = rig.runner()
    await rig.run_for(runner, HOUR + 600)
    backed_up = rig.port.disk(rig.server)
    rig.port.write(rig.server, "corrupted")
    first = rig.restorer()
    record = await first.restore(rig.server, None, "db-restored")
    assert record.state is RestoreState.ISSUED  # Cinder restores: the volumes are not available yet
    assert len(rig.port.restore_calls) == 2
    second = rig.restorer()  # the first engine died; another resumes its record from the store
    for _ in range(10):
        rig.later()
        await second.drill_round([])
    done = restore_of(rig, record.id)
    assert done.state is RestoreState.DONE, done.error
    assert len(rig.port.restore_calls) == 2  # never a second restore of a volume
    new = rig.port.cloud.sim_server(ServerId(done.target_id))
    assert new.name == "db-restored" and new.vm_state is VmState.ACTIVE
    assert rig.port.disk(new.id) == backed_up  # the backed-up data, not the corruption
    volumes = [rig.port.restored[v] for v in rig.port.volumes[new.id]]
    assert [v.status for v in volumes] == ["in-use", "in-use"]
    assert not any(v.delete_on_termination for v in volumes)  # a kept server keeps its volumes


async def test_a_drill_of_a_volume_backed_server_leaves_no_volume_and_a_failed_restore_none_either(
    rig: Rig,
) -> None:
    runner = rig.runner()
    await rig.run_for(runner, HOUR + 600)
    restorer = rig.restorer()
    await restorer.drill_round([rig.server])
    for _ in range(10):
        rig.later()
        await restorer.drill_round([rig.server])
    (drill,) = [d for d in rig.store.list_restores() if d.purpose.value == "drill"]
    assert drill.state is RestoreState.DONE, drill.error
    assert len(rig.port.restored) == 2
    assert all(v.status == "deleted" for v in rig.port.restored.values())  # gone with the drill's server

    rig.port.faults.fail_restores = 1
    record = await restorer.restore(rig.server, None, "db-again")
    for _ in range(5):
        rig.later()
        await restorer.drill_round([])
    failed = restore_of(rig, record.id)
    assert failed.state is RestoreState.FAILED and "error_restoring" in failed.error
    assert all(v.status == "deleted" for v in rig.port.restored.values())  # its volumes deleted too


def restore_of(rig: Rig, restore_id: str) -> RestoreRecord:
    (record,) = [r for r in rig.store.list_restores() if r.id == restore_id]
    return record


async def test_a_failed_volume_backup_waits_for_its_other_volumes_then_leaves_nothing_in_cinder(
    rig: Rig,
) -> None:
    rig.port.faults.fail_backups = 1  # the boot volume's backup ends in error...
    rig.port.faults.slow_volumes["vol-data"] = 600.0  # ...while the data volume's is still creating
    await rig.run_for(rig.runner(), 900, step=30.0)
    failed = rig.store.backups_of(rig.server)[0]
    assert failed.state is BackupState.FAILED and "error" in failed.error
    left = {v: rig.port.volume_backups[b].status for v, b in failed.volume_backups.items()}
    assert left == {"vol-boot": VolumeBackupStatus.DELETED, "vol-data": VolumeBackupStatus.DELETED}


async def test_a_server_deleted_mid_backup_keeps_its_cinder_backup_and_comes_back_from_it(rig: Rig) -> None:
    runner = rig.runner()
    await runner.run_pass()  # the first window's backup: Cinder is taking it
    backed_up = rig.port.disk(rig.server)
    await rig.port.delete_server(rig.server)  # the server (not Cinder's backup of its volume) is gone
    await rig.run_for(runner, 300, step=30.0)
    (kept,) = rig.store.backups_of(rig.server)
    assert kept.state is BackupState.AVAILABLE  # its last recovery point, kept
    assert {rig.port.volume_backups[b].status for b in kept.volume_backups.values()} == {
        VolumeBackupStatus.AVAILABLE
    }
    restorer = Restorer(rig.port, rig.store, rig.clock, DrillSettings(timeout_s=600.0, flavor="m1.small"))
    record = await restorer.restore(rig.server, None, "db-back")
    for _ in range(5):
        rig.later()
        record = await restorer.advance(record)
    assert record.state is RestoreState.DONE, record.error
    assert rig.port.disk(ServerId(record.target_id)) == backed_up


# ---- a Cinder backup slower than timeout_s (Cinder took 341-374 s for one under load on the lab) ----


def untracked(rig: Rig) -> list[str]:
    """Cinder's backups (ground truth) that exist and that no record answers for: neither a live record
    (in flight, available, deleting) nor a failed one still marked as having left it."""
    answered = {
        b
        for r in rig.store.backups_relevant(0.0)
        if r.state is not BackupState.FAILED or r.leftover
        for b in r.volume_backups.values()
    }
    return [
        b.id
        for b in rig.port.volume_backups.values()
        if b.status is not VolumeBackupStatus.DELETED and b.id not in answered
    ]


def slow_config(rig: Rig, **scheduler: Any) -> BackupsConfig:
    values: dict[str, Any] = {"jitter_s": 0.0, "chain_max": 3, "timeout_s": 300.0, **scheduler}
    settings = SchedulerSettings(**values)
    return dataclasses.replace(rig.config, scheduler=settings)


async def test_a_cinder_backup_slower_than_timeout_s_is_kept_and_the_chain_continues_from_it(
    rig: Rig,
) -> None:
    rig.config = slow_config(rig)
    rig.port.faults.slow_volumes["vol-boot"] = 400.0  # each backup of it: 460 s, past timeout_s (300 s)
    runner = rig.runner()
    first = None
    for _ in range(int((2 * HOUR + 900) / 30)):
        await runner.run_pass()
        assert untracked(rig) == []  # never, at any pass, a Cinder backup no record answers for
        if first is None and rig.store.backups_of(rig.server):
            first = rig.store.backups_of(rig.server)[0]
        rig.later(30.0)
    records = rig.store.backups_of(rig.server)
    assert [r.state for r in records] == [BackupState.AVAILABLE] * 3  # one per window, none failed
    assert all(r.attempt == 1 and r.late_at is not None for r in records)  # late, marked in the store
    assert first is not None and first.accepted_at is not None
    # Cinder's own state: one backup per volume and window, each a link of the chain haven tracks
    boot = rig.cinder("vol-boot")
    assert len(boot) == 3 and len(rig.port.volume_backup_calls) == 6
    assert [(inc, parent) for _, inc, parent, _ in boot] == [
        (False, ""),
        (True, records[0].volume_backups["vol-boot"]),
        (True, records[1].volume_backups["vol-boot"]),
    ]
    assert {status for *_, status in boot} == {VolumeBackupStatus.AVAILABLE}


async def test_a_cinder_backup_past_volume_timeout_s_fails_and_its_leftover_goes_once_cinder_settles(
    rig: Rig,
) -> None:
    rig.config = slow_config(rig, volume_timeout_s=900.0, retry_s=300.0)
    rig.port.faults.slow_volumes["vol-boot"] = 1500.0  # Cinder creating it 1,560 s: past the hard cap
    runner = rig.runner()
    start = rig.clock.now()
    await runner.run_pass()
    (record,) = rig.store.backups_of(rig.server)
    leftover = record.volume_backups["vol-boot"]
    await rig.run_for(runner, 1000, step=30.0)
    (failed,) = rig.store.backups_of(rig.server)
    assert failed.state is BackupState.FAILED and "volume_timeout_s" in failed.error
    assert failed.leftover  # Cinder still creates it: marked, not forgotten
    assert rig.port.volume_backups[leftover].status is VolumeBackupStatus.CREATING
    assert untracked(rig) == []
    rig.port.faults.slow_volumes.clear()  # the next backups are quick
    calls = len(rig.port.volume_backup_calls)
    while rig.port.volume_backups[leftover].status is not VolumeBackupStatus.DELETED:
        assert rig.clock.now() < start + 3000, "the leftover was never deleted"
        await runner.run_pass()
        assert untracked(rig) == []
        if rig.port.volume_backups[leftover].status is not VolumeBackupStatus.DELETED:
            # the retry (due after retry_s) waits: no backup of the volume while the leftover exists
            assert len(rig.port.volume_backup_calls) == calls
        rig.later(30.0)
    await rig.run_for(runner, HOUR, step=30.0)
    first, retried, *_ = rig.store.backups_of(rig.server)
    assert first.id == failed.id and not first.leftover  # its mark cleared once Cinder deleted it
    assert retried.state is BackupState.AVAILABLE and retried.attempt == 2 and retried.slot == first.slot
    assert len([r for r in rig.store.backups_of(rig.server) if r.state is BackupState.FAILED]) == 1
    # Cinder: the leftover gone, the retry a full, the next window's incremental based on the retry's
    boot = [b for b in rig.cinder("vol-boot") if b[0] != leftover]
    assert [(inc, parent) for _, inc, parent, _ in boot[:2]] == [
        (False, ""),
        (True, retried.volume_backups["vol-boot"]),
    ]
    assert untracked(rig) == []


async def test_a_volume_backing_up_defers_the_backup_without_burning_an_attempt(rig: Rig) -> None:
    rig.config = slow_config(rig, attempts=1)
    rig.port.faults.slow_volumes["vol-boot"] = 400.0
    tenants = await rig.port.create_volume_backup("vol-boot", "tenant-own", False)  # someone else's
    rig.port.faults.slow_volumes.clear()
    runner = rig.runner()
    await runner.run_pass()  # Cinder refuses: the volume is backing-up
    (record,) = rig.store.backups_of(rig.server)
    assert record.state is BackupState.ISSUED and not record.volume_backups
    await rig.run_for(runner, 900, step=30.0)
    (record,) = rig.store.backups_of(rig.server)
    assert record.state is BackupState.AVAILABLE and record.attempt == 1  # the window's one attempt
    assert rig.port.volume_backups[tenants].status is VolumeBackupStatus.AVAILABLE
    made = {b for _, b in record.volume_backups.items()}
    assert {rig.port.volume_backups[b].status for b in made} == {VolumeBackupStatus.AVAILABLE}


async def test_cinders_backing_up_refusal_is_temporary_through_the_openstack_driver() -> None:
    """The same 400 from a real Cinder's API, through openstacksdk's exception and haven's translation."""
    message = (
        "Invalid volume: Volume to be backed up must be available or in-use, but the current status is "
        '"backing-up".'
    )

    class Refusing:
        def __init__(self, details: str) -> None:
            self.details = details

        def create_volume_backup(self, body: object) -> str:
            raise os_exc.BadRequestException(message="Bad Request", details=self.details, http_status=400)

    async def ask(details: str) -> None:
        pool = CallPool(1)
        try:
            port = OpenStackBackups(Refusing(details), pool)  # type: ignore[arg-type]
            await port.create_volume_backup("vol", "name", False)
        finally:
            pool.close()

    with pytest.raises(TemporaryError, match="backing-up"):
        await ask(message)
    with pytest.raises(PermanentError, match="No backups available") as refused:
        await ask("Invalid backup: No backups available to do an incremental backup.")
    assert not isinstance(refused.value, TemporaryError)


def test_volume_timeout_s_below_timeout_s_is_refused() -> None:
    with pytest.raises(ConfigError, match="volume_timeout_s: must be at least timeout_s"):
        parse_backups({"timeout_s": 600.0, "volume_timeout_s": 300.0}, "haven.toml")
    assert parse_backups({}, "haven.toml").scheduler.volume_timeout_s == 86400.0
