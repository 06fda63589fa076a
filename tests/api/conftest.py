"""Fixtures of the API tests: the real app over a real SQLite store, with a recording fake engine.

``FakeIntake`` stands in for the engine at this edge only: ``submit`` opens the
notification in the store (refusing an identical open one, as the engine does), so the
API can read it back; ``reload_membership`` calls are counted; ``custom`` is the real
custom recovery over the same store, its events recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from haven.api.app import create_app
from haven.domain.clock import VirtualClock
from haven.domain.errors import NotFound
from haven.domain.events import EngineEvent
from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import UNFINISHED_STATUSES, Notification, NotificationStatus, NotificationType
from haven.recovery.custom import CustomRecovery
from haven.store import Store

TOKEN = "s3cret-token"
AUTH = {"X-Auth-Token": TOKEN}
OPEN = UNFINISHED_STATUSES


class FakeIntake:
    def __init__(self, store: Store, clock: VirtualClock) -> None:
        self.store = store
        self.clock = clock
        self.submitted: list[tuple[NotificationType, HostName, dict[str, Any]]] = []
        self.reloads = 0
        self.events: list[EngineEvent] = []
        self.custom = CustomRecovery(store, clock, self.events.append)

    def submit(
        self,
        type_: NotificationType,
        host: HostName,
        payload: Mapping[str, Any],
        generated_at: float | None = None,
    ) -> Notification | None:
        self.submitted.append((type_, host, dict(payload)))
        for open_one in self.store.list_notifications(statuses=OPEN, type=type_, hostname=host):
            if dict(open_one.payload) == dict(payload):
                return None
        try:
            segment_id = self.store.get_host(host).segment_id
        except NotFound:
            segment_id = None
        now = self.clock.now()
        notification = Notification(
            NotificationId(str(uuid.uuid4())),
            type_,
            host,
            NotificationStatus.NEW,
            dict(payload),
            generated_at=now if generated_at is None else generated_at,
            created_at=now,
            updated_at=now,
            segment_id=segment_id,
        )
        self.clock.advance_to(now + 1.0)  # distinct created_at, so the default order is defined
        return self.store.create_notification(notification)

    def reload_membership(self) -> None:
        self.reloads += 1


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path}/haven.db")
    yield opened
    opened.close()


@pytest.fixture
def intake(store: Store, clock: VirtualClock) -> FakeIntake:
    return FakeIntake(store, clock)


@pytest.fixture
def app(store: Store, intake: FakeIntake, clock: VirtualClock) -> FastAPI:
    return create_app(store, intake, TOKEN, clock)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://haven", headers=AUTH) as http:
        yield http


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://haven") as http:
        yield http


def version(v: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"instance-ha {v}"}


async def make_segment(client: httpx.AsyncClient, name: str = "rack-1", **fields: Any) -> dict[str, Any]:
    body = {"name": name, "recovery_method": "auto", "service_type": "COMPUTE", **fields}
    response = await client.post("/v1/segments", json={"segment": body}, headers=version("1.2"))
    assert response.status_code == 201, response.text
    segment: dict[str, Any] = response.json()["segment"]
    return segment


async def make_host(
    client: httpx.AsyncClient, segment_uuid: str, name: str = "compute-1", **fields: Any
) -> dict[str, Any]:
    body = {"name": name, "type": "COMPUTE", "control_attributes": "SSH", **fields}
    response = await client.post(f"/v1/segments/{segment_uuid}/hosts", json={"host": body})
    assert response.status_code == 201, response.text
    host: dict[str, Any] = response.json()["host"]
    return host


def host_failure(hostname: str = "compute-1", event: str = "STOPPED") -> dict[str, Any]:
    return {
        "notification": {
            "type": "COMPUTE_HOST",
            "hostname": hostname,
            "generated_time": "2027-01-15T08:00:00.000000",
            "payload": {"event": event, "host_status": "NORMAL", "cluster_status": "OFFLINE"},
        }
    }
