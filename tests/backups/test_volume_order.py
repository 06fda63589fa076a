"""A volume-backed server's restore boots from its boot volume, on SQLite and on a real PostgreSQL.

A backup's Cinder backups (volume -> backup) were stored as a JSON object; PostgreSQL's JSONB keeps no
key order (shorter keys first), and a restore gives the first one ``boot_index`` 0: a server whose boot
volume's id sorts after its data volume's booted from its data volume. They are stored as ordered pairs
now (the boot volume first), and a record stored in the wrong order (before the fix) is put right from
the live server's boot volume. Judged from the simulated cloud's ground truth: the Cinder backup the new
server's first volume was restored from, and the volume that backup was taken of."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupRecord, BackupState, RestoreState
from haven.domain.clock import VirtualClock
from haven.domain.ids import ServerId
from haven.store import Store
from store.postgres_server import SESSION_DATABASE, PostgresServer

BOOT, DATA = "vol-root-boot", "vol-data"  # JSONB puts the shorter key, the data volume, first


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    if request.param == "sqlite":
        opened = Store.open(f"sqlite:///{tmp_path_factory.mktemp('store')}/haven.db")
        yield opened
        opened.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    request.getfixturevalue("postgres_url")  # the session's database exists
    schema = server.create_schema(SESSION_DATABASE)
    opened = Store.open(server.url_for(SESSION_DATABASE, schema))
    yield opened
    opened.close()
    server.drop_schema(SESSION_DATABASE, schema)


async def _backed_up(store: Store) -> tuple[VirtualClock, SimBackups, ServerId, BackupsConfig, BackupRecord]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=2, zones=1), clock)
    server = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]
    port = SimBackups(cloud)
    port.make_volume_backed(server, BOOT, DATA)
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=4),
        drills=DrillSettings(interval_s=10 * 86400.0, timeout_s=3600.0),
    )
    runner = BackupRunner(config, port, store, clock)
    record = await runner.backup_now(server)
    for _ in range(60):
        clock.advance_to(clock.now() + 60)
        await runner.run_pass()
        record = store.get_backup(record.id)
        if record.state is BackupState.AVAILABLE:
            break
    assert record.state is BackupState.AVAILABLE, record.error
    return clock, port, server, config, record


async def _boot_volume_of_restore(
    store: Store, clock: VirtualClock, port: SimBackups, server: ServerId, config: BackupsConfig
) -> str:
    restorer = Restorer(port, store, clock, config.drills)
    record = await restorer.restore(server, None, "restored")
    for _ in range(60):
        clock.advance_to(clock.now() + 30)
        await restorer.drill_round([])
        (record,) = [r for r in store.list_restores() if r.id == record.id]
        if not record.state.in_flight:
            break
    assert record.state is RestoreState.DONE, record.error
    first = port.restored[port.volumes[ServerId(record.target_id)][0]]  # boot_index 0
    return port.volume_backups[first.backup_id].volume_id


async def test_the_store_keeps_the_boot_volume_first(store: Store) -> None:
    _, _, _, _, record = await _backed_up(store)
    assert list(store.get_backup(record.id).volume_backups) == [BOOT, DATA]


async def test_a_restore_boots_from_the_boot_volume(store: Store) -> None:
    clock, port, server, config, _ = await _backed_up(store)
    assert await _boot_volume_of_restore(store, clock, port, server, config) == BOOT


async def test_a_record_in_the_wrong_order_boots_from_the_live_servers_boot_volume(store: Store) -> None:
    """What a record stored before the fix may hold on PostgreSQL: the data volume first."""
    clock, port, server, config, record = await _backed_up(store)
    wrong = dict(reversed(list(record.volume_backups.items())))
    store.save_backup(dataclasses.replace(record, volume_backups=wrong), [BackupState.AVAILABLE])
    assert list(store.get_backup(record.id).volume_backups) == [DATA, BOOT]
    assert await _boot_volume_of_restore(store, clock, port, server, config) == BOOT
