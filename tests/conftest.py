"""Session-wide test plugins.

The throw-away PostgreSQL server's fixtures (``postgres_server``, ``postgres_url``)
are registered here once, so tests outside tests/store (the engine's resume test)
can run on PostgreSQL too, and the session still starts a single server.
"""

import importlib.util

pytest_plugins = ["store.postgres_server"]
# The real Nova lab (tests/servers/nova.py), once it exists: one session-wide nova_lab for every folder
# (tests/cloud/contract runs the Cloud contract on it), instead of one lab per conftest that imports it.
if importlib.util.find_spec("servers.nova") is not None:
    pytest_plugins.append("servers.nova")
