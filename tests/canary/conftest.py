"""The canary tests' shared fixture: an empty store in memory (SQLite), closed after the test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haven.store import Store


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open("sqlite://")
    yield opened
    opened.close()
