"""Which policy a server has: its own metadata first, then its project's, its segment's, the default.

Called by the runner and the CLI before planning; pure. Metadata ``haven_backup`` opts a server in
(``hourly``, ``daily``, ``weekly`` or a cron expression) or out (``off``); ``haven_backup_keep``,
``haven_backup_keep_daily`` and ``haven_backup_keep_weekly`` set its retention, over the schedule a
default gives when the server names none. Metadata that cannot be used is a problem reported for that
server (its owner wrote it), never an error that stops the fleet's backups.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from haven.backups import schedule as schedules
from haven.backups.config import BackupsConfig
from haven.domain.backups import (
    BACKUP_KEY,
    KEEP_DAILY_KEY,
    KEEP_KEY,
    KEEP_WEEKLY_KEY,
    BackupPolicy,
    BackupTarget,
    Retention,
)
from haven.domain.errors import ConfigError

OFF = ("off", "none", "false", "no", "0")


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    server_id: str
    message: str


def resolve(target: BackupTarget, config: BackupsConfig) -> BackupPolicy | PolicyProblem | None:
    """The server's policy, a problem with its metadata, or None when it is not protected."""
    meta = target.metadata
    wanted = meta.get(BACKUP_KEY, "").strip()
    if wanted.lower() in OFF and wanted:
        return None
    inherited = (
        config.projects.get(target.project)
        or (config.segments.get(target.segment) if target.segment else None)
        or config.default
    )
    if wanted:
        try:
            schedules.parse(wanted)
        except ConfigError as exc:
            return PolicyProblem(target.id, f"metadata {BACKUP_KEY}={wanted!r}: {exc.message}")
        name = wanted.lower() if wanted.lower() in schedules.NAMED else wanted
        base = BackupPolicy(name, inherited.retention if inherited else Retention(), "metadata")
    elif inherited is not None:
        base = inherited
    elif any(k in meta for k in (KEEP_KEY, KEEP_DAILY_KEY, KEEP_WEEKLY_KEY)):
        return PolicyProblem(target.id, f"metadata sets a retention but no {BACKUP_KEY} schedule")
    else:
        return None
    retention = base.retention
    for key, attr, least in (
        (KEEP_KEY, "keep", 1),
        (KEEP_DAILY_KEY, "daily", 0),
        (KEEP_WEEKLY_KEY, "weekly", 0),
    ):
        if key not in meta:
            continue
        try:
            value = int(meta[key])
        except ValueError:
            value = -1
        if value < least or value > 10000:
            return PolicyProblem(
                target.id, f"metadata {key}={meta[key]!r} must be a whole number {least}-10000"
            )
        retention = dataclasses.replace(retention, **{attr: value})
    source = "metadata" if wanted or retention != base.retention else base.source
    return BackupPolicy(base.schedule, retention, source)
