"""The Publisher with a real store (SQLite file) and a real webhook receiver: engine events become
published events once each, are kept in the outbox, and reach the receiver through failures, outages
and restarts; a permanent refusal is kept and not retried."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from haven.domain.clock import RealClock
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Notification, NotificationStatus
from haven.notify import (
    CLAIM,
    NOTIFICATION_CREATE,
    PROGRESS,
    RECOVERY_END,
    RECOVERY_ERROR,
    RECOVERY_START,
    Publisher,
    PublishSettings,
)
from haven.notify.webhook import WebhookSink
from haven.recovery.custom import CustomRecovery
from haven.store import Store
from store.builders import notification as build_notification

from .conftest import SECRET
from .receiver import WebhookReceiver

FAST = PublishSettings(
    first_retry_s=0.05, max_retry_s=0.4, attempt_timeout_s=2.0, idle_wait_s=0.2, stop_grace_s=0.5
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path}/haven.db")
    yield opened
    opened.close()


def notification(store: Store, **fields: object) -> Notification:
    made = build_notification(
        "compute-7",
        created_at=time.time(),
        segment_id=SegmentId("seg-1"),
        payload={"event": "STOPPED", "host_status": "UNKNOWN", "recovery_mode": "automatic"},
        **fields,
    )
    return store.create_notification(made)


def engine_event(kind: EventKind, n: Notification, **detail: object) -> EngineEvent:
    return EngineEvent(kind, time.time(), HostName(n.hostname), n.segment_id, n.id, detail)


@contextlib.asynccontextmanager
async def running(publisher: Publisher) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(publisher.run(stop))
        try:
            yield stop
        finally:
            stop.set()


def publisher(store: Store, url: str, settings: PublishSettings = FAST) -> Publisher:
    return Publisher(store, [WebhookSink(url, SECRET)], RealClock(), settings)


async def until(receiver: WebhookReceiver, count: int, timeout_s: float = 10.0) -> list[str]:
    got = await asyncio.to_thread(receiver.wait_for, lambda r: len(r) >= count, timeout_s)
    return [r.event_type for r in got]


async def test_a_recovery_is_published_create_start_end_once_each_with_masakari_fields(
    store: Store, receiver: WebhookReceiver
) -> None:
    n = notification(store)
    pub = publisher(store, receiver.url)
    async with running(pub):
        pub.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
        pub.on_event(engine_event(EventKind.HOST_CONFIRMED_DEAD, n))  # not published
        for seq in range(3):  # every step starts; only the first one is the recovery's start
            pub.on_event(engine_event(EventKind.STEP_STARTED, n, seq=seq))
        summary = {"evacuated": 4, "planned": 4, "unplaced": [], "failures": []}
        finished = {**n.payload, "recovery": summary}
        store.save_progress(n.id, status=NotificationStatus.FINISHED, payload=finished, now=time.time())
        pub.on_event(engine_event(EventKind.NOTIFICATION_FINISHED, n, status="finished"))
        assert await until(receiver, 3) == [NOTIFICATION_CREATE, RECOVERY_START, RECOVERY_END]
    got = receiver.delivered()
    assert len(got) == 3 and all(r.signature_ok for r in got)
    create = got[0].body["payload"]
    assert create == {
        "notification_uuid": n.id,
        "type": "COMPUTE_HOST",
        "hostname": "compute-7",
        "status": "new",
        "payload": {"event": "STOPPED", "host_status": "UNKNOWN"},  # haven's own keys are not Masakari's
        "generated_time": create["generated_time"],
        "segment_uuid": "seg-1",
        "recovery_mode": "automatic",
    }
    assert len(create["generated_time"]) == len("2026-11-21T21:00:00.000000")
    end = got[2].body
    assert end["priority"] == "INFO"
    assert end["payload"]["outcome"] == "finished" and end["payload"]["summary"] == summary
    assert store.outbox_counts().pending == 0


async def test_a_failed_recovery_is_an_error_event(store: Store, receiver: WebhookReceiver) -> None:
    n = notification(store)
    store.save_progress(n.id, status=NotificationStatus.FAILED, now=time.time())
    pub = publisher(store, receiver.url)
    async with running(pub):
        pub.on_event(engine_event(EventKind.NOTIFICATION_FINISHED, n, status="failed"))
        assert await until(receiver, 1) == [RECOVERY_ERROR]
    body = receiver.delivered()[0].body
    assert (body["priority"], body["payload"]["outcome"]) == ("ERROR", "failed")


async def test_an_owners_claim_progress_and_finish_are_published_with_what_the_owner_said(
    store: Store, receiver: WebhookReceiver
) -> None:
    left = {"recovery_mode": "notify"}
    made = build_notification("compute-7", created_at=time.time(), segment_id=SegmentId("s"), payload=left)
    n = store.create_notification(made)
    pub = publisher(store, receiver.url)
    owner = CustomRecovery(store, RealClock(), pub.on_event)
    async with running(pub):
        owner.claim(n.id, "ops-bot")
        owner.progress(n.id, "ops-bot", "rebuilding", 40.0)
        owner.progress(n.id, "ops-bot", "rebuilding", 80.0)  # same words, still its own event
        owner.finish(n.id, "ops-bot", "done by the runbook")
        assert await until(receiver, 4) == [CLAIM, PROGRESS, PROGRESS, RECOVERY_END]
    reports = [r.body["payload"]["owner_report"] for r in receiver.delivered()]
    assert reports[1] == {"owner": "ops-bot", "message": "rebuilding", "percentage": 40.0}
    assert reports[2]["percentage"] == 80.0
    assert reports[3] == {"owner": "ops-bot", "message": "done by the runbook"}
    assert receiver.delivered()[3].body["payload"]["outcome"] == "finished"


async def test_server_errors_and_429_are_retried_until_taken(store: Store, receiver: WebhookReceiver) -> None:
    receiver.statuses = [503, 500, 429]
    n = notification(store)
    pub = publisher(store, receiver.url)
    async with running(pub):
        pub.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
        assert await until(receiver, 1) == [NOTIFICATION_CREATE]
    times = [float(r.headers["X-Haven-Timestamp"]) for r in receiver.received]
    assert [r.answered for r in receiver.received] == [503, 500, 429, 204]
    [delivery] = store.list_deliveries()
    assert delivery.attempts == 4 and delivery.delivered_at is not None and delivery.last_error is None
    assert times == sorted(times)


async def test_a_refusal_is_kept_and_not_retried(store: Store, receiver: WebhookReceiver) -> None:
    receiver.statuses = [400]
    n = notification(store)
    pub = publisher(store, receiver.url)
    async with running(pub):
        pub.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
        await asyncio.sleep(1.0)  # several passes and retry periods
    assert len(receiver.received) == 1
    [delivery] = store.list_deliveries()
    assert delivery.abandoned and delivery.delivered_at is None
    assert "400" in (delivery.last_error or "") and "not-for-logs" not in (delivery.last_error or "")


async def test_a_receiver_down_then_up_gets_the_event(store: Store, receiver: WebhookReceiver) -> None:
    receiver.stop()
    n = notification(store)
    pub = publisher(store, receiver.url)
    async with running(pub):
        pub.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
        await asyncio.sleep(0.5)
        [waiting] = store.list_deliveries()
        assert waiting.attempts >= 2 and waiting.delivered_at is None
        assert "ConnectError" in str(waiting.last_error)
        receiver.start()
        assert await until(receiver, 1) == [NOTIFICATION_CREATE]


async def test_undelivered_events_are_delivered_after_a_restart(
    store: Store, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    receiver.stop()
    n = notification(store)
    first = publisher(store, receiver.url)
    async with running(first):
        first.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
        first.on_event(engine_event(EventKind.STEP_STARTED, n, seq=0))
        await asyncio.sleep(0.2)
    assert store.outbox_counts().pending == 2
    store.close()  # haven stops (or crashes: the outbox is committed before any attempt)

    receiver.start()
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as reopened:
        second = publisher(reopened, receiver.url)
        async with running(second):
            # The engine resumes the recovery and starts its step again: not published twice.
            second.on_event(engine_event(EventKind.STEP_STARTED, n, seq=0))
            # Both were waiting on back-off; which one's retry comes first is not promised.
            assert sorted(await until(receiver, 2)) == sorted([NOTIFICATION_CREATE, RECOVERY_START])
            await asyncio.sleep(0.3)
        assert len(receiver.delivered()) == 2
        assert reopened.outbox_counts().pending == 0


async def test_an_event_is_abandoned_after_the_give_up_time(store: Store) -> None:
    n = notification(store)
    dead_url = "http://127.0.0.1:9/hook"  # the discard port: nothing listens
    pub = publisher(store, dead_url, dataclasses.replace(FAST, give_up_after_s=0.3))
    async with running(pub):
        pub.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
        await asyncio.sleep(1.2)
    [delivery] = store.list_deliveries()
    assert delivery.abandoned and str(delivery.last_error).startswith("gave up after")


async def test_stopping_does_not_wait_for_a_receiver_that_hangs(store: Store) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"
    pub = publisher(store, url, dataclasses.replace(FAST, attempt_timeout_s=30))
    n = notification(store)
    try:
        async with running(pub) as stop:
            pub.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            stop.set()
        assert time.monotonic() - started < FAST.stop_grace_s + 1.0
        assert store.outbox_counts().pending == 1  # kept for the next start
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_an_outbox_failure_never_reaches_the_engine(store: Store, receiver: WebhookReceiver) -> None:
    n = notification(store)
    pub = publisher(store, receiver.url)
    store.close()
    pub.on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))  # logged, not raised


def test_no_sink_means_nothing_is_kept(store: Store) -> None:
    n = notification(store)
    Publisher(store, [], RealClock()).on_event(engine_event(EventKind.NOTIFICATION_CREATED, n))
    assert store.list_deliveries() == []
