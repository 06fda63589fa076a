"""Fixtures of the store tests: the same tests run on SQLite and on a real PostgreSQL.

``store_url`` is parametrized over both backends: a fresh SQLite file under
a temporary folder, or a fresh schema in the session's PostgreSQL database
(marked ``postgres``, so ``-m "not postgres"`` runs SQLite only).
``postgres_store`` is for the few tests about PostgreSQL alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haven.store import Store

from .postgres_server import SESSION_DATABASE, PostgresServer

# postgres_server and postgres_url come from the plugin registered in tests/conftest.py.


@pytest.fixture
def postgres_schema_url(postgres_server: PostgresServer, postgres_url: str) -> Iterator[str]:
    """A fresh schema per test in the session's database: as isolated as a new database, 100 times faster."""
    schema = postgres_server.create_schema(SESSION_DATABASE)
    yield postgres_server.url_for(SESSION_DATABASE, schema)
    postgres_server.drop_schema(SESSION_DATABASE, schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store')}/state/haven.db"
    url: str = request.getfixturevalue("postgres_schema_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


@pytest.fixture
def postgres_store(postgres_schema_url: str) -> Iterator[Store]:
    opened = Store.open(postgres_schema_url)
    yield opened
    opened.close()
