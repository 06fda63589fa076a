"""When haven first saw each protected server is kept in the store (migration 0017): a server that is
never backed up alerts on time although haven restarts more often than its policy's period, and a
server no longer protected is forgotten.

On the simulated cloud in virtual time; the alerts are judged from the store's own alerts and the
simulated cloud's ground truth (no createBackup call was ever made for the broken server).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from haven.backups import planner, schedule
from haven.backups.config import BackupsConfig, SchedulerSettings
from haven.backups.runner import BackupRunner
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupPolicy
from haven.domain.clock import VirtualClock
from haven.domain.cloud import VmState
from haven.domain.incidents import AlertKind
from haven.store import Store, migrate

START = 1_800_000_000.0 + 17 * 60  # 2027-01-15T08:17:00Z: between two hourly windows
GRACE = 600.0
CONFIG = BackupsConfig(
    enabled=True, scheduler=SchedulerSettings(jitter_s=0.0, grace_s=GRACE, max_concurrent=6)
)


def _cloud(clock: VirtualClock) -> tuple[SimBackups, list[str]]:
    cloud, _ = build_cloud(CloudSpec(hosts=3, vms=4, zones=1), clock)
    servers = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    for sid in servers:
        cloud.sim_server(sid).metadata.update({"haven_backup": "hourly", "haven_backup_keep": "2"})
    return SimBackups(cloud), servers


def _alerted(store: Store) -> set[tuple[AlertKind, str]]:
    return {(a.kind, str(a.host)) for a in store.list_alerts()}


async def test_a_server_never_backed_up_alerts_on_time_across_restarts(tmp_path: Path) -> None:
    """haven restarts every 10 minutes (under the 10-minute grace): kept in memory only, each new engine
    saw the broken server for the first time and neither alert ever came."""
    clock = VirtualClock(START)
    port, servers = _cloud(clock)
    broken = servers[0]
    port.cloud.sim_server(broken).vm_state = VmState.ERROR  # never backable: no backup is ever asked
    url = f"sqlite:///{tmp_path / 'haven.db'}"
    hourly = schedule.parse("hourly")
    first_due = hourly.next_slot(hourly.previous_slot(START))  # 09:00, the first window due after
    stale_after = START + planner.max_age_s(BackupPolicy("hourly"), CONFIG.scheduler)  # 09:27
    first: dict[AlertKind, float] = {}
    store = Store.open(url)
    runner = BackupRunner(CONFIG, port, store, clock)
    try:
        for n in range(120):  # two hours, a pass a minute
            if n and n % 10 == 0:  # a restart: a new engine, its store opened again on the same file
                store.close()
                store = Store.open(url)
                runner = BackupRunner(CONFIG, port, store, clock)
            await runner.run_pass()
            for kind, subject in _alerted(store):
                assert subject == broken, (kind, subject)  # the others are backed up every hour
                first.setdefault(kind, clock.now())
            clock.advance_to(clock.now() + 60.0)
        assert first_due + GRACE < first[AlertKind.BACKUP_MISSED] <= first_due + GRACE + 60.0
        assert stale_after < first[AlertKind.RECOVERY_POINT_STALE] <= stale_after + 60.0
        assert store.backup_first_seen() == dict.fromkeys(servers, START)
        assert not [c for c in port.create_calls if c[1] == broken]

        port.cloud.sim_server(broken).metadata["haven_backup"] = "off"  # no longer protected
        await BackupRunner(CONFIG, port, store, clock).run_pass()
        assert broken not in store.backup_first_seen()
        assert not [subject for _, subject in _alerted(store) if subject == broken]
        port.cloud.sim_server(broken).metadata["haven_backup"] = "hourly"  # protected again: from now
        again = clock.now()
        await BackupRunner(CONFIG, port, store, clock).run_pass()
        assert store.backup_first_seen()[broken] == again
        assert not _alerted(store)
    finally:
        store.close()


async def test_a_new_term_reads_what_another_leader_stored_meanwhile(tmp_path: Path) -> None:
    clock = VirtualClock(START)
    port, servers = _cloud(clock)
    moved = servers[1]
    port.cloud.sim_server(moved).vm_state = VmState.ERROR  # never backed up: first seen is all it has
    store = Store.open(f"sqlite:///{tmp_path / 'haven.db'}")
    term = [1]
    epoch: Callable[[], int | None] = lambda: term[0]  # noqa: E731
    try:
        engine_a = BackupRunner(CONFIG, port, store, clock, leader_epoch=epoch)
        await engine_a.run_pass()
        # engine B leads (epoch 2): the server leaves protection, then comes back 90 minutes later
        term[0] = 2
        engine_b = BackupRunner(CONFIG, port, store, clock, leader_epoch=epoch)
        port.cloud.sim_server(moved).metadata["haven_backup"] = "off"
        await engine_b.run_pass()
        clock.advance_to(clock.now() + 5400.0)
        port.cloud.sim_server(moved).metadata["haven_backup"] = "hourly"
        await engine_b.run_pass()
        back = clock.now()
        term[0] = 3  # A leads again: its memory of the first term is not the store's
        await engine_a.run_pass()
        assert store.backup_first_seen()[moved] == back
        assert engine_a.last_plan is not None
        (status,) = [s for s in engine_a.last_plan.statuses if s.server_id == moved]
        assert not status.missed and not status.stale  # from its first term's 08:17: both at 09:47
        assert (AlertKind.RECOVERY_POINT_STALE, moved) not in _alerted(store)
    finally:
        store.close()


def test_a_store_from_before_0017_upgrades_and_keeps_its_backups(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'haven.db'}"
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            config = migrate.alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0016")
            conn.execute(
                sa.text(
                    "INSERT INTO backups (id, server_id, state, slot, created_at, detail) "
                    "VALUES ('b1', 's1', 'available', 100.0, 105.0, :detail)"
                ),
                {"detail": '{"server_name": "vm", "project": "p", "kind": "image", "trigger": "schedule", '
                 '"backup_type": "daily", "name": "n", "image_id": "i1"}'},
            )  # fmt: skip
            assert "backup_first_seen" not in sa.inspect(conn).get_table_names()
    finally:
        engine.dispose()
    with Store.open(url) as store:
        assert [b.id for b in store.backups_of("s1")] == ["b1"]
        assert store.backup_first_seen() == {}  # each server is first seen at the first pass from now
        assert store.note_backup_first_seen({"s1": 200.0, "s2": 210.0}, []) == {"s1": 200.0, "s2": 210.0}
        assert store.note_backup_first_seen({"s1": 300.0, "s3": 310.0}, ["s2"]) == {"s1": 200.0, "s3": 310.0}
        assert store.backup_first_seen() == {"s1": 200.0, "s3": 310.0}
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            config = migrate.alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "0016")
            assert "backup_first_seen" not in sa.inspect(conn).get_table_names()
            assert conn.execute(sa.text("SELECT id FROM backups")).scalars().all() == ["b1"]
    finally:
        engine.dispose()
