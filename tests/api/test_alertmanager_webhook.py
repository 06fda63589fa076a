"""POST /v1/haven/alertmanager in the API app, in process, over a real SQLite store and haven serve's own
explainer (haven.service.explaining.Explaining, running): Alertmanager's bearer token admitted on this path
only; a payload explained once and stored with its cause; bad payloads a 400 naming the field and nothing
stored; a follower's and a not-yet-running explainer's 503, no explainer's 409; fuzzed, never a 5xx.
The real Alertmanager delivering to a real haven serve is tests/api/test_alertmanager_webhook_real.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from haven.api.app import create_app
from haven.api.routes.haven_alertmanager import ALERTMANAGER_PATH, AlertmanagerReceiver, attach_alertmanager
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, NodeEvent
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import RealClock
from haven.explain.config import DiagnosisConfig
from haven.explain.explainer import Explainer
from haven.service.explaining import Explaining
from haven.store import Store
from haven.topology import openstack_topology

from .conftest import AUTH, TOKEN, FakeIntake

BEARER = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Follower:
    identity: str = "engine-2"
    backend: str = "etcd"

    def is_leader(self) -> bool:
        return False


def payload(*alerts: dict[str, Any], **top: Any) -> dict[str, Any]:
    """What Alertmanager 0.25 posts (webhook version 4)."""
    return {
        "receiver": "haven",
        "status": "firing",
        "alerts": list(alerts),
        "groupLabels": {"alertname": "HavenCanaryFailing"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "version": "4",
        "groupKey": '{}:{alertname="HavenCanaryFailing"}',
        "truncatedAlerts": 0,
        **top,
    }


def canary_alert(at: float, **over: Any) -> dict[str, Any]:
    started = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return {
        "status": "firing",
        "labels": {"alertname": "HavenCanaryFailing", "zone": "az1", "severity": "warning"},
        "annotations": {"summary": "The latest canary boot in zone az1 failed or was slow"},
        "startsAt": started,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "4f1c9a2b7d3e5f60",
        **over,
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path}/haven.db")
    yield opened
    opened.close()


@pytest.fixture
async def explaining(store: Store) -> AsyncIterator[Explaining]:
    """haven serve's explainer, running as it does while the engine leads."""
    running = Explaining(DiagnosisConfig(), CATALOGUE.values())
    stop = asyncio.Event()
    task = asyncio.create_task(running.run(store, RealClock(), stop))
    for _ in range(100):
        if await running.take_alertmanager({"alerts": []}) is not None:
            break
        await asyncio.sleep(0.01)
    yield running
    stop.set()
    await asyncio.wait_for(task, 10)


@dataclass
class Attached:
    """An explainer attached as is (haven serve attaches its Explaining, which forwards while it runs)."""

    explainer: Explainer

    async def take_alertmanager(self, payload: object) -> list[ExplanationRecord]:
        return await self.explainer.take_alertmanager(payload)


def app_of(store: Store, receiver: AlertmanagerReceiver | None, **kwargs: Any) -> FastAPI:
    clock = RealClock()
    app = create_app(store, FakeIntake(store, clock), TOKEN, clock, **kwargs)  # type: ignore[arg-type]
    attach_alertmanager(app, receiver)
    return app


def client_of(app: FastAPI, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://haven", headers=headers)


async def test_an_alert_is_explained_once_from_the_stored_evidence(
    store: Store, explaining: Explaining
) -> None:
    now = time.time()
    store.keep_evidence(
        {"cp:1": NodeEvent("mariadb", EvidenceKind.ERROR, now - 40, "its sql probe failed", "cp:sql:c1")}, now
    )
    async with client_of(app_of(store, explaining), BEARER) as am:
        answer = await am.post(ALERTMANAGER_PATH, json=payload(canary_alert(now - 20)))
        assert answer.status_code == 200, answer.text
        (shown,) = answer.json()["explanations"]
        again = await am.post(ALERTMANAGER_PATH, json=payload(canary_alert(now - 20)))  # Alertmanager repeats
        assert again.status_code == 200 and again.json()["explanations"] == [shown]
    (stored,) = store.list_explanations()  # judged from the store: one record, done, the cause ranked first
    assert stored.id == shown["id"] and stored.source == "alertmanager:HavenCanaryFailing"
    assert stored.subject == "az1" and stored.diagnosis is not None
    assert stored.diagnosis.explanations[0].node == "mariadb"


async def test_the_bearer_token_is_read_on_this_path_only(store: Store, explaining: Explaining) -> None:
    app = app_of(store, explaining)
    body = payload(canary_alert(time.time(), status="resolved"))
    async with client_of(app, {"Authorization": "Bearer not-the-token"}) as wrong:
        assert (await wrong.post(ALERTMANAGER_PATH, json=body)).status_code == 401
    async with client_of(app, {"Authorization": f"Basic {TOKEN}"}) as basic:
        assert (await basic.post(ALERTMANAGER_PATH, json=body)).status_code == 401
    async with client_of(app, BEARER) as bearer:
        assert (await bearer.post(ALERTMANAGER_PATH, json=body)).json() == {"explanations": []}  # resolved
        assert (await bearer.get("/v1/segments")).status_code == 401  # X-Auth-Token there, as before
    async with client_of(app, AUTH) as token:
        assert (await token.post(ALERTMANAGER_PATH, json=body)).status_code == 200
    assert store.list_explanations() == []


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ([], "Invalid input for field/attribute body"),
        (payload(canary_alert(0), version="3"), "field/attribute version. Input should be '4'"),
        ({"version": "4"}, "field/attribute alerts. Field required"),
        (payload(canary_alert(0, labels={"alertname": 7})), "field/attribute alerts.0.labels.alertname"),
        (payload(canary_alert(0, labels=None)), "field/attribute alerts.0.labels"),
        (payload(canary_alert(0, annotations=["a"])), "field/attribute alerts.0.annotations"),
        (
            payload(canary_alert(0, startsAt="yesterday")),
            "alerts.0.startsAt. Value error, 'yesterday' is not",
        ),
        (payload(canary_alert(0, status="pending")), "field/attribute alerts.0.status"),
        (payload(canary_alert(0), alerts=[canary_alert(0)] * 1001), "field/attribute alerts. List should"),
    ],
)
async def test_a_payload_that_is_not_alertmanagers_is_a_400_naming_the_field(
    store: Store, explaining: Explaining, body: Any, said: str
) -> None:
    async with client_of(app_of(store, explaining), BEARER) as am:
        answer = await am.post(ALERTMANAGER_PATH, json=body)
    assert answer.status_code == 400, answer.text
    assert said in answer.json()["badRequest"]["message"]
    assert store.list_explanations() == []


async def test_not_json_is_a_400(store: Store, explaining: Explaining) -> None:
    async with client_of(app_of(store, explaining), BEARER) as am:
        answer = await am.post(
            ALERTMANAGER_PATH, content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 400 and answer.json()["badRequest"]["message"] == "Malformed request body"


async def test_a_follower_answers_503_and_explains_nothing(store: Store, explaining: Explaining) -> None:
    async with client_of(app_of(store, explaining, leadership=Follower()), BEARER) as am:
        answer = await am.post(ALERTMANAGER_PATH, json=payload(canary_alert(time.time())))
    assert answer.status_code == 503
    assert "engine-2) is not the leader" in answer.json()["serviceUnavailable"]["message"]
    assert store.list_explanations() == []


async def test_no_explainer_running_is_a_503_and_none_configured_a_409(store: Store) -> None:
    body = payload(canary_alert(time.time()))
    idle = Explaining(DiagnosisConfig(), CATALOGUE.values())  # built, not running (not leading yet)
    async with client_of(app_of(store, idle), BEARER) as am:
        answer = await am.post(ALERTMANAGER_PATH, json=body)
    assert answer.status_code == 503 and "explainer is not running" in answer.text
    async with client_of(app_of(store, None), BEARER) as am:
        answer = await am.post(ALERTMANAGER_PATH, json=body)
    assert answer.status_code == 409 and "[diagnosis] alertmanager_url" in answer.text
    assert store.list_explanations() == []


@pytest.mark.slow
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_fuzzed_payloads_never_make_a_server_error(store: Store, mode: schemathesis.GenerationMode) -> None:
    """Schemathesis from the route's own OpenAPI description, with a real explainer attached (valid
    payloads reach take_alertmanager and are explained, not refused with the 409)."""
    app = app_of(store, Attached(Explainer(store, openstack_topology(CATALOGUE.values()), RealClock())))
    operation = schemathesis.openapi.from_asgi("/openapi.json", app)[ALERTMANAGER_PATH]["POST"]

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=BEARER, checks=[not_a_server_error])

    fuzz()
