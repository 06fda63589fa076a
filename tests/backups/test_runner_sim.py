"""The backup runner on the simulated cloud, in virtual time, judged from the simulated cloud's ground
truth (its images, Cinder backups, every createBackup call it accepted and each disk's data)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from haven.backups.config import BackupsConfig, SchedulerSettings, parse_backups
from haven.backups.runner import BackupRunner
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import ImageStatus, VolumeBackupStatus
from haven.domain.clock import VirtualClock
from haven.domain.cloud import TaskState
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind
from haven.store import Store

HOUR = 3600.0


@dataclass
class Rig:
    clock: VirtualClock
    port: SimBackups
    store: Store
    servers: list[ServerId]

    def runner(self, config: BackupsConfig) -> BackupRunner:
        return BackupRunner(config, self.port, self.store, self.clock)

    def active_images(self, server: ServerId) -> list[str]:
        return [
            i.id
            for i in self.port.images.values()
            if i.server_id == server and i.status is ImageStatus.ACTIVE
        ]

    async def run_for(self, runner: BackupRunner, seconds: float, step: float = 60.0) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            await runner.run_pass()
            self.clock.advance_to(self.clock.now() + step)


@pytest.fixture
def rig() -> Iterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=4, vms=6, zones=1), clock)
    port = SimBackups(cloud)
    store = Store.open("sqlite://")
    servers = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    for sid in servers:
        cloud.sim_server(sid).metadata.update({"haven_backup": "hourly", "haven_backup_keep": "3"})
    yield Rig(clock, port, store, servers)
    store.close()


def config(**scheduler: Any) -> BackupsConfig:
    return BackupsConfig(
        enabled=True, scheduler=SchedulerSettings(**{"jitter_s": 600.0, "max_concurrent": 2, **scheduler})
    )


async def test_hourly_backups_rotate_to_exactly_keep_and_the_cap_holds(rig: Rig) -> None:
    runner = rig.runner(config())
    await rig.run_for(runner, 6 * HOUR)
    assert rig.port.peak_uploading <= 2
    for sid in rig.servers:
        assert len(rig.active_images(sid)) == 3  # Glance holds exactly keep per server
        windows = [name.split("-")[-2] for _, s, name in rig.port.create_calls if s == sid]
        assert len(windows) == len(set(windows)) >= 5  # never two calls for one window


async def test_an_engine_restarted_mid_backup_adopts_its_image_and_never_doubles(rig: Rig) -> None:
    rig.port.faults.lose_answers = 6  # each call takes effect, its answer never comes back
    first = rig.runner(config(max_concurrent=6))
    await first.run_pass()
    calls = len(rig.port.create_calls)
    assert calls == 6
    second = rig.runner(config(max_concurrent=6))  # a new engine on the same database
    await rig.run_for(second, HOUR / 2)
    assert len(rig.port.create_calls) == calls
    assert all(len(rig.active_images(sid)) == 1 for sid in rig.servers)


async def test_missed_windows_are_caught_up_once_after_a_long_outage(rig: Rig) -> None:
    runner = rig.runner(config(max_concurrent=6))
    await rig.run_for(runner, HOUR)
    before = len(rig.port.create_calls)
    rig.clock.advance_to(rig.clock.now() + 10 * HOUR)  # haven was down for ten windows
    await runner.run_pass()
    alerts = {(a.kind, str(a.host)) for a in rig.store.list_alerts()}
    assert all((AlertKind.BACKUP_MISSED, sid) in alerts for sid in rig.servers)
    await rig.run_for(runner, 0.5 * HOUR)
    assert len(rig.port.create_calls) - before == 6  # one catch-up per server, not ten
    assert not [a for a in rig.store.list_alerts() if a.kind is AlertKind.BACKUP_MISSED]


async def test_a_server_deleted_or_resized_mid_backup(rig: Rig) -> None:
    runner = rig.runner(config(max_concurrent=6, retry_s=300.0))
    gone, resized = rig.servers[0], rig.servers[1]
    rig.port.cloud.sim_server(resized).task_state = TaskState.REBUILDING  # resize in progress: Nova says 409
    await runner.run_pass()
    await rig.port.delete_server(gone)
    await rig.run_for(runner, 10 * 60)
    by_server = {r.server_id: r for r in rig.store.backups_relevant(0.0)}
    assert by_server[gone].state.value == "failed" and "deleted" in by_server[gone].error
    assert not [
        i for i in rig.port.images.values() if i.server_id == gone and i.status is not ImageStatus.DELETED
    ]
    assert resized not in by_server  # not asked of Nova while it resizes (Nova would answer 409)
    assert not [c for c in rig.port.create_calls if c[1] == resized]
    rig.port.cloud.sim_server(resized).task_state = TaskState.NONE  # the resize is over
    await rig.run_for(runner, 10 * 60)
    assert len(rig.active_images(resized)) == 1


async def test_volume_backed_servers_get_full_then_incremental_and_keep_their_chain(rig: Rig) -> None:
    vm = rig.servers[2]
    rig.port.make_volume_backed(vm, "vol-a")
    cfg = parse_backups({"chain_max": 3, "max_concurrent": 6, "jitter_s": 0.0}, "t")
    runner = rig.runner(cfg)
    await rig.run_for(runner, 8 * HOUR)
    mine = [b for b in rig.port.volume_backups.values() if b.volume_id == "vol-a"]
    alive = [b for b in mine if b.status is VolumeBackupStatus.AVAILABLE]
    assert [b.incremental for b in sorted(mine, key=lambda b: b.created_at)][:4] == [False, True, True, False]
    ids = {b.id for b in alive}
    assert all(b.parent in ids for b in alive if b.incremental)  # no kept incremental lost its parent
    assert len(alive) <= 3 + 2  # keep 3, plus the rest of the newest kept chain
