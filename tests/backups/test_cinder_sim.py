"""Volume-backed servers on the simulated cloud's Cinder model, in virtual time, judged from its ground
truth (its Cinder backups and their parents, the volumes restores made, every backup and restore call
it accepted, each disk's data), never from haven's records alone. The model follows Cinder's rules
where haven relies on them: an incremental's parent is the volume's newest backup and must be
available; deleting a backup that another depends on (even one still ``deleting``) or one not available
is a 400; a delete is accepted as ``deleting`` and the backup is gone later; a restore makes a new
volume, ``restoring-backup`` until ``available``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupState, RestoreRecord, RestoreState, VolumeBackupStatus
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
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
