"""`haven drill backup-restore`: a virtual day of backups on the simulated cloud, a corrupted server
rebuilt and a deleted one booted anew from their newest backups, judged from the simulated cloud.
One server in four is volume-backed (Cinder backups); the deleted one is, so its restore is Cinder's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.drill.backup_restore import run_backup_restore


async def test_the_corrupted_and_the_deleted_server_come_back_with_their_backed_up_data() -> None:
    report = await run_backup_restore(servers=5, hosts=2, seed=3, hours=6.0, max_concurrent=2)
    assert report.verdict == "recovered"
    assert report.peak_uploading <= 2 and report.backups_taken >= 4 * 6
    assert report.volume_backed == 1 and report.volume_backups_taken >= 6 and report.cinder_chains_intact
    assert report.images_per_server == {"3": 4}  # rotation kept exactly 3 per server in Glance
    assert report.alerts == {"backup_missed": 0, "recovery_point_stale": 0, "restore_drill_failed": 0}
    assert [(r.how, r.source, r.vm_state, r.data_ok) for r in report.restores] == [
        ("rebuild in place", "image", "active", True),
        ("as new", "cinder", "active", True),
    ]
    assert all(r.image_id == r.expected_image_id != "" for r in report.restores)


async def test_a_backup_that_does_not_boot_is_not_recovered() -> None:
    report = await run_backup_restore(servers=3, hosts=2, seed=3, hours=3.0, broken_backups=True)
    assert report.verdict == "not_recovered"
    assert {r.vm_state for r in report.restores} == {"error"} and not any(r.ok for r in report.restores)


def test_the_cli_prints_json_and_refuses_a_bad_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path))
    assert main(["drill", "backup-restore", "--vms", "3", "--hosts", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "recovered"
    assert main(["drill", "backup-restore", "--vms", "1"]) == 2
    assert "at least 2 servers" in capsys.readouterr().err
