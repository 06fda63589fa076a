"""The store's backups and restores: the database itself refuses a second backup of one window and a
second backup in flight for one server (two passes or two engines cannot ask Nova twice)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from haven.domain.backups import (
    BackupKind,
    BackupRecord,
    BackupState,
    RestorePurpose,
    RestoreRecord,
    RestoreState,
    Trigger,
)
from haven.domain.errors import Conflict
from haven.domain.ids import ServerId
from haven.store import Store


def backup(i: str, slot: float, state: BackupState = BackupState.ISSUED) -> BackupRecord:
    return BackupRecord(
        i, ServerId("s1"), "vm", "p", BackupKind.VOLUME, slot, Trigger.SCHEDULE, "daily", f"name-{i}", state,
        created_at=slot + 5, volume_backups={"v1": "cb-1"}, incremental=True, parent_id="b0",
    )  # fmt: skip


def test_backups_round_trip_and_windows_and_in_flight_are_unique(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}") as store:
        first = backup("b1", 100.0)
        store.issue_backup(first)
        assert store.get_backup("b1") == first
        with pytest.raises(Conflict):
            store.issue_backup(backup("b2", 100.0))  # same window
        with pytest.raises(Conflict):
            store.issue_backup(backup("b2", 200.0))  # another window, but b1 is in flight
        failed = dataclasses.replace(first, state=BackupState.FAILED, finished_at=150.0, error="boom")
        store.save_backup(failed, [BackupState.ISSUED])
        with pytest.raises(Conflict):
            store.save_backup(failed, [BackupState.ISSUED])  # it moved on
        store.issue_backup(dataclasses.replace(backup("b3", 100.0), attempt=2))  # a retry of the window
        assert [b.id for b in store.backups_relevant(0.0)] == ["b1", "b3"]
        assert [b.id for b in store.backups_relevant(200.0)] == ["b3"]
        drill = RestoreRecord("r1", RestorePurpose.DRILL, ServerId("s1"), "b3", "img", "haven-drill-x",
                              RestoreState.ISSUED, 300.0, recovery_point=105.0)  # fmt: skip
        store.issue_restore(drill)
        assert store.list_restores(unfinished=True) == [drill]
        store.save_restore(dataclasses.replace(drill, state=RestoreState.DONE), [RestoreState.ISSUED])
        assert store.list_restores(unfinished=True) == []
