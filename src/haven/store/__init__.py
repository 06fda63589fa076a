"""haven's state database: segments, hosts, notifications with their steps, and alerts.

Everything above the store (detection, recovery, service, api, cli) uses
``Store`` and the domain dataclasses; only this package imports SQLAlchemy
and Alembic. Open with ``Store.open(url)``: SQLite by default, PostgreSQL
by URL; the schema is migrated to the newest revision on open.
"""

from haven.store.store import Store

__all__ = ["Store"]
