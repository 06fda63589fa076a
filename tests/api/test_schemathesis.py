"""Property-based fuzzing of every documented operation from /openapi.json: no input makes a 5xx.

Schemathesis reads the schema the app serves and generates requests for each
operation, valid ones and invalid ones, sent with the token; the only check is that
the server never answers 5xx. The store is seeded with a segment (whose uuid some
path parameters get) and two hosts, so not every request stops at a 404.
(Schemathesis' own pytest plugin does not run on pytest 9, hence the loop by hand.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from haven.api.app import create_app
from haven.api.context import DrillLimits
from haven.domain.clock import VirtualClock
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Segment, SegmentHost
from haven.store import Store

from .conftest import AUTH, TOKEN, FakeIntake

SEGMENT = uuid.UUID(int=7)
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


def _operations() -> list[tuple[str, str, schemathesis.GenerationMode]]:
    """(method, path, mode) of every documented operation, read from the app's own schema.

    Invalid requests exist only for operations with a body or query parameters.
    """
    store = Store.open("sqlite://")
    try:
        clock = VirtualClock()
        paths = create_app(store, FakeIntake(store, clock), TOKEN, clock).openapi()["paths"]
    finally:
        store.close()
    return [
        (method.upper(), path, mode)
        for path, item in sorted(paths.items())
        for method, operation in sorted(item.items())
        for mode in MODES
        if mode is schemathesis.GenerationMode.POSITIVE or _can_be_invalid(operation)
    ]


def _can_be_invalid(operation: dict[str, Any]) -> bool:
    """A body or a query parameter can be wrong; a string path parameter cannot."""
    return "requestBody" in operation or any(p["in"] != "path" for p in operation.get("parameters", ()))


@pytest.fixture
def seeded_app(tmp_path: Path) -> Iterator[FastAPI]:
    store = Store.open(f"sqlite:///{tmp_path}/haven.db")
    clock = VirtualClock()
    segment = store.create_segment(Segment(SegmentId(SEGMENT.hex), "rack-1"))
    store.add_hosts([SegmentHost(HostName(f"compute-{i}"), segment.id) for i in (1, 2)])
    # Small drill limits: POST /v1/haven/drills is fuzzed too, and each accepted one runs a drill (~40 ms).
    limits = DrillLimits(max_hosts=12, max_vms=40, keep=3)
    yield create_app(store, FakeIntake(store, clock), TOKEN, clock, drill_limits=limits)
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_no_input_makes_a_server_error(
    seeded_app: FastAPI, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    operation = schemathesis.openapi.from_asgi("/openapi.json", seeded_app)[path][method]
    known_segment = {"segment_id": str(SEGMENT)} if "{segment_id}" in path else None
    strategy = st.one_of(
        operation.as_strategy(mode),
        operation.as_strategy(mode, path_parameters=known_segment) if known_segment else st.nothing(),
    )

    @given(case=strategy)
    @settings(
        max_examples=30,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

    fuzz()
