"""Fixtures for the engine-HA tests: the real etcd (tests/servers/etcd.py) and empty PostgreSQL stores.

PostgreSQL's fixtures come from the session plugin (tests/conftest.py); ``pg_store_url`` makes a
fresh schema on the session's server for each call, dropped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from servers.etcd import etcd, etcd_server  # noqa: F401
from store.postgres_server import SESSION_DATABASE, PostgresServer


@pytest.fixture
def pg_store_url(postgres_server: PostgresServer, postgres_url: str) -> Iterator[Callable[[], str]]:
    schemas: list[str] = []

    def make() -> str:
        schemas.append(postgres_server.create_schema(SESSION_DATABASE))
        return postgres_server.url_for(SESSION_DATABASE, schemas[-1])

    yield make
    for schema in schemas:
        postgres_server.drop_schema(SESSION_DATABASE, schema)
