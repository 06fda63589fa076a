"""A throw-away PostgreSQL server for tests, as session fixtures.

``postgres_server`` starts a real server from Debian's binaries
(/usr/lib/postgresql/<version>/bin) in a temporary folder, listening only on
127.0.0.1 on a free port with trust authentication, and stops and removes it
at the end of the session. ``postgres_url`` is a database created on it for
the session; a test that needs an empty database of its own calls
``postgres_server.create_schema(SESSION_DATABASE)`` (milliseconds) and
``url_for(SESSION_DATABASE, schema)``, or ``create_database()`` (0.3 s).

Running as root (as in CI), the server runs as the ``postgres`` system user
through ``runuser``, since PostgreSQL refuses to run as root.

Without the binaries the fixtures skip, unless the CI environment variable is
set: then they fail, because CI must run the PostgreSQL tests
(``make system-deps`` installs them).

tests/store/conftest.py imports these fixtures. To use them elsewhere, register
this module as a plugin in the top-level tests/conftest.py:
``pytest_plugins = ["store.postgres_server"]`` (and drop the import from
tests/store/conftest.py, so that the session has one server, not two).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from haven.lab.postgres import POSTGRES_ROOT, PostgresServer, find_bindir

__all__ = ["SESSION_DATABASE", "PostgresServer", "postgres_server", "postgres_url"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bindir = find_bindir()
    if bindir is None:
        message = (
            f"PostgreSQL server binaries not found under {POSTGRES_ROOT}/*/bin "
            "(install them: apt-get install postgresql, or make system-deps)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the PostgreSQL tests must run: {message}", pytrace=False)
        pytest.skip(message)
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


SESSION_DATABASE = "haven_test"


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a database created on the session's server, shared by the whole session."""
    return postgres_server.url_for(postgres_server.create_database(SESSION_DATABASE))
