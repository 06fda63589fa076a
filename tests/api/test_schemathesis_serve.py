"""Fuzzing a real `haven serve` (real engine, simulated cloud, SQLite store): no request gets a 5xx.

test_schemathesis.py fuzzes the app over a fake intake; here the target is the command operators
run, started as a process by tests/clients (the same wiring: the engine ticking in real time on
the simulated cloud of 30 hosts, its SQLite state, the API in the same event loop, the local
token). Two passes:

- every operation documented in /openapi.json, valid and invalid requests. Before each, a fresh
  segment in notify mode with two hosts and an open notification on one of them is created through
  the API, and path parameters are drawn from those ids as well as at random, so requests reach
  past the 404s: custom recovery's claim/progress/finish/fail meet a notification that awaits an
  owner, PUT and DELETE meet real segments and hosts.
- a stateful run: schemathesis chains operations along the links it infers from the schema
  (POST /v1/segments -> GET/PUT/DELETE /v1/segments/{segment_id} -> POST .../hosts -> ...).

Besides the answers, the server must survive: no traceback in its log, and a clean stop at the end
(start_haven checks the exit status and "stopped cleanly"). Budget: max_examples below keeps the
module near a minute on 2 cores; bench/fuzz_serve.py runs the same passes longer.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error

from clients.conftest import HavenServer, start_haven

from .fuzz_printable import printable as printable_text
from .test_schemathesis import _operations

pytestmark = pytest.mark.slow

# Scaled by HAVEN_FUZZ_SCALE (bench/fuzz_serve.py sets it) for longer runs of the same passes.
SCALE = int(os.environ.get("HAVEN_FUZZ_SCALE", "1"))
EXAMPLES_PER_OPERATION = 15 * SCALE
STATEFUL_RUNS = 4 * SCALE
STATEFUL_EXAMPLES = 10
STATEFUL_STEPS = 10
_fresh = itertools.count(1)

SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    home = tmp_path_factory.mktemp("fuzz") / "home"
    running: list[HavenServer] = []
    for started in start_haven(home):
        running.append(started)
        yield started
    log = running[0].log.read_text()
    assert "Traceback" not in log, log  # an error the API turned into a 4xx, or a task that died


@pytest.fixture(scope="module")
def schema(server: HavenServer) -> Any:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


@pytest.fixture(scope="module")
def printable(server: HavenServer) -> Any:
    """The served schema with Masakari's links added, generating valid printable requests only.

    Valid, because most generated strings are refused otherwise: haven takes printable text only,
    which its schema does not say (see fuzz_printable). Links, because haven's schema declares none
    and the ones Schemathesis infers take a segment's integer ``id`` for the ``{segment_id}`` of
    the next call, where Masakari's URLs (and haven's) take the ``uuid``: every chain then ends in a
    404. The links below are Masakari's: an object created is addressed by its uuid.
    """
    raw = httpx.get(f"{server.url}/openapi.json", timeout=30).json()
    _link(
        raw,
        ("POST", "/v1/segments", "201"),
        {"segment_id": "$response.body#/segment/uuid"},
        [
            ("GET", "/v1/segments/{segment_id}"),
            ("PUT", "/v1/segments/{segment_id}"),
            ("DELETE", "/v1/segments/{segment_id}"),
            ("GET", "/v1/segments/{segment_id}/hosts"),
            ("POST", "/v1/segments/{segment_id}/hosts"),
            ("POST", "/v1/haven/segments/{segment_id}/release"),
        ],
    )
    _link(
        raw,
        ("POST", "/v1/segments/{segment_id}/hosts", "201"),
        {"segment_id": "$request.path.segment_id", "host_id": "$response.body#/host/uuid"},
        [(m, "/v1/segments/{segment_id}/hosts/{host_id}") for m in ("GET", "PUT", "DELETE")],
    )
    _link(
        raw,
        ("POST", "/v1/notifications", "202"),
        {"notification_id": "$response.body#/notification/notification_uuid"},
        [
            ("GET", "/v1/notifications/{notification_id}"),
            ("GET", "/v1/notifications/{notification_id}/vmoves"),
            *[
                ("POST", f"/v1/notifications/{{notification_id}}/{verb}")
                for verb in ("claim", "progress", "finish", "fail")
            ],
        ],
    )
    _link(raw, ("POST", "/v1/haven/drills", "201"), {"drill_id": "$response.body#/id"},
          [("GET", "/v1/haven/drills/{drill_id}")])  # fmt: skip
    schema = schemathesis.openapi.from_dict(raw)
    schema.config.update(base_url=server.url)
    schema.config.generation.update(
        codec="ascii", allow_x00=False, modes=[schemathesis.GenerationMode.POSITIVE]
    )

    @schema.hook
    def map_body(context: Any, body: Any) -> Any:
        return printable_text(body)

    return schema


def _link(
    raw: dict[str, Any],
    source: tuple[str, str, str],
    parameters: dict[str, str],
    targets: list[tuple[str, str]],
) -> None:
    method, path, status = source
    responses = raw["paths"][path][method.lower()]["responses"]
    links = responses.setdefault(status, {"description": ""}).setdefault("links", {})
    for target_method, target_path in targets:
        target = raw["paths"][target_path][target_method.lower()]
        wanted = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
        links[target["operationId"]] = {
            "operationId": target["operationId"],
            "parameters": {name: value for name, value in parameters.items() if name in wanted},
        }


def auth(server: HavenServer) -> dict[str, str]:
    # The newest microversion: fields such as a segment's `enabled` are refused in older ones.
    return {"X-Auth-Token": server.token, "OpenStack-API-Version": "instance-ha 1.3"}


@pytest.fixture
def known(server: HavenServer) -> dict[str, str]:
    """Ids of a fresh notify-mode segment, its first host and an open notification on that host."""
    n = next(_fresh)
    with httpx.Client(base_url=f"{server.url}/v1", headers=auth(server), timeout=30) as api:
        segment = _created(
            api.post(
                "/segments",
                json={
                    "segment": {
                        "name": f"fuzz-{n}",
                        "recovery_method": "auto",
                        "service_type": "COMPUTE",
                        "haven_mode": "notify",
                    }
                },
            )
        )["segment"]
        hosts = [
            _created(
                api.post(f"/segments/{segment['uuid']}/hosts", json={"host": {"name": f"fuzz-{n}-{i}",
                         "type": "COMPUTE", "control_attributes": "SSH"}})
            )["host"]
            for i in (1, 2)
        ]  # fmt: skip
        notification = _created(
            api.post(
                "/notifications",
                json={
                    "notification": {
                        "type": "COMPUTE_HOST",
                        "hostname": hosts[0]["name"],
                        "generated_time": "2026-12-05T10:00:00",
                        "payload": {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"},
                    }
                },
            )
        )["notification"]
    return {
        "segment_id": segment["uuid"],
        "host_id": hosts[0]["uuid"],
        "notification_id": notification["notification_uuid"],
    }


def _created(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code in (201, 202), answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_the_served_schema_documents_the_operations_fuzzed_here(schema: Any) -> None:
    live = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert live == {(method, path) for method, path, _ in _operations()}


@pytest.mark.parametrize(("method", "path", "mode"), _operations())
def test_no_input_makes_a_server_error(
    server: HavenServer,
    schema: Any,
    printable: Any,
    known: Mapping[str, str],
    method: str,
    path: str,
    mode: schemathesis.GenerationMode,
) -> None:
    operation = schema[path][method]
    ours = {name: value for name, value in known.items() if "{" + name + "}" in path}
    strategy = st.one_of(
        operation.as_strategy(mode),
        operation.as_strategy(mode, path_parameters=ours) if ours else st.nothing(),
        printable[path][method].as_strategy(path_parameters=ours or None)
        if mode is schemathesis.GenerationMode.POSITIVE
        else st.nothing(),
    )
    headers = auth(server)

    @given(case=strategy)
    @settings(SETTINGS, max_examples=EXAMPLES_PER_OPERATION)
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=[not_a_server_error])

    fuzz()


def test_chained_operations_make_no_server_error(server: HavenServer, printable: Any) -> None:
    headers = auth(server)
    base = printable.as_state_machine()
    server_errors: list[str] = []
    reached: Counter[str] = Counter()  # 2xx answers to operations on an id: only a chain gives one

    class Chains(base):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"headers": headers}

        def validate_response(self, response: requests.Response, case: schemathesis.Case, **_: Any) -> None:
            label = f"{case.method} {case.operation.path}"
            if response.status_code >= 500:
                server_errors.append(f"{label} {case.path_parameters} {case.body!r} -> "
                                     f"{response.status_code} {response.text[:300]}")  # fmt: skip
            elif response.status_code < 300 and "{" in case.operation.path:
                reached[label] += 1

    # The 5xx are collected rather than raised, and each run is short: the server's state moves
    # on between chains (the engine ticks, earlier chains left segments), so Hypothesis, replaying
    # a chain, may see the same draws lead elsewhere and stop with FlakyStrategyDefinition. Such a
    # run just ends; what it found is already in server_errors.
    flaky = 0
    for _ in range(STATEFUL_RUNS):
        try:
            Chains.run(
                settings=settings(
                    SETTINGS,
                    max_examples=STATEFUL_EXAMPLES,
                    stateful_step_count=STATEFUL_STEPS,
                    phases=[Phase.generate],
                )
            )
        except FlakyStrategyDefinition:
            flaky += 1
    assert not server_errors, "\n".join(server_errors)
    assert flaky < STATEFUL_RUNS, "every run stopped as flaky: the chains did not run"
    assert sum(reached.values()) >= 10, f"the chains hardly got past creating something: {dict(reached)}"


def test_the_server_still_answers(server: HavenServer) -> None:
    assert server.proc.poll() is None
    status = httpx.get(f"{server.url}/v1/haven/status", headers=auth(server), timeout=30)
    assert status.status_code == 200, status.text
    assert Path(server.home / "haven.db").exists()
