"""The planner's decisions pinned: a fixed fleet run for three virtual days must plan exactly as recorded.

The property tests (test_planner.py) check what any plan must respect; this one catches a change of
decision that still respects them (a different order under the cap, a different retry or chain), as a
speed-up of the planner must not make one. The digest was recorded with the planner of 602dd30 (before
the one-pass rewrite of its record scans). If a decision is meant to change, say which in the commit
and record the new digest.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from haven.backups.config import SchedulerSettings
from haven.backups.planner import BackupPlan, BackupSnapshot, Protected, plan
from haven.domain.backups import (
    BackupKind,
    BackupPolicy,
    BackupRecord,
    BackupState,
    BackupTarget,
    Retention,
    Trigger,
    VolumeRef,
)
from haven.domain.cloud import VmState
from haven.domain.ids import ServerId

DAY = 86400.0
T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC).timestamp()
SCHEDULES = ("hourly", "daily", "weekly", "*/20 * * * *", "15 */6 * * *", "0 4 * * 1-5", "0 0 1 * *")
RECORDED = {  # (servers, cap, failing every n-th, jitter_s): (backups created, digest of every plan)
    (14, 3, 4, 3600.0): (522, "e75d17a5"),
    (10, 2, 3, 600.0): (347, "e95e03d1"),
}


def _decisions(result: BackupPlan) -> str:
    """What a plan decides, field by field (not its repr: a new field is not a new decision)."""
    create = [(p.target.id, p.slot, p.due_at, p.kind.value, p.attempt, p.incremental, p.parent_id)
              for p in result.create]  # fmt: skip
    statuses = [(s.server_id, s.slot, s.due_at, s.next_due_at, s.recovery_point, s.missed, s.stale, s.waiting)
                for s in result.statuses]  # fmt: skip
    return repr((create, [r.id for r in result.delete], statuses, result.in_flight, result.next_due_at))


def _fleet(n: int, cap: int, fail_every: int, jitter_s: float) -> tuple[int, str]:
    """Three days of 15-minute passes over ``n`` servers (every third volume-backed, chained; one busy
    at a time, the last in error after a day), haven down from day 1 for 12 hours; a backup issued in
    a pass finishes in the next, every ``fail_every``-th failing."""
    cfg = SchedulerSettings(max_concurrent=cap, jitter_s=jitter_s, retry_s=900.0, attempts=3, chain_max=4)
    servers = []
    for i in range(n):
        volume = i % 3 == 1
        boots = (VolumeRef(f"vol-{i}", boot=True),) if volume else ()
        target = BackupTarget(ServerId(f"srv-{i:03d}"), f"vm-{i}", "p", VmState.ACTIVE, False,
                              image_id="" if volume else "img", volumes=boots)  # fmt: skip
        servers.append(Protected(target, BackupPolicy(SCHEDULES[i % len(SCHEDULES)], Retention(2, 2, 1))))
    first_seen: dict[str, float] = {
        s.target.id: T0 - 3600.0 * (i % 5) for i, s in enumerate(servers) if i % 2 == 0
    }
    records = [BackupRecord("m-0", servers[0].target.id, "vm-0", "p", BackupKind.IMAGE, T0 - 7200,
                            Trigger.MANUAL, "manual", "m0", BackupState.AVAILABLE, T0 - 7200)]  # fmt: skip
    digest, now, finished, created = hashlib.sha256(), T0, 0, 0
    while now < T0 + 3 * DAY:
        if not DAY <= now - T0 < 1.5 * DAY:
            for i, r in enumerate(records):
                if r.state in (BackupState.ISSUED, BackupState.CREATING) and r.created_at < now:
                    finished += 1
                    failed = fail_every and finished % fail_every == 0
                    state = BackupState.FAILED if failed else BackupState.AVAILABLE
                    records[i] = dataclasses.replace(r, state=state, finished_at=now)
                elif r.state is BackupState.DELETING:
                    records[i] = dataclasses.replace(r, state=BackupState.DELETED, finished_at=now)
            busy = int((now - T0) // (DAY / 3)) % n
            shown = [
                dataclasses.replace(s, target=dataclasses.replace(
                    s.target, busy=j == busy, vm_state=VmState.ERROR if j == n - 1 and now - T0 > DAY
                    else VmState.ACTIVE))
                for j, s in enumerate(servers)
            ]  # fmt: skip
            result = plan(BackupSnapshot(now, shown, records, cfg, first_seen))
            digest.update(_decisions(result).encode())
            created += len(result.create)
            for p in result.create:
                state = BackupState.CREATING if finished % 2 else BackupState.ISSUED
                records.append(BackupRecord(
                    f"{p.target.id}@{now}", p.target.id, p.target.name, "p", p.kind, p.slot, Trigger.SCHEDULE,
                    "daily", f"n-{now}", state, now, attempt=p.attempt, incremental=p.incremental,
                    parent_id=p.parent_id))  # fmt: skip
            doomed = {r.id for r in result.delete}
            records = [
                dataclasses.replace(r, state=BackupState.DELETING) if r.id in doomed else r for r in records
            ]
        now += 900.0
    return created, digest.hexdigest()[:8]


def test_a_fixed_fleet_is_planned_exactly_as_recorded() -> None:
    assert {key: _fleet(*key) for key in RECORDED} == RECORDED
