"""The hold of ``haven backups run|restore`` (``held_by``, ``held_until``) is renewed each time round
its wait; once it ran out the command makes no more calls for the record (``HoldLost``), and a record
the leader finished meanwhile is reported as it is (no ``Conflict`` traceback); ``--wait`` must be a
finite number of seconds from 0 to a day (exit 2). The two processes are two Store objects on one SQLite
file over one simulated cloud (the rig of test_cli_hold); verdicts from the cloud's servers and calls."""

from __future__ import annotations

import pytest

from haven.backups.restores import Restorer
from haven.backups.runner import HoldLost
from haven.cli.main import main
from haven.domain.backups import BackupState, RestoreState

from . import test_cli_hold
from .test_cli_hold import CLI, Rig

rig = test_cli_hold.rig  # the two-process rig (a fixture)


async def _backed_up(rig: Rig) -> None:
    runner = rig.leader()
    await runner.backup_now(rig.server)
    rig.clock.advance_to(rig.clock.now() + 200)
    await runner.run_pass()


def _cli_restorer(rig: Rig) -> Restorer:
    return Restorer(rig.port, rig.cli_store, rig.clock, rig.config.drills, holder=CLI, hold_s=120.0)


def _servers(rig: Rig) -> set[str]:
    cloud = rig.port.cloud
    return {s.id for h in cloud.host_names() for s in cloud.servers_on(h)}


async def test_a_renewed_hold_keeps_the_leader_away(rig: Rig) -> None:
    await _backed_up(rig)
    cli = _cli_restorer(rig)
    leader = Restorer(rig.port, rig.leader_store, rig.clock, rig.config.drills)
    record = await cli.restore(rig.server, None, "copy")
    assert record.state is RestoreState.BOOTING
    for _ in range(4):  # 4 x 100 s: past the first hold's 120 s, renewed each time round
        rig.clock.advance_to(rig.clock.now() + 100)
        record = await cli.renew(record)
        await leader.drill_round([])
        (seen,) = [r for r in rig.leader_store.list_restores() if r.id == record.id]
        assert seen.state is RestoreState.BOOTING  # the leader left it alone
    record = await cli.advance(record)
    assert record.state is RestoreState.DONE


async def test_a_lapsed_hold_stops_the_commands_calls(rig: Rig) -> None:
    await _backed_up(rig)
    cli = _cli_restorer(rig)
    record = await cli.restore(rig.server, None, "copy")
    assert record.state is RestoreState.BOOTING
    rig.clock.advance_to(rig.clock.now() + 121)  # a cloud call slower than the hold
    with pytest.raises(HoldLost, match="hold on it ran out"):
        await cli.renew(record)
    runner = rig.cli()
    backup = await runner.backup_now(rig.server)
    rig.clock.advance_to(rig.clock.now() + 721)
    with pytest.raises(HoldLost):
        await runner.renew(backup.id)
    assert rig.cli_store.get_backup(backup.id).state is not BackupState.FAILED


async def test_a_restore_the_leader_finished_is_reported_not_a_conflict(rig: Rig) -> None:
    """The review's case: the CLI's hold ran out, the leader carried the restore on and finished it."""
    await _backed_up(rig)
    cli = _cli_restorer(rig)
    leader = Restorer(rig.port, rig.leader_store, rig.clock, rig.config.drills)
    record = await cli.restore(rig.server, None, None)  # rebuild in place
    servers = _servers(rig)
    rig.clock.advance_to(rig.clock.now() + 121)
    for _ in range(5):
        await leader.drill_round([])
        rig.clock.advance_to(rig.clock.now() + 30)
    renewed = await cli.renew(record)  # before the fix: advance() raised Conflict (a traceback)
    assert renewed.state is RestoreState.DONE
    assert _servers(rig) == servers  # rebuilt in place: no server booted


@pytest.mark.parametrize("wait", ["inf", "nan", "-1", "86401", "soon"])
def test_wait_must_be_finite_and_capped(wait: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["backups", "run", "server-1", "--wait", wait])
    assert exited.value.code == 2
    assert "--wait" in capsys.readouterr().err
