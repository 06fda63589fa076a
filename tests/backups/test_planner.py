"""haven.backups' pure core: schedules, policies, [backups], rotation and the planner; then properties
over many schedules simulated in virtual time (a world of records the test itself advances)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haven.backups import schedule
from haven.backups.config import BackupsConfig, SchedulerSettings, parse_backups
from haven.backups.planner import BackupSnapshot, Protected, max_age_s, plan
from haven.backups.policy import PolicyProblem, resolve
from haven.backups.retention import kept, to_delete
from haven.backups.runner import BackupRunner
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
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
from haven.domain.clock import VIRTUAL_EPOCH, VirtualClock
from haven.domain.cloud import TaskState, VmState
from haven.domain.errors import ConfigError
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind
from haven.store import Store

DAY = 86400.0
T0 = datetime(2027, 3, 10, 12, 0, tzinfo=UTC).timestamp()  # a Wednesday, noon UTC
NO_JITTER = SchedulerSettings(jitter_s=0.0)


def target(i: int = 1, **kw: object) -> BackupTarget:
    fields: dict[str, object] = {
        "id": ServerId(f"srv-{i:05d}"), "name": f"vm-{i}", "project": "p", "vm_state": VmState.ACTIVE,
        "busy": False, "image_id": "img",
    }  # fmt: skip
    fields.update(kw)
    return BackupTarget(**fields)  # type: ignore[arg-type]


def record(server: str, at: float, state: BackupState = BackupState.AVAILABLE, **kw: object) -> BackupRecord:
    fields: dict[str, object] = {
        "id": f"b-{server}-{at}", "server_id": ServerId(server), "server_name": server, "project": "p",
        "kind": BackupKind.IMAGE, "slot": at, "trigger": Trigger.SCHEDULE, "backup_type": "daily",
        "name": f"n-{at}", "state": state, "created_at": at,
    }  # fmt: skip
    fields.update(kw)
    return BackupRecord(**fields)  # type: ignore[arg-type]


# ---- schedules ---------------------------------------------------------------------------------


def test_named_schedules_are_windows_in_utc() -> None:
    assert schedule.parse("daily").previous_slot(T0) == T0 - 12 * 3600
    assert schedule.parse("hourly").previous_slot(T0 + 59) == T0
    weekly = schedule.parse("weekly").previous_slot(T0)
    assert datetime.fromtimestamp(weekly, UTC).weekday() == 0  # Monday 00:00
    assert T0 - weekly == 2 * DAY + 12 * 3600


def test_cron_fields_steps_ranges_and_sunday_as_0_or_7() -> None:
    every_15 = schedule.parse("*/15 * * * *")
    assert every_15.period_s == 900
    assert every_15.next_slot(T0) == T0 + 900
    assert schedule.parse("0 0 * * 0").weekdays == schedule.parse("0 0 * * 7").weekdays == frozenset({6})
    assert (
        schedule.parse("30 2 1-5 * *").previous_slot(T0)
        == datetime(2027, 3, 5, 2, 30, tzinfo=UTC).timestamp()
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [("every day", "not a schedule"), ("61 * * * *", "minute '61' is outside 0-59"),
     ("* * * * mon", "not a number"), ("0 0 30 2 *", "no window in five years"), ("*/0 * * * *", "outside")],
)  # fmt: skip
def test_bad_schedules_name_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        schedule.parse(text)
    assert "hourly, daily, weekly" in caught.value.hint


def test_jitter_is_deterministic_spread_and_bounded_by_a_quarter_period() -> None:
    hourly = schedule.parse("hourly")
    offsets = [schedule.jitter(f"srv-{i}", hourly, 3600) for i in range(2000)]
    assert offsets == [schedule.jitter(f"srv-{i}", hourly, 3600) for i in range(2000)]
    assert max(offsets) < 900 and min(offsets) >= 0
    assert len({int(o // 90) for o in offsets}) == 10  # every tenth of the spread is used


# ---- policies and [backups] ------------------------------------------------------------------------


def test_metadata_wins_over_project_segment_and_default() -> None:
    config = parse_backups(
        {"default": {"schedule": "weekly", "keep": 2}, "projects": {"p": {"schedule": "hourly", "keep": 24}},
         "segments": {"rack-a": {"schedule": "0 3 * * *", "keep": 3}}},
        "haven.toml",
    )  # fmt: skip
    assert resolve(
        target(metadata={"haven_backup": "daily", "haven_backup_keep": "5"}), config
    ) == BackupPolicy("daily", Retention(5, 0, 0), "metadata")
    assert resolve(target(), config) == BackupPolicy("hourly", Retention(24), "project p")
    assert resolve(target(project="q", segment="rack-a"), config) == BackupPolicy(
        "0 3 * * *", Retention(3), "segment rack-a"
    )
    assert resolve(target(project="q"), config) == BackupPolicy("weekly", Retention(2), "default")
    assert resolve(target(metadata={"haven_backup": "off"}), config) is None
    keep_only = resolve(target(project="q", metadata={"haven_backup_keep_daily": "7"}), config)
    assert keep_only == BackupPolicy("weekly", Retention(2, 7, 0), "metadata")


def test_unprotected_and_bad_metadata() -> None:
    assert resolve(target(), BackupsConfig()) is None
    bad = resolve(target(metadata={"haven_backup": "sometimes"}), BackupsConfig())
    assert isinstance(bad, PolicyProblem) and "haven_backup='sometimes'" in bad.message
    keep = resolve(target(metadata={"haven_backup": "daily", "haven_backup_keep": "0"}), BackupsConfig())
    assert isinstance(keep, PolicyProblem) and "haven_backup_keep" in keep.message


@pytest.mark.parametrize(
    ("section", "says"),
    [({"max_concurrent": 0}, "max_concurrent"), ({"default": {"schedule": "61 * * * *"}}, "default.schedule"),
     ({"projects": {"p": {"schedule": "daily", "keep": 0}}}, "projects.p.keep"),
     ({"surprise": 1}, "surprise"), ({"drills": {"sample": -1}}, "drills.sample")],
)  # fmt: skip
def test_bad_backups_sections_name_the_key(section: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        parse_backups(section, "haven.toml")
    assert "[backups]" in str(caught.value) and caught.value.hint


# ---- rotation ---------------------------------------------------------------------------------------


def test_rotation_keeps_newest_n_and_the_daily_and_weekly_tiers() -> None:
    hourly = [record("s", T0 - h * 3600) for h in range(24 * 15)]  # 15 days of hourly backups
    keep = kept(hourly, Retention(keep=3, daily=7, weekly=3))
    newest = {r.id for r in hourly[:3]}
    assert newest <= keep
    days = {datetime.fromtimestamp(r.created_at, UTC).date() for r in hourly if r.id in keep}
    assert len(days) >= 7
    assert len(keep) <= 3 + 7 + 3
    gone = to_delete(hourly, Retention(keep=3, daily=7, weekly=3))
    assert len(gone) == len(hourly) - len(keep)
    assert [r.created_at for r in gone] == sorted((r.created_at for r in gone), reverse=True)


def test_rotation_never_deletes_the_only_good_backup_nor_an_in_flight_ones_chain() -> None:
    lone = [record("s", T0 - 10 * DAY), record("s", T0 - DAY, BackupState.FAILED)]
    assert to_delete(lone, Retention(keep=1)) == []
    full = record("s", T0 - 3 * DAY, kind=BackupKind.VOLUME)
    inc1 = record("s", T0 - 2 * DAY, kind=BackupKind.VOLUME, incremental=True, parent_id=full.id)
    inc2 = record(
        "s", T0 - DAY, BackupState.CREATING, kind=BackupKind.VOLUME, incremental=True, parent_id=inc1.id
    )
    newer_full = record("s", T0 - 0.5 * DAY, kind=BackupKind.VOLUME)
    assert to_delete([full, inc1, inc2, newer_full], Retention(keep=1)) == []  # inc2 still needs them
    done = dataclasses.replace(inc2, state=BackupState.AVAILABLE)
    # keep=1 keeps the newest full only: the old chain goes whole, incrementals first
    assert [r.id for r in to_delete([full, inc1, done, newer_full], Retention(keep=1))] == [
        done.id,
        inc1.id,
        full.id,
    ]
    # keep=2 keeps the newest incremental, so its whole chain stays
    assert to_delete([full, inc1, done, newer_full], Retention(keep=2)) == []


# ---- the planner ------------------------------------------------------------------------------------


def protected(i: int, schedule_: str = "daily", **kw: object) -> Protected:
    return Protected(target(i, **kw), BackupPolicy(schedule_, Retention(3)))


def test_a_window_is_due_once_and_a_backup_in_it_covers_it() -> None:
    first = plan(BackupSnapshot(T0, [protected(1)], [], NO_JITTER))
    assert [(p.target.id, p.slot) for p in first.create] == [("srv-00001", T0 - 12 * 3600)]
    taken = record("srv-00001", T0, BackupState.ISSUED, slot=T0 - 12 * 3600)
    assert plan(BackupSnapshot(T0 + 60, [protected(1)], [taken], NO_JITTER)).create == ()
    manual = record("srv-00001", T0 - 3600, trigger=Trigger.MANUAL)  # taken by hand inside the window
    assert plan(BackupSnapshot(T0, [protected(1)], [manual], NO_JITTER)).create == ()


def test_missed_windows_are_caught_up_by_one_backup() -> None:
    old = record("srv-00001", T0 - 5 * DAY)  # haven was down for four windows
    result = plan(BackupSnapshot(T0, [protected(1)], [old], NO_JITTER))
    assert len(result.create) == 1 and result.create[0].slot == T0 - 12 * 3600
    status = result.statuses[0]
    assert status.missed and status.stale and status.recovery_point == T0 - 5 * DAY


def test_the_window_overdue_when_a_server_is_first_seen_is_caught_up_not_alerted() -> None:
    fresh = plan(BackupSnapshot(T0, [protected(1)], [], NO_JITTER)).statuses[0]  # due 12 h ago
    assert not fresh.missed and not fresh.stale and fresh.recovery_point is None
    catching_up = record("srv-00001", T0, BackupState.CREATING, slot=T0 - 12 * 3600)
    status = plan(BackupSnapshot(T0 + 600, [protected(1)], [catching_up], NO_JITTER)).statuses[0]
    assert not status.missed and not status.stale
    # the next window, once its grace passed without a good backup, is missed
    later = plan(BackupSnapshot(T0 + 14 * 3600, [protected(1)], [catching_up], NO_JITTER)).statuses[0]
    assert later.missed and not later.stale  # no backup yet, known for 14 h: under the 25 h allowed
    oldest = plan(BackupSnapshot(T0 + 25 * 3600 + 60, [protected(1)], [catching_up], NO_JITTER))
    assert oldest.statuses[0].stale


def test_fleet_cap_counts_what_is_in_flight_and_the_earliest_due_go_first() -> None:
    servers = [protected(i, "hourly") for i in range(10)]
    busy = [record("srv-00000", T0, BackupState.CREATING, slot=T0)]
    cap = SchedulerSettings(max_concurrent=4, jitter_s=1800.0)
    result = plan(BackupSnapshot(T0 + 3599, servers, busy, cap))
    assert len(result.create) == 3 and result.in_flight == 1
    dues = sorted(s.due_at for s in result.statuses if s.server_id != "srv-00000")
    assert sorted(p.due_at for p in result.create) == dues[:3]
    assert sum(1 for s in result.statuses if "cap" in s.waiting) == 6


MIDNIGHT = T0 - 12 * 3600


def _run_fleet(
    servers: list[Protected], cfg: SchedulerSettings, hours: float, first_seen: bool = False
) -> tuple[list[BackupRecord], dict[str, float], set[str]]:
    """Passes every 300 virtual s from midnight; a backup issued in one pass is good by the next. The
    records, each server's worst recovery-point age over the run, sampled each pass from the records
    (with no good backup yet: counted from midnight), and the servers ever missed or stale."""
    records: list[BackupRecord] = []
    alerted: set[str] = set()
    worst: dict[str, float] = {s.target.id: 0.0 for s in servers}
    seen: dict[str, dict[str, float]] = {}
    if first_seen:
        seen["first_seen"] = {s.target.id: MIDNIGHT for s in servers}
    now = MIDNIGHT
    while now < MIDNIGHT + hours * 3600:
        records = [
            dataclasses.replace(r, state=BackupState.AVAILABLE, finished_at=now)
            if r.state is BackupState.ISSUED
            else r
            for r in records
        ]
        result = plan(BackupSnapshot(now, servers, records, cfg, **seen))
        alerted |= {s.server_id for s in result.statuses if s.missed or s.stale}
        assert result.in_flight + len(result.create) <= cfg.max_concurrent
        records += [
            record(p.target.id, now, BackupState.ISSUED, slot=p.slot, id=f"{p.target.id}@{now}")
            for p in result.create
        ]
        newest: dict[str, float] = {}
        for r in records:
            if r.state is BackupState.AVAILABLE:
                newest[r.server_id] = max(newest.get(r.server_id, MIDNIGHT), r.created_at)
        for sid in worst:
            worst[sid] = max(worst[sid], now - newest.get(sid, MIDNIGHT))
        now += 300.0
    return records, worst, alerted


@pytest.mark.parametrize("first_seen", [False, True])
def test_a_burst_of_daily_windows_does_not_starve_the_hourly_servers(first_seen: bool) -> None:
    # 60 daily servers and 3 hourly ones all due at midnight; the cap takes 2 per 5-minute pass, so the
    # daily burst alone fills the first 150 minutes. Earliest due first (ties by id: the daily ones) left
    # the hourly servers without a backup until 02:30, past the 2 h their policy allows.
    daily = [protected(i) for i in range(60)]
    hourly = [protected(i, "hourly") for i in range(60, 63)]
    cfg = SchedulerSettings(max_concurrent=2, jitter_s=0.0)
    records, worst, alerted = _run_fleet(daily + hourly, cfg, hours=6, first_seen=first_seen)
    allowed = max_age_s(hourly[0].policy, cfg)
    assert allowed == 7200.0
    for item in hourly:
        assert worst[item.target.id] <= allowed, f"{item.target.id}: {worst[item.target.id]:.0f} s"
        taken = sorted(r.created_at for r in records if r.server_id == item.target.id)
        hours_with_one = {int((t - MIDNIGHT) // 3600) for t in taken}
        assert hours_with_one == set(range(6)), "every hourly window got a backup taken in it"
    late = set()
    for item in daily:  # the daily servers still all get theirs in the first 3 hours (policy: 25 h)
        first = min(r.created_at for r in records if r.server_id == item.target.id)
        assert first < MIDNIGHT + 3 * 3600
        assert worst[item.target.id] <= max_age_s(item.policy, cfg)
        if first > MIDNIGHT + cfg.grace_s:
            late.add(item.target.id)
    # no hourly server alerted; the daily ones whose midnight window got its backup after its grace
    # (01:00) are missed, when haven knew them from midnight (a cap of 2 is short for this burst)
    assert len(late) > 20
    assert alerted == (late if first_seen else set())


def test_the_most_behind_on_their_own_period_go_first_ties_by_due_time() -> None:
    cfg = SchedulerSettings(max_concurrent=2, jitter_s=0.0)
    at = MIDNIGHT + 10 * 3600 + 600  # 10:10
    servers = [protected(1), protected(2, "hourly"), protected(3), protected(4, "hourly")]
    records = [
        record("srv-00001", at - 2 * DAY),  # daily, 2 days since its backup: 2.0 periods behind
        record("srv-00002", at - 4200),  # hourly, 70 minutes since: 1.17 periods
        record("srv-00003", at - 25 * 3600),  # daily, 25 hours since: 1.04 periods
        record("srv-00004", at - 3900),  # hourly, 65 minutes since: 1.08 periods
    ]
    result = plan(BackupSnapshot(at, servers, records, cfg))
    assert [p.target.id for p in result.create] == ["srv-00001", "srv-00002"]
    waiting = {s.server_id: s.waiting for s in result.statuses}
    assert "cap of 2" in waiting["srv-00003"] and "cap of 2" in waiting["srv-00004"]
    # equally behind (never backed up, all known since midnight): the earliest due first
    fresh = [protected(i, "0 */2 * * *") for i in range(5)]
    seen = {f"srv-{i:05d}": MIDNIGHT for i in range(5)}
    jittered = SchedulerSettings(max_concurrent=2, jitter_s=1800.0)
    result = plan(BackupSnapshot(MIDNIGHT + 1800, fresh, [], jittered, seen))
    dues = sorted((s.due_at, s.server_id) for s in result.statuses)
    assert [p.target.id for p in result.create] == [sid for _, sid in dues[:2]]


def test_a_server_seen_but_never_backed_up_is_missed_and_stale() -> None:
    # The cap is held by another server's backup all day: srv-00002 never gets a record of its own.
    # Before, with no record haven never knew it: it could never be missed nor stale.
    cfg = SchedulerSettings(max_concurrent=1, jitter_s=0.0)  # grace_s 3600
    hog = record("srv-00001", MIDNIGHT, BackupState.CREATING)
    servers = [protected(1), protected(2, "hourly")]
    seen = {"srv-00001": MIDNIGHT, "srv-00002": MIDNIGHT}

    def status(at: float) -> Any:
        result = plan(BackupSnapshot(at, servers, [hog], cfg, seen))
        assert result.create == ()
        return next(s for s in result.statuses if s.server_id == "srv-00002")

    early = status(MIDNIGHT + 3000)  # its 00:00 window, inside its grace
    assert not early.missed and not early.stale and "cap of 1" in early.waiting
    late = status(MIDNIGHT + 3660)  # the 00:00 window an hour after it was due: missed
    assert late.missed and not late.stale and late.recovery_point is None
    older = status(MIDNIGHT + 7260)  # known 2 h (period + grace, no jitter) with no backup: stale
    assert older.missed and older.stale
    # the window due before haven first saw the server is caught up, not alerted, even when its grace
    # ends just after: an hourly server due at 23:0x seen at midnight is not missed at 00:05
    hourly = schedule.parse("hourly")
    i = next(i for i in range(3, 999) if schedule.jitter(f"srv-{i:05d}", hourly, 900.0) < 240)
    jittered = SchedulerSettings(max_concurrent=1, jitter_s=900.0)
    seen_i = {f"srv-{i:05d}": MIDNIGHT}
    result = plan(
        BackupSnapshot(MIDNIGHT + 300, [protected(1), protected(i, "hourly")], [hog], jittered, seen_i)
    )
    assert not any(s.missed or s.stale for s in result.statuses)
    # a daily server first seen at noon: its window due at midnight is caught up, not alerted; it is
    # stale once known longer than its policy allows (25 h), and missed once the next window's grace
    # (01:00 next day) passes
    noon = {"srv-00002": MIDNIGHT + 12 * 3600}
    servers = [protected(1), protected(2)]

    def daily(at: float) -> Any:
        result = plan(BackupSnapshot(at, servers, [hog], cfg, noon))
        return next(s for s in result.statuses if s.server_id == "srv-00002")

    assert not daily(MIDNIGHT + 12 * 3600).missed and not daily(MIDNIGHT + 12 * 3600).stale
    assert not daily(MIDNIGHT + DAY + 3000).missed and not daily(MIDNIGHT + DAY + 3000).stale
    assert daily(MIDNIGHT + DAY + 3660).missed and not daily(MIDNIGHT + DAY + 3660).stale
    assert daily(MIDNIGHT + 12 * 3600 + 25 * 3600 + 60).stale


async def test_the_runner_alerts_on_a_server_it_saw_but_never_backed_up() -> None:
    # haven's runner on the simulated cloud: one server busy all day (a resize that never ends: Nova
    # refuses its backup), so it never gets a backup record; the store's alerts are the judge
    clock = VirtualClock(start=VIRTUAL_EPOCH - VIRTUAL_EPOCH % DAY)
    cloud, _ = build_cloud(CloudSpec(hosts=1, vms=2, zones=1), clock)
    port = SimBackups(cloud)
    ids = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    for sid in ids:
        cloud.sim_server(sid).metadata["haven_backup"] = "hourly"
    cloud.sim_server(ids[0]).task_state = TaskState.REBUILDING
    config = BackupsConfig(enabled=True, scheduler=SchedulerSettings(jitter_s=0.0))
    with Store.open("sqlite://") as store:
        runner = BackupRunner(config, port, store, clock)
        start = clock.now()
        raised: dict[AlertKind, float] = {}
        while clock.now() < start + 3 * 3600:
            await runner.run_pass()
            for alert in store.list_alerts():
                if str(alert.host) == ids[0]:
                    raised.setdefault(alert.kind, clock.now())
            clock.advance_to(clock.now() + 300.0)
        assert store.backups_of(ids[0]) == []
        assert [c for c in port.create_calls if c[1] == ids[0]] == []
        assert {c[1] for c in port.create_calls} == {ids[1]}
        alerts = {a.kind for a in store.list_alerts() if str(a.host) == ids[1]}
    # its 00:00 window's grace ends at 01:00: the first pass after it is missed; known 2 h with no
    # backup (period + grace, no jitter): the first pass after that, stale
    assert raised.get(AlertKind.BACKUP_MISSED) == start + 3600 + 300
    assert raised.get(AlertKind.RECOVERY_POINT_STALE) == start + 7200 + 300
    assert alerts == set()  # the other server, backed up each hour, raised none


def test_failures_are_retried_after_retry_s_up_to_attempts_and_busy_servers_wait() -> None:
    slot = T0 - 12 * 3600
    failed = record("srv-00001", T0 - 100, BackupState.FAILED, slot=slot, finished_at=T0 - 100)
    assert plan(BackupSnapshot(T0, [protected(1)], [failed], NO_JITTER)).create == ()
    again = plan(BackupSnapshot(T0 + 600, [protected(1)], [failed], NO_JITTER)).create
    assert [p.attempt for p in again] == [2]
    three = [dataclasses.replace(failed, id=f"f{a}", attempt=a) for a in (1, 2, 3)]
    gave_up = plan(BackupSnapshot(T0 + DAY / 4, [protected(1)], three, NO_JITTER))
    assert gave_up.create == () and "3 attempts failed" in gave_up.statuses[0].waiting
    resizing = plan(BackupSnapshot(T0, [protected(1, busy=True)], [], NO_JITTER))
    assert resizing.create == () and "busy" in resizing.statuses[0].waiting


def test_volume_backed_servers_chain_incrementals_up_to_chain_max() -> None:
    vol: dict[str, Any] = {"image_id": "", "volumes": (VolumeRef("v1", boot=True),)}
    first = plan(BackupSnapshot(T0, [protected(1, **vol)], [], NO_JITTER)).create[0]
    assert first.kind is BackupKind.VOLUME and not first.incremental
    chain = [record("srv-00001", T0 - 3 * DAY, kind=BackupKind.VOLUME)]
    for d in (2, 1):
        chain.append(
            record(
                "srv-00001", T0 - d * DAY, kind=BackupKind.VOLUME, incremental=True, parent_id=chain[-1].id
            )
        )
    nxt = plan(BackupSnapshot(T0, [protected(1, **vol)], chain, NO_JITTER)).create[0]
    assert nxt.incremental and nxt.parent_id == chain[-1].id
    capped = dataclasses.replace(NO_JITTER, chain_max=3)
    assert not plan(BackupSnapshot(T0, [protected(1, **vol)], chain, capped)).create[0].incremental


# ---- properties: many schedules run in virtual time ------------------------------------------------

SCHEDULES = st.sampled_from(
    ["hourly", "daily", "weekly", "*/20 * * * *", "15 */6 * * *", "0 4 * * 1-5", "0 0 1 * *"]
)


@settings(max_examples=25, deadline=None)  # each example is 9 virtual days of passes: CI time
@given(
    policies=st.lists(SCHEDULES, min_size=1, max_size=12),
    cap=st.integers(min_value=1, max_value=5),
    downtime=st.tuples(st.floats(0, 3 * DAY), st.floats(0, 4 * DAY)),
    pass_s=st.sampled_from([300.0, 900.0]),  # (60 s passes: 13,000 plans per example; bench/backups.py)
    fail_every=st.integers(min_value=0, max_value=7),
    jitter_s=st.sampled_from([0.0, 600.0, 3600.0]),
)
def test_virtual_fleet_never_exceeds_the_cap_never_doubles_a_window_and_catches_up(
    policies: list[str],
    cap: int,
    downtime: tuple[float, float],
    pass_s: float,
    fail_every: int,
    jitter_s: float,
) -> None:
    cfg = SchedulerSettings(max_concurrent=cap, jitter_s=jitter_s, retry_s=900.0, attempts=3)
    servers = [Protected(target(i), BackupPolicy(p, Retention(2, 1, 0))) for i, p in enumerate(policies)]
    records: list[BackupRecord] = []
    down_from, down_for = T0 + downtime[0], downtime[1]
    now, horizon, n = T0, T0 + 9 * DAY, 0
    while now < horizon:
        if not down_from <= now < down_from + down_for:
            # backups issued in an earlier pass finish one pass later (a fixed share fail)
            for i, r in enumerate(records):
                if r.state is BackupState.ISSUED and r.created_at < now:
                    n += 1
                    failed = fail_every and n % fail_every == 0
                    state = BackupState.FAILED if failed else BackupState.AVAILABLE
                    records[i] = dataclasses.replace(r, state=state, finished_at=now)
            result = plan(BackupSnapshot(now, servers, records, cfg))
            assert result.in_flight + len(result.create) <= cap
            for p in result.create:
                records.append(
                    record(
                        p.target.id,
                        now,
                        BackupState.ISSUED,
                        slot=p.slot,
                        attempt=p.attempt,
                        id=f"{p.target.id}@{now}",
                    )
                )
            doomed = {r.id for r in result.delete}
            for i, r in enumerate(records):
                if r.id in doomed:
                    records[i] = dataclasses.replace(r, state=BackupState.DELETED, finished_at=now)
        now += pass_s
    for item in servers:
        mine = [r for r in records if r.server_id == item.target.id]
        good_slots = [r.slot for r in mine if r.state is not BackupState.FAILED]
        assert len(good_slots) == len(set(good_slots)), "a window was backed up twice"
        for slot in {r.slot for r in mine}:
            assert sum(1 for r in mine if r.slot == slot and r.state is BackupState.FAILED) <= cfg.attempts
        alive = [r for r in mine if r.state is BackupState.AVAILABLE]
        assert len(alive) <= item.policy.retention.ceiling
        if any(r.state is BackupState.AVAILABLE or r.state is BackupState.DELETED for r in mine):
            assert alive, "rotation deleted the only good backup"
        sched = schedule.parse(item.policy.schedule)
        up_since = max(T0, down_from + down_for)
        last_due = sched.previous_slot(now - pass_s * 2 - schedule.jitter(item.target.id, sched, jitter_s))
        last_due += schedule.jitter(item.target.id, sched, jitter_s)
        load = sum(pass_s / schedule.parse(s.policy.schedule).period_s for s in servers)  # slots per pass
        if last_due > up_since + pass_s * (len(servers) + 2) and not fail_every and load <= cap / 2:
            # haven was up, nothing failed and the cap had time (a fleet that needs more backups per
            # pass than the cap allows falls behind by design): the window due is covered
            assert any(r.slot >= last_due - sched.period_s for r in mine if r.state is not BackupState.FAILED)
