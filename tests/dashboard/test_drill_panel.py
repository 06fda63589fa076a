"""The backups panel's restore drills, rendered from the store (no browser, a second): each protected
server's latest drill with its word and symbol, time to ACTIVE and the recovery point it proved; a
failed drill ranks among the most urgent; the Drill button only for an admin, on a server with a good
backup and no drill running; the announcements when a drill starts and ends."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from haven.backups.config import SchedulerSettings
from haven.backups.planner import BackupPlan, ServerStatus
from haven.dashboard.app import template_environment
from haven.dashboard.board import BackupStatus, Board
from haven.domain.backups import (
    BackupKind,
    BackupPolicy,
    BackupRecord,
    BackupState,
    RestorePurpose,
    RestoreRecord,
    RestoreState,
    Trigger,
)
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import ServerId
from haven.store import Store

NOW = 100_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as s:
        yield s


def backup(store: Store, server: str, name: str, at: float) -> BackupRecord:
    r = BackupRecord(f"b-{server}", ServerId(server), name, "p", BackupKind.IMAGE, at, Trigger.SCHEDULE,
                     "haven-hourly", f"haven-backup-{server}", BackupState.ISSUED, at)  # fmt: skip
    store.issue_backup(r)
    store.save_backup(dataclasses.replace(r, state=BackupState.CREATING), [BackupState.ISSUED])
    done = dataclasses.replace(r, state=BackupState.AVAILABLE, completed_at=at + 30)
    store.save_backup(done, [BackupState.CREATING])
    return done


def drill(store: Store, b: BackupRecord, at: float, state: RestoreState, **extra: Any) -> RestoreRecord:
    r = RestoreRecord(f"d-{b.server_id}-{at:.0f}", RestorePurpose.DRILL, b.server_id, b.id, "", "x",
                      RestoreState.ISSUED, at, recovery_point=b.created_at)  # fmt: skip
    store.issue_restore(r)
    if state is not RestoreState.ISSUED:
        r = dataclasses.replace(r, state=state, **extra)
        store.save_restore(r, [RestoreState.ISSUED])
    return r


def test_latest_drills_their_order_words_and_the_admins_button(store: Store) -> None:
    good = backup(store, "s-0", "web-0", NOW - 600)
    bad = backup(store, "s-1", "db-1", NOW - 300)
    drill(store, good, NOW - 7200, RestoreState.FAILED, error="old")  # an older drill: not the latest
    drill(store, good, NOW - 500, RestoreState.DONE, active_at=NOW - 488.0, finished_at=NOW - 480)
    drill(
        store, bad, NOW - 200, RestoreState.FAILED, error="Build of instance aborted", finished_at=NOW - 100
    )
    statuses = tuple(
        ServerStatus(sid, name, BackupPolicy("hourly"), 0, 0, 0, at, False, False)
        for sid, name, at in (("s-0", "web-0", NOW - 600), ("s-1", "db-1", NOW - 300))
    )
    plan = BackupPlan((), (), statuses, 0, None)

    async def drill_now(server_id: str, by: str) -> RestoreRecord:
        raise AssertionError("not asked here")

    board = Board(store, backups=lambda: BackupStatus(plan, SchedulerSettings(), drill_now), now=NOW)
    # db-1's recovery point is newer, but its latest drill failed: it comes first
    assert [(p.server_name, p.drill_result) for p in board.protected] == [
        ("db-1", "failed"),
        ("web-0", "passed"),
    ]
    web = board.protected[1]
    assert web.drill_to_active_s == 12.0 and web.drill_point_age_s == 100.0
    parts: Any = template_environment().get_template("parts.html").module
    admin = str(parts.backups(board, True, "tok", "/dashboard"))
    assert "✓</span> passed" in admin and "ACTIVE in 12.0 s" in admin and "(100 s old)" in admin
    assert "✕</span> failed" in admin and "Build of instance aborted" in admin
    assert admin.count('hx-post="/dashboard/backups/') == 2 and 'value="tok"' in admin
    assert "hx-confirm=" in admin and "Only an admin" not in admin
    reader = str(parts.backups(board, False, "tok", "/dashboard"))
    assert "hx-post" not in reader and "Only an admin may run a restore drill." in reader
    assert "✓</span> passed" in reader

    # a drill asked by an admin starts, then passes: announced, and the button waits meanwhile
    asked = drill(store, good, NOW, RestoreState.BOOTING, asked_by="user ops (dashboard)")
    changes = board.apply([EngineEvent(EventKind.BACKUPS_CHANGED, NOW + 1)])
    assert changes.backups and changes.announcements == ["a restore drill of web-0 started"]
    html = str(parts.backups(board, True, "tok", "/dashboard"))
    assert "asked by user ops (dashboard)" in html and "a drill is running" in html
    assert html.count('hx-post="/dashboard/backups/') == 1  # db-1's only
    done = dataclasses.replace(asked, state=RestoreState.DONE, active_at=NOW + 3.5, finished_at=NOW + 9)
    store.save_restore(done, [RestoreState.BOOTING])
    changes = board.apply([EngineEvent(EventKind.BACKUPS_CHANGED, NOW + 10)])
    assert changes.announcements == ["the restore drill of web-0 passed (ACTIVE in 3.5 s)"]
