"""Session-wide test plugins.

The throw-away PostgreSQL server's fixtures (``postgres_server``, ``postgres_url``)
are registered here once, so tests outside tests/store (the engine's resume test)
can run on PostgreSQL too, and the session still starts a single server.
"""

pytest_plugins = ["store.postgres_server"]
