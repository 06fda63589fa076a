"""The webhook sink against a real HTTP receiver: signed bodies; failures say whether a retry helps."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from haven.domain.publishing import Priority, PublishedEvent
from haven.notify.sinks import DeliveryError
from haven.notify.webhook import WebhookSink, safe_url, signature, verify
from servers.process import free_port

from .conftest import SECRET
from .receiver import WebhookReceiver


def event() -> PublishedEvent:
    payload = {"notification_uuid": "n-1", "hostname": "compute-7", "payload": {"event": "STOPPED"}}
    return PublishedEvent("e-1", "n-1/haven.notification.create", "haven.notification.create",
                          Priority.INFO, payload, 1_800_000_000.25)  # fmt: skip


async def test_the_body_is_the_event_and_the_signature_verifies(receiver: WebhookReceiver) -> None:
    sink = WebhookSink(receiver.url, SECRET)
    try:
        await sink.deliver(event())
    finally:
        await sink.aclose()
    [got] = receiver.delivered()
    assert got.signature_ok
    assert got.path == "/hooks/haven?token=not-for-logs"
    assert got.headers["X-Haven-Event"] == "haven.notification.create"
    assert got.headers["X-Haven-Event-Id"] == "e-1"
    assert got.body == {
        "id": "e-1",
        "event_type": "haven.notification.create",
        "priority": "INFO",
        "timestamp": 1_800_000_000.25,
        "payload": dict(event().payload),
    }


async def test_a_receiver_with_another_secret_sees_a_bad_signature(receiver: WebhookReceiver) -> None:
    sink = WebhookSink(receiver.url, b"another secret")
    await sink.deliver(event())
    await sink.aclose()
    assert receiver.delivered()[0].signature_ok is False


def test_verify_refuses_a_changed_body_and_an_old_timestamp() -> None:
    body = json.dumps({"a": 1}).encode()
    now = time.time()
    stamp = str(int(now))
    signed = signature(SECRET, stamp, body)
    assert verify(SECRET, stamp, body, signed, now)
    assert not verify(SECRET, stamp, body + b" ", signed, now)
    assert not verify(SECRET, stamp, body, signed, now + 301)  # a replay, five minutes later
    assert not verify(SECRET, "yesterday", body, signed, now)


@pytest.mark.parametrize(
    ("status", "retry", "retry_after"),
    [(503, True, None), (500, True, None), (429, True, 0.0), (400, False, None), (404, False, None),
     (301, False, None)],
)  # fmt: skip
async def test_failures_say_whether_a_retry_helps(
    receiver: WebhookReceiver, status: int, retry: bool, retry_after: float | None
) -> None:
    receiver.statuses = [status]
    sink = WebhookSink(receiver.url, SECRET)
    with pytest.raises(DeliveryError) as caught:
        await sink.deliver(event())
    await sink.aclose()
    assert (caught.value.retry, caught.value.retry_after) == (retry, retry_after)
    assert str(status) in str(caught.value)
    assert "not-for-logs" not in str(caught.value)  # the URL's query may hold a token


async def test_a_receiver_that_is_down_is_worth_a_retry() -> None:
    sink = WebhookSink(f"http://127.0.0.1:{free_port()}/hook", SECRET)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        await sink.deliver(event())
    await sink.aclose()
    assert caught.value.retry
    assert time.monotonic() - started < 2


async def test_a_receiver_that_hangs_times_out_and_is_worth_a_retry() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # never answers

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", SECRET, timeout_s=0.3)
    try:
        with pytest.raises(DeliveryError) as caught:
            await sink.deliver(event())
        assert caught.value.retry and "Timeout" in str(caught.value)
    finally:
        await sink.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


def test_names_and_reprs_hold_no_secret() -> None:
    sink = WebhookSink("https://user:pw@ops.example.com:8443/hook?token=t0ken#x", SECRET)
    assert sink.name == "webhook:https://ops.example.com:8443/hook"
    for text in (sink.name, repr(sink)):
        assert "pw" not in text and "t0ken" not in text and SECRET.decode() not in text
    assert safe_url("http://[::1]:9/h") == "http://[::1]:9/h"
    asyncio.run(sink.aclose())
