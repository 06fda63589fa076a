"""Queries for backups and restores (haven.backups), run by Store inside its transactions.

A backup is inserted ``issued`` (its intent) before the create call; the partial unique indexes refuse a
second backup of one window and a second backup in flight for one server (Conflict), so two passes or
two engines cannot ask Nova twice. Each later state is an update guarded by the state it leaves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from enum import Enum
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from haven.domain.backups import (
    BackupKind,
    BackupRecord,
    BackupState,
    RestorePurpose,
    RestoreRecord,
    RestoreState,
    Trigger,
)
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import ServerId
from haven.store.tables import backup_first_seen as first_seen_rows
from haven.store.tables import backup_restores as restores
from haven.store.tables import backups

_BACKUP_COLUMNS = ("id", "server_id", "state", "slot", "created_at", "finished_at")
_RESTORE_COLUMNS = ("id", "server_id", "purpose", "state", "created_at")


def _plain(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return dict(value)
    return value


def _split(record: object, columns: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    values = {f.name: _plain(getattr(record, f.name)) for f in dataclasses.fields(record)}  # type: ignore[arg-type]
    pairs = values.get("volume_backups")
    if isinstance(pairs, dict):  # ordered pairs: JSONB keeps no key order (the boot volume goes first)
        values["volume_backups"] = [list(pair) for pair in pairs.items()]
    return {k: values[k] for k in columns}, {k: v for k, v in values.items() if k not in columns}


def _backup(row: Row[Any]) -> BackupRecord:
    known = {f.name for f in dataclasses.fields(BackupRecord)}
    d = {k: v for k, v in dict(row.detail).items() if k in known}
    if isinstance(d.get("volume_backups"), list):  # [[volume, Cinder backup], ...] in the server's order
        d["volume_backups"] = {str(v): str(b) for v, b in d["volume_backups"]}
    return BackupRecord(
        id=row.id, server_id=ServerId(row.server_id), state=BackupState(row.state), slot=row.slot,
        created_at=row.created_at, finished_at=row.finished_at,
        **{**d, "kind": BackupKind(d["kind"]), "trigger": Trigger(d["trigger"])},
    )  # fmt: skip


def _restore(row: Row[Any]) -> RestoreRecord:
    known = {f.name for f in dataclasses.fields(RestoreRecord)}
    d = {k: v for k, v in dict(row.detail).items() if k in known}
    return RestoreRecord(
        id=row.id, server_id=ServerId(row.server_id), purpose=RestorePurpose(row.purpose),
        state=RestoreState(row.state), created_at=row.created_at, **d,
    )  # fmt: skip


def issue(conn: Connection, record: BackupRecord) -> None:
    columns, detail = _split(record, _BACKUP_COLUMNS)
    try:
        with conn.begin_nested():
            conn.execute(insert(backups), [{**columns, "detail": detail}])
    except IntegrityError as exc:
        raise Conflict(
            f"server {record.server_id} already has a backup of this window or one in flight"
        ) from exc


def save(conn: Connection, record: BackupRecord, was: Collection[BackupState]) -> None:
    """Write ``record``'s new state and detail, if the stored one is still in one of ``was``."""
    columns, detail = _split(record, _BACKUP_COLUMNS)
    done = conn.execute(
        update(backups)
        .where(backups.c.id == record.id, backups.c.state.in_([s.value for s in was]))
        .values(state=columns["state"], finished_at=columns["finished_at"], detail=detail)
    )
    if done.rowcount != 1:
        raise Conflict(f"backup {record.id} is no longer {'/'.join(s.value for s in was)}")


def get(conn: Connection, backup_id: str) -> BackupRecord:
    row = conn.execute(select(backups).where(backups.c.id == backup_id)).first()
    if row is None:
        raise NotFound(f"no backup {backup_id!r}")
    return _backup(row)


def relevant(conn: Connection, deleted_since: float) -> list[BackupRecord]:
    """Every backup not deleted, and those deleted or failed since ``deleted_since``, oldest first."""
    over = (BackupState.DELETED.value, BackupState.FAILED.value)
    query = (
        select(backups)
        .where(or_(backups.c.state.not_in(over), and_(backups.c.finished_at >= deleted_since)))
        .order_by(backups.c.created_at, backups.c.id)
    )
    return [_backup(row) for row in conn.execute(query)]


def of_server(conn: Connection, server_id: str) -> list[BackupRecord]:
    query = (
        select(backups).where(backups.c.server_id == server_id).order_by(backups.c.created_at, backups.c.id)
    )
    return [_backup(row) for row in conn.execute(query)]


def issue_restore(conn: Connection, record: RestoreRecord) -> None:
    columns, detail = _split(record, _RESTORE_COLUMNS)
    try:
        with conn.begin_nested():
            conn.execute(insert(restores), [{**columns, "detail": detail}])
    except IntegrityError as exc:
        raise Conflict(f"restore {record.id} exists") from exc


def save_restore(conn: Connection, record: RestoreRecord, was: Collection[RestoreState]) -> None:
    columns, detail = _split(record, _RESTORE_COLUMNS)
    done = conn.execute(
        update(restores)
        .where(restores.c.id == record.id, restores.c.state.in_([s.value for s in was]))
        .values(state=columns["state"], detail=detail)
    )
    if done.rowcount != 1:
        raise Conflict(f"restore {record.id} is no longer {'/'.join(s.value for s in was)}")


def restores_list(
    conn: Connection, *, unfinished: bool = False, since: float | None = None
) -> list[RestoreRecord]:
    query = select(restores).order_by(restores.c.created_at, restores.c.id)
    if unfinished:
        query = query.where(restores.c.state.in_([s.value for s in RestoreState if s.in_flight]))
    if since is not None:
        query = query.where(restores.c.created_at >= since)
    return [_restore(row) for row in conn.execute(query)]


def first_seen(conn: Connection) -> dict[str, float]:
    """When the runner first saw each server it protects (server id -> time)."""
    rows = conn.execute(select(first_seen_rows.c.server_id, first_seen_rows.c.first_seen))
    return {row.server_id: row.first_seen for row in rows}


def note_first_seen(conn: Connection, seen: Mapping[str, float], gone: Collection[str]) -> dict[str, float]:
    """Keep ``seen``'s servers (a time already stored wins: it was seen first then) and forget ``gone``'s.
    Returns the stored time of each of ``seen``'s servers."""
    for chunk in _chunks(list(gone)):
        conn.execute(delete(first_seen_rows).where(first_seen_rows.c.server_id.in_(chunk)))
    stored: dict[str, float] = {}
    for chunk in _chunks(list(seen)):
        query = select(first_seen_rows).where(first_seen_rows.c.server_id.in_(chunk))
        stored.update({row.server_id: row.first_seen for row in conn.execute(query)})
    new = [{"server_id": k, "first_seen": at} for k, at in seen.items() if k not in stored]
    if new:
        conn.execute(insert(first_seen_rows), new)
    return {k: stored.get(k, at) for k, at in seen.items()}


def _chunks(keys: list[str], size: int = 500) -> list[list[str]]:
    """Bounded IN lists (SQLite's limit on a statement's variables)."""
    return [keys[start : start + size] for start in range(0, len(keys), size)]
