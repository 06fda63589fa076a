"""Session-wide test plugins.

The throw-away PostgreSQL server's fixtures (``postgres_server``, ``postgres_url``)
are registered here once, so tests outside tests/store (the engine's resume test)
can run on PostgreSQL too, and the session still starts a single server. The same for the
real Nova lab (``nova_lab`` from servers.nova): tests/lab and the contract suite share one. And the
real Keystone (``keystone`` from servers.keystone): tests/auth and tests/dashboard/test_release.py
share one (each module that imported the fixture had its own, started again: 20 s more per module).
"""

pytest_plugins = ["store.postgres_server", "servers.nova", "servers.keystone"]
