"""The backup scheduler: which backups are due and which may be deleted, from a snapshot. Pure.

Called by haven.backups.runner each pass (and by tests and the fleet benchmark in virtual time).
For each protected server the window due now is the latest slot of its schedule whose start plus
the server's fixed jitter has passed. A window is covered by any backup (scheduled or manual, in
flight or done) taken in it; a window missed while haven was down is therefore caught up by one
backup, however many windows passed, and never twice. A failed backup is retried after
``retry_s``, at most ``attempts`` times per window. One backup per server is in flight at a time,
and at most ``max_concurrent`` across the fleet. Which go first when the cap is short: the most
behind on their own schedule, counted in their own periods since their newest good backup (or, with
none, since haven first saw them), ties by due time: an hourly server 70 minutes behind goes before a
daily one 5 hours behind, so a burst of daily windows never starves the hourly ones (the earliest due
first did: hours without a backup). The others wait.

A server haven knows (``first_seen``, told by the runner, or any record of it) but never backed up is
missed like any other once a window due after haven saw it passes its grace, and stale once it has been
known longer than the policy allows a recovery point to be old.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from haven.backups import retention, schedule
from haven.backups.config import SchedulerSettings
from haven.domain.backups import BackupKind, BackupPolicy, BackupRecord, BackupState, BackupTarget
from haven.domain.cloud import VmState

_BACKABLE = (VmState.ACTIVE, VmState.STOPPED)
# BackupState.in_flight as a tuple: the planner asks it of every record on every pass (millions of
# property calls in a fleet's week of passes: the fleet test's largest cost)
_IN_FLIGHT = tuple(s for s in BackupState if s.in_flight)
_COVERS = (
    BackupState.ISSUED,
    BackupState.CREATING,
    BackupState.AVAILABLE,
    BackupState.DELETING,
    BackupState.DELETED,
)


@dataclass(frozen=True, slots=True)
class Protected:
    target: BackupTarget
    policy: BackupPolicy


@dataclass(frozen=True, slots=True)
class BackupSnapshot:
    now: float
    servers: Sequence[Protected]
    records: Sequence[BackupRecord]  # every record not deleted, and the deleted of the last weeks
    settings: SchedulerSettings
    # when haven first saw each server protected (the runner keeps it in the store, so a restart does
    # not forget it): a server never backed up alerts from there, not never
    first_seen: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlannedBackup:
    target: BackupTarget
    policy: BackupPolicy
    slot: float
    due_at: float
    kind: BackupKind
    attempt: int = 1
    incremental: bool = False
    parent_id: str = ""

    @property
    def rotation(self) -> int:
        """Nova's createBackup ``rotation``: above anything haven keeps, so Nova deletes none of them."""
        return self.policy.retention.ceiling + 1


@dataclass(frozen=True, slots=True)
class ServerStatus:
    server_id: str
    server_name: str
    policy: BackupPolicy
    slot: float  # the window due now
    due_at: float
    next_due_at: float
    recovery_point: float | None  # when its newest good backup was taken
    missed: bool  # the window due now has no good backup, grace_s after it was due
    stale: bool  # the recovery point is older than the policy allows (none: known longer than that)
    waiting: str = ""  # why a due backup was not started this pass


@dataclass(frozen=True, slots=True)
class BackupPlan:
    create: tuple[PlannedBackup, ...]
    delete: tuple[BackupRecord, ...]
    statuses: tuple[ServerStatus, ...]
    in_flight: int
    next_due_at: float | None


def max_age_s(policy: BackupPolicy, settings: SchedulerSettings) -> float:
    """How old a recovery point the policy allows: one period, the jitter and the grace."""
    sched = schedule.parse(policy.schedule)
    return sched.period_s + min(settings.jitter_s, sched.period_s / 4) + settings.grace_s


def plan(snapshot: BackupSnapshot) -> BackupPlan:
    settings, now = snapshot.settings, snapshot.now
    by_server: dict[str, list[BackupRecord]] = collections.defaultdict(list)
    in_flight = 0
    for record in snapshot.records:
        by_server[record.server_id].append(record)
        if record.state in _IN_FLIGHT:
            in_flight += 1
    due: list[tuple[float, PlannedBackup]] = []
    statuses: dict[str, ServerStatus] = {}
    deletes: list[BackupRecord] = []
    for item in snapshot.servers:
        records = by_server.get(item.target.id, [])
        status, candidate, behind = _server(
            item, records, now, settings, snapshot.first_seen.get(item.target.id)
        )
        statuses[item.target.id] = status
        if candidate is not None:
            due.append((behind, candidate))
        deletes.extend(retention.to_delete(records, item.policy.retention))
    due.sort(key=lambda pair: (-pair[0], pair[1].due_at, pair[1].target.id))
    room = max(settings.max_concurrent - in_flight, 0)
    create = tuple(candidate for _, candidate in due[:room])
    for _, candidate in due[room:]:
        s = statuses[candidate.target.id]
        statuses[candidate.target.id] = _replace_waiting(
            s, f"the fleet's cap of {settings.max_concurrent} in flight"
        )
    next_due = min((s.next_due_at for s in statuses.values()), default=None)
    if due[room:] or in_flight:
        next_due = now  # come back soon: capacity frees as backups finish
    return BackupPlan(create, tuple(deletes), tuple(statuses.values()), in_flight, next_due)


def _server(
    item: Protected,
    records: Sequence[BackupRecord],
    now: float,
    settings: SchedulerSettings,
    first_seen: float | None = None,
) -> tuple[ServerStatus, PlannedBackup | None, float]:
    """The server's status, its backup due now (if one may start), and how far behind it is: periods
    of its own schedule since its newest good backup (with none: since haven knew it, else since due)."""
    target, policy = item.target, item.policy
    sched = schedule.parse(policy.schedule)
    offset = schedule.jitter(target.id, sched, settings.jitter_s)
    slot = sched.previous_slot(now - offset)
    due_at = slot + offset
    next_due = sched.next_slot(slot) + offset
    # One pass over the server's records (every pass of the runner plans every server: a fleet's
    # records are read here millions of times a week): its good backups, the failures in this window,
    # when haven first knew it, whether this window is covered and whether a backup is in flight.
    good: list[BackupRecord] = []
    failures: list[BackupRecord] = []
    known_since, covered, in_flight = first_seen, False, False
    for r in records:
        state = r.state
        if state is BackupState.AVAILABLE:
            good.append(r)
        elif state is BackupState.FAILED and r.slot == slot:
            failures.append(r)
        if known_since is None or r.created_at < known_since:
            known_since = r.created_at
        covered = covered or (state in _COVERS and _in_window(r, slot))
        in_flight = in_flight or state in _IN_FLIGHT
    failures.sort(key=lambda r: r.attempt)
    recovery_point = max((r.created_at for r in good), default=None)
    # A window is missed when it has no good backup grace_s after it was due, if haven knew the server
    # when it was due (first seen, or a record of it, by then): the window already overdue when haven
    # first sees a server (the day [backups] is enabled, a server newly opted in) is caught up, not
    # alerted.
    grace = settings.grace_s

    def missed_window(window: float) -> bool:
        due = window + offset
        return (
            known_since is not None
            and known_since <= due
            and due + grace < now
            and not any(_in_window(r, window) for r in good)
        )

    # the window due now, or the one before (haven was down through it, say)
    missed = missed_window(slot) or missed_window(sched.previous_slot(slot - 60))
    # the recovery point's age; with none, counted from when haven knew the server
    reference = recovery_point if recovery_point is not None else known_since
    too_old = reference is not None and now - reference > max_age_s(policy, settings)
    stale = too_old
    behind = (now - (reference if reference is not None else due_at)) / sched.period_s
    status = ServerStatus(
        target.id, target.name, policy, slot, due_at, next_due, recovery_point, missed, stale
    )
    if covered:
        return status, None, behind
    if in_flight:
        return _replace_waiting(status, "a backup of this server is in flight"), None, behind
    if len(failures) >= settings.attempts:
        return _replace_waiting(status, f"{len(failures)} attempts failed in this window"), None, behind
    if failures and (failures[-1].finished_at or 0.0) + settings.retry_s > now:
        return _replace_waiting(status, "retrying after the last failure"), None, behind
    if target.busy or target.vm_state not in _BACKABLE:
        return (
            _replace_waiting(status, f"server {target.vm_state.value}{' and busy' if target.busy else ''}"),
            None,
            behind,
        )
    kind = BackupKind.VOLUME if target.volume_backed else BackupKind.IMAGE
    incremental, parent = False, ""
    if kind is BackupKind.VOLUME:
        incremental, parent = _chain(records, settings.chain_max)
    attempt = (failures[-1].attempt + 1) if failures else 1
    return status, PlannedBackup(target, policy, slot, due_at, kind, attempt, incremental, parent), behind


def _in_window(record: BackupRecord, slot: float) -> bool:
    return record.slot >= slot or record.created_at >= slot


def _chain(records: Sequence[BackupRecord], chain_max: int) -> tuple[bool, str]:
    """(incremental, parent id): continue the newest good chain unless it reached ``chain_max``."""
    good = [r for r in records if r.state is BackupState.AVAILABLE and r.kind is BackupKind.VOLUME]
    if not good:
        return False, ""
    newest = max(good, key=lambda r: (r.created_at, r.id))
    by_id = {r.id: r for r in records}
    length, cursor = 1, newest
    while cursor.parent_id and cursor.parent_id in by_id:
        cursor = by_id[cursor.parent_id]
        length += 1
    if length >= chain_max:
        return False, ""
    return True, newest.id


def _replace_waiting(status: ServerStatus, why: str) -> ServerStatus:
    return ServerStatus(
        status.server_id, status.server_name, status.policy, status.slot, status.due_at, status.next_due_at,
        status.recovery_point, status.missed, status.stale, why,
    )  # fmt: skip
