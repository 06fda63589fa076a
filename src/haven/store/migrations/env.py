"""Alembic environment for haven's schema.

Run by haven.store.migrate (from Store.open) with a live connection in
``config.attributes["connection"]``, so the upgrade happens inside the
caller's transaction and under its lock. It also runs from the alembic command
line for authoring a new revision, given a ``sqlalchemy.url`` (see
haven.store.migrate.alembic_config).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from haven.store.tables import metadata


def _run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    if not url:
        raise RuntimeError("set sqlalchemy.url (or pass a connection) to run haven's migrations")
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _run_on(conn)
            conn.commit()
    finally:
        engine.dispose()


_main()
