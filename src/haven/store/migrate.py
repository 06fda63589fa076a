"""Bringing a database's schema to the newest revision this haven knows, with Alembic.

Called by Store.open on every open, so an upgraded haven upgrades its
database the first time it starts. The check is cheap when nothing is to be
done (one read of ``alembic_version``). Concurrent opens are serialised: on
PostgreSQL by a transaction-scoped advisory lock, on SQLite by BEGIN
IMMEDIATE; the second opener then finds the schema already current.

The migrations live in the package (``migrations/``), so no alembic.ini is
needed on disk; ``alembic_config`` builds the configuration in memory, and can
also be used to author a new revision from a Python prompt.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, func, select

from haven.domain.errors import StoreUnavailable
from haven.store.engine import WRITE_OPTION

MIGRATIONS = Path(__file__).with_name("migrations")

# pg_advisory_xact_lock key: "haven" in ASCII, so that it is recognisable in pg_locks.
_ADVISORY_LOCK_KEY = 0x686176656E


def alembic_config(url: str | None = None) -> Config:
    """An in-memory Alembic configuration pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest schema revision this haven knows."""
    revision = _scripts().get_current_head()
    assert revision is not None, "haven.store.migrations has no revisions"
    return revision


def upgrade_to_head(engine: Engine, label: str) -> None:
    """Upgrade the schema behind ``engine`` to head in one transaction; refuse a schema from a newer haven."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(select(func.pg_advisory_xact_lock(_ADVISORY_LOCK_KEY)))
            current = set(MigrationContext.configure(conn).get_current_heads())
            if current == {head()}:
                return
            _refuse_unknown(current, label)
            _upgrade(conn)


def _refuse_unknown(current: set[str], label: str) -> None:
    for revision in sorted(current):
        try:
            known = _scripts().get_revision(revision) is not None
        except CommandError:
            known = False
        if not known:
            raise StoreUnavailable(
                f"database {label!r} has schema revision {revision!r}, which this haven does not know "
                f"(it knows up to {head()!r}); it was probably written by a newer haven",
                "run the newer haven, or point HAVEN at another database",
            )


def _upgrade(conn: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn  # env.py migrates on this connection, in this transaction
    command.upgrade(config, "head")
