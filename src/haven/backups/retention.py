"""Rotation: which of one server's backups its retention lets go, in the order they may be deleted.

Called by haven.backups.planner for each protected server; pure. Keeps the newest ``keep`` good
backups, the newest of each of the last ``daily`` days and ``weekly`` ISO weeks (UTC), always the
newest good backup (so rotation never deletes the only one), and every backup a kept or in-flight
one depends on (a Cinder incremental chain is never broken: a full goes only with all its
incrementals, which go first, newest first, as Cinder requires).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from datetime import UTC, datetime

from haven.domain.backups import BackupRecord, BackupState, Retention

_IN_FLIGHT = tuple(s for s in BackupState if s.in_flight)  # a tuple: asked of every record, every pass


def kept(records: Sequence[BackupRecord], retention: Retention) -> set[str]:
    """The ids of the records this retention keeps (including what they depend on)."""
    good = sorted(
        (r for r in records if r.state is BackupState.AVAILABLE), key=lambda r: (-r.created_at, r.id)
    )
    keep: set[str] = {r.id for r in good[: max(retention.keep, 1)]}
    keep |= _newest_per(good, retention.daily, lambda r: _day(r.created_at))
    keep |= _newest_per(good, retention.weekly, lambda r: _week(r.created_at))
    if not any(r.parent_id for r in records):
        return keep  # no chains (image backups): nothing to keep for what depends on it
    roots = keep | {r.id for r in records if r.state in _IN_FLIGHT}
    by_id = {r.id: r for r in records}
    for rid in list(roots):
        parent = by_id[rid].parent_id if rid in by_id else ""
        while parent and parent not in keep:
            keep.add(parent)
            parent = by_id[parent].parent_id if parent in by_id else ""
    return keep


def to_delete(records: Sequence[BackupRecord], retention: Retention) -> list[BackupRecord]:
    """Good backups outside the retention, newest first (an incremental always before its parent)."""
    keep = kept(records, retention)
    doomed = [r for r in records if r.state is BackupState.AVAILABLE and r.id not in keep]
    return sorted(doomed, key=lambda r: (-r.created_at, r.id))


def _newest_per(
    good: Iterable[BackupRecord], count: int, bucket: Callable[[BackupRecord], Hashable]
) -> set[str]:
    seen: set[Hashable] = set()
    chosen: set[str] = set()
    for record in good:  # newest first: the first of each bucket is its newest
        key = bucket(record)
        if key in seen:
            continue
        if len(seen) >= count:
            break
        seen.add(key)
        chosen.add(record.id)
    return chosen


def _day(at: float) -> tuple[int, int, int]:
    d = datetime.fromtimestamp(at, UTC)
    return d.year, d.month, d.day


def _week(at: float) -> tuple[int, int]:
    iso = datetime.fromtimestamp(at, UTC).isocalendar()
    return iso.year, iso.week
