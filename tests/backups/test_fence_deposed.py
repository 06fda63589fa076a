"""A deposed leader's backup and restore work stops: the elector's ``epoch()`` answers None once this
engine no longer leads, and the store skips the fence for a None epoch, so each runner and restorer keeps
the term it saw (haven.backups.runner.TermEpoch): a None after a number is ``Deposed``, refused before any
write or cloud call. Judged from the simulated cloud (its servers and createBackup calls) and the store."""

from __future__ import annotations

import pytest

from haven.backups.restores import Restorer
from haven.backups.runner import BackupRunner
from haven.domain.errors import Deposed

from . import test_cli_hold
from .test_cli_hold import Rig

rig = test_cli_hold.rig  # the two-process rig (a fixture)


def _servers(rig: Rig) -> set[str]:
    cloud = rig.port.cloud
    return {s.id for h in cloud.host_names() for s in cloud.servers_on(h)}


async def test_a_deposed_restorer_boots_nothing_and_writes_nothing(rig: Rig) -> None:
    runner = rig.leader()
    await runner.backup_now(rig.server)
    rig.clock.advance_to(rig.clock.now() + 200)
    await runner.run_pass()
    term: dict[str, int | None] = {"epoch": 5}
    old = Restorer(
        rig.port, rig.leader_store, rig.clock, rig.config.drills, leader_epoch=lambda: term["epoch"]
    )
    rig.leader_store.fence(5)
    first = await old.restore(rig.server, None, "copy")  # leading: epoch 5
    rig.cli_store.fence(6)  # another engine leads now
    term["epoch"] = None  # what the elector answers once deposed
    servers = _servers(rig)
    restores = len(rig.leader_store.list_restores())
    with pytest.raises(Deposed):
        await old.restore(rig.server, None, "copy-2")
    with pytest.raises(Deposed):
        await old.advance(first)
    with pytest.raises(Deposed):
        await old.drill_round([rig.server])
    assert len(rig.leader_store.list_restores()) == restores  # nothing written
    assert _servers(rig) == servers  # nothing booted


async def test_a_deposed_runner_pass_asks_nothing(rig: Rig) -> None:
    term: dict[str, int | None] = {"epoch": 3}
    runner = BackupRunner(
        rig.config, rig.port, rig.leader_store, rig.clock, leader_epoch=lambda: term["epoch"]
    )
    rig.leader_store.fence(3)
    await runner.run_pass()
    term["epoch"] = None
    calls = []
    real = rig.port.create_image_backup

    async def counted(*args: object) -> str:
        calls.append(args)
        return await real(*args)  # type: ignore[arg-type]

    rig.port.create_image_backup = counted  # type: ignore[method-assign,assignment]
    with pytest.raises(Deposed):
        await runner.run_pass()
    with pytest.raises(Deposed):
        await runner.backup_now(rig.server)
    assert calls == []


async def test_without_coordination_the_epoch_stays_none(rig: Rig) -> None:
    restorer = Restorer(rig.port, rig.leader_store, rig.clock, rig.config.drills)
    runner = rig.leader()
    await runner.backup_now(rig.server)
    rig.clock.advance_to(rig.clock.now() + 200)
    await runner.run_pass()
    record = await restorer.restore(rig.server, None, "copy")
    assert record.target_id
