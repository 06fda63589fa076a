"""Backup schedules: hourly, daily, weekly or a 5-field cron expression, as windows in UTC.

Called by haven.backups.policy (to validate what metadata and haven.toml say) and by the planner
(which window is due for a server, with its deterministic jitter). Pure: no clock, no I/O.

A schedule is a set of window starts ("slots"): ``hourly`` is ``0 * * * *``, ``daily``
``0 0 * * *``, ``weekly`` ``0 0 * * 1`` (Monday). Cron fields are minute, hour, day of month,
month and day of week (0 or 7 Sunday), each ``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S`` or a comma
list of those; when both day fields are restricted a day matching either is a day (as cron does).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from haven.domain.errors import ConfigError

NAMED = {"hourly": "0 * * * *", "daily": "0 0 * * *", "weekly": "0 0 * * 1"}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_HORIZON_DAYS = 366 * 5  # a schedule with no slot in five years (Feb 30) is refused when parsed
HINT = 'use hourly, daily, weekly or a 5-field cron expression such as "30 2 * * *" (02:30 UTC daily)'


@dataclass(frozen=True)
class Schedule:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 Monday .. 6 Sunday (Python's weekday)
    any_day: bool  # day of month is *
    any_weekday: bool  # day of week is *

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, day.weekday() in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def previous_slot(self, at: float) -> float:
        """The latest window start at or before ``at``."""
        return _previous(self, int(at // 60))

    def next_slot(self, at: float) -> float:
        """The first window start strictly after ``at``."""
        return _next(self, int(at // 60))

    @functools.cached_property
    def period_s(self) -> float:
        """The shortest gap between two windows (over a sample year): the schedule's nominal period."""
        start = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
        slots = [self.next_slot(start)]
        for _ in range(64):
            slots.append(self.next_slot(slots[-1]))
            if slots[-1] - slots[0] > 400 * 86400:
                break
        return min(b - a for a, b in itertools.pairwise(slots))


# Both cached: the planner asks them for every server on every pass, mostly for the same windows.
@functools.lru_cache(maxsize=65536)
def _next(schedule: Schedule, minute: int) -> float:
    t = datetime.fromtimestamp(minute * 60, UTC) + timedelta(minutes=1)
    day = t.replace(hour=0, minute=0)
    for _ in range(_HORIZON_DAYS):
        if schedule._day_matches(day):
            for hour in sorted(schedule.hours):
                for m in sorted(schedule.minutes):
                    slot = day.replace(hour=hour, minute=m)
                    if slot >= t:
                        return slot.timestamp()
        day += timedelta(days=1)
    raise ConfigError(f"schedule {schedule.text!r} has no window in five years", HINT)


@functools.lru_cache(maxsize=65536)
def _previous(schedule: Schedule, minute: int) -> float:
    t = datetime.fromtimestamp(minute * 60, UTC)
    day = t.replace(hour=0, minute=0)
    for _ in range(_HORIZON_DAYS):
        if schedule._day_matches(day):
            for hour in sorted(schedule.hours, reverse=True):
                for m in sorted(schedule.minutes, reverse=True):
                    slot = day.replace(hour=hour, minute=m)
                    if slot <= t:
                        return slot.timestamp()
        day -= timedelta(days=1)
    raise ConfigError(f"schedule {schedule.text!r} has no window in five years", HINT)


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Schedule:
    """``text`` as a Schedule; a ConfigError naming the field that is wrong."""
    expression = NAMED.get(text.strip().lower(), text.strip())
    parts = expression.split()
    if len(parts) != 5:
        raise ConfigError(f"schedule {text!r} is not a schedule: it has {len(parts)} fields, not 5", HINT)
    sets = [
        _field(part, lo, hi, name, text) for part, (lo, hi), name in zip(parts, _RANGES, _FIELDS, strict=True)
    ]
    weekdays = frozenset((d - 1) % 7 for d in sets[4])  # cron 0/7 Sunday, 1 Monday -> Python 6, 0
    schedule = Schedule(
        text,
        sets[0],
        sets[1],
        sets[2],
        sets[3],
        weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )
    schedule.next_slot(datetime(2027, 1, 1, tzinfo=UTC).timestamp())  # refuses a schedule with no window
    return schedule


def _field(part: str, lo: int, hi: int, name: str, text: str) -> frozenset[int]:
    values: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                first, last = lo, hi
            elif "-" in base:
                a, b = base.split("-", 1)
                first, last = int(a), int(b)
            else:
                first = last = int(base)
                if step_text:
                    last = hi
        except ValueError:
            raise ConfigError(
                f"schedule {text!r}: {name} {item!r} is not a number, range or step", HINT
            ) from None
        if step < 1 or not lo <= first <= last <= hi:
            raise ConfigError(f"schedule {text!r}: {name} {item!r} is outside {lo}-{hi}", HINT)
        values.update(range(first, last + 1, step))
    return frozenset(values)


def jitter(server_id: str, schedule: Schedule, jitter_s: float) -> float:
    """The server's fixed offset into each window: the same on every engine and pass, spread evenly.

    At most ``jitter_s`` and at most a quarter of the schedule's period, so a window's backups
    start spread over its first part rather than all at its start (Glance is never stampeded).
    """
    cap = min(jitter_s, schedule.period_s / 4)
    if cap <= 0:
        return 0.0
    fraction = int(hashlib.sha256(server_id.encode()).hexdigest()[:12], 16) / float(1 << 48)
    return fraction * cap
