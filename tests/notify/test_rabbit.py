"""OpenStack-style notifications on a real RabbitMQ: what a consumer on the OpenStack bus receives."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from typing import Any

import kombu
import pytest

from haven.domain.publishing import Priority, PublishedEvent
from haven.notify.rabbit import RabbitSink
from haven.notify.sinks import DeliveryError
from servers.process import free_port
from servers.rabbitmq import RabbitMQ

from .conftest import Endpoint

pytestmark = pytest.mark.rabbitmq


def event(event_type: str = "haven.recovery.start", priority: Priority = Priority.INFO) -> PublishedEvent:
    payload = {"notification_uuid": "n-1", "hostname": "compute-7", "summary": {"evacuated": 3}}
    return PublishedEvent(str(uuid.uuid4()), f"n-1/{event_type}", event_type, priority, payload, time.time())


async def test_an_oslo_listener_receives_haven_events_at_their_priority(
    rabbitmq: RabbitMQ, listener: tuple[str, Endpoint]
) -> None:
    topic, endpoint = listener
    sink = RabbitSink(rabbitmq.url, topic, host="ha-1")
    start, error = event(), event("haven.recovery.error", Priority.ERROR)
    try:
        await sink.deliver(start)
        await sink.deliver(error)
    finally:
        await sink.aclose()
    got = [endpoint.got.get(timeout=10) for _ in range(2)]
    got.sort(key=lambda g: g[0] != "INFO")
    (p1, pub1, type1, payload1, meta1), (p2, _, type2, _, meta2) = got
    assert (p1, pub1, type1, payload1) == ("INFO", "haven.ha-1", "haven.recovery.start", dict(start.payload))
    assert meta1["message_id"] == start.id  # the same id on every retry: consumers can deduplicate
    assert (p2, type2, meta2["message_id"]) == ("ERROR", "haven.recovery.error", error.id)


async def test_the_message_on_the_bus_is_the_oslo_2_envelope(rabbitmq: RabbitMQ) -> None:
    topic = f"haven-raw-{secrets.token_hex(4)}"
    sink = RabbitSink(rabbitmq.url, topic, host="ha-1")
    sent = event("haven.notification.create")
    await sink.deliver(sent)  # nobody listens yet: oslo declares the queue, so the message waits there
    await sink.aclose()

    def read() -> Any:
        with kombu.Connection(f"amqp://guest:guest@127.0.0.1:{rabbitmq.port}//") as conn:
            channel = conn.channel()
            return channel.basic_get(queue=f"{topic}.info", no_ack=True)

    message = await asyncio.to_thread(read)
    assert message is not None
    envelope = json.loads(message.body)
    assert envelope["oslo.version"] == "2.0"
    inner = json.loads(envelope["oslo.message"])
    assert {k: inner[k] for k in ("message_id", "publisher_id", "event_type", "priority", "payload")} == {
        "message_id": sent.id,
        "publisher_id": "haven.ha-1",
        "event_type": "haven.notification.create",
        "priority": "INFO",
        "payload": dict(sent.payload),
    }
    assert inner["timestamp"].count(":") == 2  # oslo's "YYYY-MM-DD HH:MM:SS.ffffff", UTC


async def test_a_broker_that_is_down_fails_the_attempt_at_once_and_a_retry_helps() -> None:
    sink = RabbitSink(f"rabbit://guest:hunter2@127.0.0.1:{free_port()}/", host="ha-1")
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        await sink.deliver(event())
    await sink.aclose()
    assert caught.value.retry and time.monotonic() - started < 5
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(sink)
