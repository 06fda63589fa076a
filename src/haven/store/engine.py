"""From a database URL to a configured SQLAlchemy engine.

Called by Store.open only. It decides how haven talks to each backend:

- SQLite: WAL journal, synchronous=NORMAL, foreign keys on, and SQLAlchemy
  (not the sqlite3 module) emitting BEGIN, so that reads happen inside the
  transaction too; writes start with BEGIN IMMEDIATE so that two writers
  queue on the busy timeout instead of failing half-way with "database is
  locked". ``sqlite://`` is one shared in-memory connection (StaticPool),
  used under a lock.
- PostgreSQL: psycopg 3 (``postgresql://`` is taken to mean it), a connect
  timeout so that an unreachable server fails fast, and a pre-ping so that a
  restarted server costs one retry rather than an error.

Nothing here touches the disk except ``SqliteFootprint.prepare``, which
creates the database's folder and remembers what it created so that a failed
open can take it back.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from haven.domain.errors import StoreUnavailable
from haven.domain.masking import mask_url, mask_words, url_passwords
from haven.store.translate import POSTGRES_HINT, SQLITE_HINT, URL_HINT

# Execution option that marks a connection as about to write (see _sqlite_begin).
WRITE_OPTION = "haven_write"

SQLITE_BUSY_TIMEOUT_S = 10.0
POSTGRES_CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True, slots=True)
class Target:
    """Where a store lives, as parsed from its URL."""

    url: URL
    label: str  # the URL with its password masked, for messages
    hint: str  # what to check when this database fails
    backend: str  # "sqlite" or "postgresql"
    sqlite_path: Path | None  # None for memory and PostgreSQL

    @property
    def memory(self) -> bool:
        return self.backend == "sqlite" and self.sqlite_path is None


def parse(raw: str) -> Target:
    """Parse and classify ``raw``; StoreUnavailable when it is not a URL haven can use."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        said = mask_words(str(exc), url_passwords(raw))  # the parser's words may quote the password
        raise StoreUnavailable(f"database URL {mask_url(raw)!r} does not parse: {said}", URL_HINT) from exc
    label = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    if backend == "postgres":  # the spelling Heroku and libpq accept
        backend, url = "postgresql", url.set(drivername="postgresql+psycopg")
    if backend == "postgresql":
        if "+" not in url.drivername:
            url = url.set(drivername="postgresql+psycopg")  # psycopg 3 is the driver haven ships with
        return Target(url, label, POSTGRES_HINT, "postgresql", None)
    if backend == "sqlite":
        database = url.database or ""
        path = None if database in ("", ":memory:") else Path(database).expanduser().absolute()
        return Target(url, label, SQLITE_HINT, "sqlite", path)
    raise StoreUnavailable(
        f"database URL {label!r} names backend {backend!r}; haven supports sqlite and postgresql", URL_HINT
    )


def _json_default(value: object) -> object:
    """Serialise the read-only containers that frozen dataclasses hold."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


json_dumps = functools.partial(json.dumps, default=_json_default, separators=(",", ":"))


def build_engine(target: Target) -> Engine:
    """A configured engine for ``target``; connects lazily (Store.open's migration connects first)."""
    try:
        if target.backend == "postgresql":
            return create_engine(
                target.url,
                json_serializer=json_dumps,
                pool_pre_ping=True,
                connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S},
            )
        return _sqlite_engine(target)
    except ImportError as exc:  # the URL named a DBAPI that is not installed
        raise StoreUnavailable(
            f"database URL {target.label!r} needs a driver that is not installed: {exc}", URL_HINT
        ) from exc
    except ArgumentError as exc:  # NoSuchModuleError included: unknown dialect or driver
        raise StoreUnavailable(f"database URL {target.label!r} cannot be used: {exc}", URL_HINT) from exc


def _sqlite_engine(target: Target) -> Engine:
    options: dict[str, Any] = {"json_serializer": json_dumps}
    if target.memory:
        options["poolclass"] = StaticPool
        options["connect_args"] = {"check_same_thread": False}
    else:
        options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    engine = create_engine(target.url, **options)
    memory = target.memory

    @event.listens_for(engine, "connect")
    def _sqlite_connect(dbapi_connection: Any, _record: object) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN, see _sqlite_begin
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@dataclass(slots=True)
class SqliteFootprint:
    """What opening a SQLite file created on disk, so that a failed open can remove it again."""

    path: Path
    created_dirs: list[Path] = field(default_factory=list)
    file_existed: bool = True

    def prepare(self, target: Target) -> None:
        """Create the database's folder; refuse early when it cannot be created or written."""
        parent = self.path.parent
        if self.path.exists() and not self.path.is_file():
            raise StoreUnavailable(f"database {target.label!r}: {self.path} is not a file", target.hint)
        existing = parent
        missing: list[Path] = []
        while not existing.exists():
            missing.append(existing)
            existing = existing.parent
        # Check before creating anything: a failed open should leave no half-made folders.
        if not existing.is_dir():
            raise StoreUnavailable(
                f"database {target.label!r}: cannot create folder {parent}, {existing} is not a folder",
                target.hint,
            )
        if not os.access(existing, os.W_OK | os.X_OK) and (missing or not self.path.exists()):
            raise StoreUnavailable(
                f"database {target.label!r}: folder {existing} is not writable", target.hint
            )
        self.file_existed = self.path.exists()
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except OSError as exc:
                self.undo()
                raise StoreUnavailable(
                    f"database {target.label!r}: cannot create folder {folder}: {exc.strerror}", target.hint
                ) from exc
            self.created_dirs.append(folder)

    def undo(self) -> None:
        """Remove the database file (if this open created it) and the folders made for it."""
        if not self.file_existed:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        for folder in reversed(self.created_dirs):
            try:
                folder.rmdir()
            except OSError:
                break  # someone else put something there: leave it
        self.created_dirs.clear()
