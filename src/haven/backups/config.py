"""haven.toml's ``[backups]``: defaults per project and segment, the scheduler's limits, restore drills.

Called by haven.service.config (which reads the file), as it calls haven.explain.config; pure. One
pydantic schema validates it (unknown keys refused, types and ranges checked, schedules parsed); every
mistake becomes a ConfigError naming the key and how to fix it.

    [backups]
    enabled = true                     # haven serve runs backups while it leads
    max_concurrent = 4                 # backups in flight across the whole cloud, never more
    jitter_s = 900.0                   # each server's fixed offset into its window: at most this
    grace_s = 3600.0                   # a window with no good backup this long after it was due: missed
    attempts = 3                       # tries per window (a failure is retried after retry_s)
    retry_s = 600.0
    timeout_s = 7200.0                 # a backup not ready after this long failed (its image deleted);
                                       # a Cinder backup still creating is only marked late
    volume_timeout_s = 86400.0         # a Cinder backup still creating this long after Cinder
                                       # accepted it: failed (at least timeout_s)
    chain_max = 7                      # volume-backed: a full Cinder backup, then up to 6 incrementals
    pass_interval_s = 60.0
    [backups.default]                  # every server without metadata (absent: only opted-in servers)
    schedule = "daily"
    keep = 7
    [backups.projects.PROJECT]         # servers of that project, by its id (Nova's tenant_id, not its
                                       # name); keep_daily, keep_weekly too
    schedule = "hourly"
    keep = 24
    [backups.segments.SEGMENT]         # servers on that segment's hosts (its name or id)
    schedule = "0 3 * * *"
    [backups.drills]
    interval_s = 86400.0               # boot each protected server's latest backup this often
    sample = 0                         # at most this many servers per round (0: all)
    timeout_s = 600.0                  # a drill server not ACTIVE by then: the drill failed
    concurrency = 2
    flavor = ""                        # boot drills with this flavor ("" the server's own)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from haven.backups import schedule as schedules
from haven.domain.backups import BackupPolicy, Retention
from haven.domain.errors import ConfigError

HINT = "see docs/backups.md (or haven.backups.config) for every key of [backups]"


class _Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    schedule: str
    keep: int = Field(default=7, ge=1, le=10000)
    keep_daily: int = Field(default=0, ge=0, le=10000)
    keep_weekly: int = Field(default=0, ge=0, le=10000)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        try:
            schedules.parse(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value.strip().lower() if value.strip().lower() in schedules.NAMED else value.strip()


class _Drills(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    interval_s: float = Field(default=86400.0, gt=0)
    sample: int = Field(default=0, ge=0)
    timeout_s: float = Field(default=600.0, gt=0)
    concurrency: int = Field(default=2, ge=1, le=100)
    flavor: str = ""


class _Backups(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    enabled: bool = True
    max_concurrent: int = Field(default=4, ge=1, le=1000)
    jitter_s: float = Field(default=900.0, ge=0)
    grace_s: float = Field(default=3600.0, gt=0)
    attempts: int = Field(default=3, ge=1, le=100)
    retry_s: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=7200.0, gt=0)
    volume_timeout_s: float = Field(default=86400.0, gt=0)
    chain_max: int = Field(default=7, ge=1, le=1000)
    pass_interval_s: float = Field(default=60.0, gt=0)
    default: _Policy | None = None
    projects: dict[str, _Policy] = {}
    segments: dict[str, _Policy] = {}
    drills: _Drills = _Drills()

    @field_validator("volume_timeout_s")
    @classmethod
    def _volume_timeout(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("timeout_s")
        if isinstance(timeout, float) and value < timeout:
            raise ValueError(
                f"must be at least timeout_s ({timeout:g}): a Cinder backup still creating is failed "
                "only after volume_timeout_s"
            )
        return value


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    max_concurrent: int = 4
    jitter_s: float = 900.0
    grace_s: float = 3600.0
    attempts: int = 3
    retry_s: float = 600.0
    timeout_s: float = 7200.0
    chain_max: int = 7
    volume_timeout_s: float = 86400.0  # a Cinder backup still creating: failed only after this


@dataclass(frozen=True, slots=True)
class DrillSettings:
    interval_s: float = 86400.0
    sample: int = 0
    timeout_s: float = 600.0
    concurrency: int = 2
    flavor: str = ""


@dataclass(frozen=True, slots=True)
class BackupsConfig:
    enabled: bool = False  # no [backups] section: haven serve takes no backups
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    drills: DrillSettings = field(default_factory=DrillSettings)
    pass_interval_s: float = 60.0
    default: BackupPolicy | None = None
    projects: Mapping[str, BackupPolicy] = field(default_factory=dict)
    segments: Mapping[str, BackupPolicy] = field(default_factory=dict)


def _policy(raw: _Policy, source: str) -> BackupPolicy:
    return BackupPolicy(raw.schedule, Retention(raw.keep, raw.keep_daily, raw.keep_weekly), source)


def parse_backups(section: object, where: str) -> BackupsConfig:
    """``section`` is the raw ``[backups]`` table (None when absent: backups off)."""
    if section is None:
        return BackupsConfig()
    where = f"{where} [backups]"
    try:
        raw = _Backups.model_validate(section)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "the section"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {key}: {message}", HINT) from None
    return BackupsConfig(
        enabled=raw.enabled,
        scheduler=SchedulerSettings(
            raw.max_concurrent,
            raw.jitter_s,
            raw.grace_s,
            raw.attempts,
            raw.retry_s,
            raw.timeout_s,
            raw.chain_max,
            raw.volume_timeout_s,
        ),
        drills=DrillSettings(**raw.drills.model_dump()),
        pass_interval_s=raw.pass_interval_s,
        default=_policy(raw.default, "default") if raw.default is not None else None,
        projects={name: _policy(p, f"project {name}") for name, p in raw.projects.items()},
        segments={name: _policy(p, f"segment {name}") for name, p in raw.segments.items()},
    )
