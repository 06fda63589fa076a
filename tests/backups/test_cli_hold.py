"""``haven backups run|restore`` from another process while haven serve leads on the same store.

The command's runner and restorer hold what they start (``held_by``, ``held_until`` on the record); the
leader's passes and drill rounds leave a held record alone, so the cloud is never asked twice, and resume
it as a dead engine's once the hold runs out. Two Store objects on one SQLite file stand for the two
processes; the simulated cloud is shared, and the verdicts come from it (its createBackup calls, its
images and its servers), never from haven's records alone."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from haven.backups.config import BackupsConfig, SchedulerSettings
from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupState, ImageStatus, RestoreState
from haven.domain.clock import VirtualClock
from haven.domain.ids import ServerId
from haven.store import Store

CLI = "cli:workstation:4242"


@dataclass
class Rig:
    clock: VirtualClock
    port: SimBackups
    leader_store: Store
    cli_store: Store
    server: ServerId
    config: BackupsConfig

    def leader(self) -> BackupRunner:
        return BackupRunner(self.config, self.port, self.leader_store, self.clock)

    def cli(self) -> BackupRunner:
        return BackupRunner(self.config, self.port, self.cli_store, self.clock, holder=CLI, hold_s=720.0)

    def active_images(self) -> list[str]:
        return [
            i.id
            for i in self.port.images.values()
            if i.server_id == self.server and i.status is ImageStatus.ACTIVE
        ]


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=2, zones=1), clock)
    url = f"sqlite:///{tmp_path / 'haven.db'}"
    leader_store = Store.open(url)
    cli_store = Store.open(url)
    server = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]
    config = BackupsConfig(enabled=True, scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=2))
    yield Rig(clock, SimBackups(cloud), leader_store, cli_store, server, config)
    cli_store.close()
    leader_store.close()


def slow_create_backup(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """createBackup that answers only once the returned event is set (a slow Nova)."""
    gate = asyncio.Event()
    real = rig.port.create_image_backup

    async def slow(
        server_id: ServerId, name: str, backup_type: str, rotation: int, properties: Mapping[str, str]
    ) -> str:
        await gate.wait()
        return await real(server_id, name, backup_type, rotation, properties)

    monkeypatch.setattr(rig.port, "create_image_backup", slow)
    return gate


async def test_the_leader_never_asks_nova_for_a_backup_the_cli_is_still_asking_for(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = slow_create_backup(rig, monkeypatch)
    cli = asyncio.create_task(rig.cli().backup_now(rig.server))
    for _ in range(50):  # until the CLI's intent is committed and its call is under way
        await asyncio.sleep(0.01)
        if rig.leader_store.backups_of(rig.server):
            break
    (held,) = rig.leader_store.backups_of(rig.server)
    assert held.state is BackupState.ISSUED and held.held_by == CLI
    leader = asyncio.create_task(rig.leader().run_pass())  # the leader's pass, meanwhile
    await asyncio.sleep(0.2)
    gate.set()
    record = await cli
    await leader
    assert len(rig.port.create_calls) == 1  # one createBackup, not two
    assert rig.leader_store.get_backup(record.id).state is BackupState.CREATING
    freed = await rig.cli().release(record.id)  # the CLI stops waiting: the leader carries it on
    assert freed.held_by == ""
    rig.clock.advance_to(rig.clock.now() + 200)
    await rig.leader().run_pass()
    assert rig.leader_store.get_backup(record.id).state is BackupState.AVAILABLE
    assert len(rig.active_images()) == 1 and len(rig.port.create_calls) == 1


async def test_a_dead_clis_backup_is_resumed_by_the_leader_once_its_hold_runs_out(rig: Rig) -> None:
    rig.port.faults.lose_answers = 1  # Nova took the call; the CLI died before it heard the answer
    await rig.cli().backup_now(rig.server)
    (held,) = rig.leader_store.backups_of(rig.server)
    assert held.state is BackupState.ISSUED and held.held_until == rig.clock.now() + 720.0
    rig.clock.advance_to(rig.clock.now() + 300)
    await rig.leader().run_pass()
    assert rig.leader_store.get_backup(held.id).state is BackupState.ISSUED  # still held: left alone
    rig.clock.advance_to(held.held_until + 1)
    await rig.leader().run_pass()  # the hold ran out: resumed as a dead engine's, its image adopted
    assert rig.leader_store.get_backup(held.id).state is BackupState.CREATING
    await rig.leader().run_pass()
    assert rig.leader_store.get_backup(held.id).state is BackupState.AVAILABLE
    assert len(rig.port.create_calls) == 1 and len(rig.active_images()) == 1


async def test_the_leaders_rounds_leave_a_restore_the_cli_holds_alone(rig: Rig) -> None:
    runner = rig.leader()
    await runner.backup_now(rig.server)
    rig.clock.advance_to(rig.clock.now() + 200)
    await runner.run_pass()
    rig.port.write(rig.server, "corrupted")
    cli = Restorer(rig.port, rig.cli_store, rig.clock, rig.config.drills, holder=CLI, hold_s=720.0)
    leader = Restorer(rig.port, rig.leader_store, rig.clock, rig.config.drills)
    record = await cli.restore(rig.server, None, None)  # rebuild in place
    assert len(rig.port.rebuild_calls) == 1
    rig.clock.advance_to(rig.clock.now() + 30)
    await leader.drill_round([])
    (seen,) = [r for r in rig.leader_store.list_restores() if r.id == record.id]
    assert seen.state is RestoreState.BOOTING and seen.held_by == CLI  # untouched by the leader
    record = await cli.advance(record)
    assert record.state is RestoreState.DONE
    assert rig.port.disk(rig.server) != "corrupted" and len(rig.port.rebuild_calls) == 1
    assert (await cli.release(record)).held_by == ""
