"""haven.evidence.nova: Nova's versioned notifications, sent through oslo.messaging's Notifier as Nova sends
them (payloads from Nova's doc/notification_samples) to a real RabbitMQ, read back as events and symptoms."""

from __future__ import annotations

import asyncio
import calendar
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from oslo_config import cfg

from haven.diagnosis import EvidenceKind, NodeEvent
from haven.evidence.nova import BootFailure, Received, translate
from haven.evidence.nova_listener import NovaListener
from haven.notify.oslo import oslo_messaging
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)

from .nova_samples import COMPUTE_EXCEPTION, create_error, service_update

AT = calendar.timegm((2026, 12, 5, 10, 4, 0))


def test_a_create_error_is_a_boot_failure_with_its_phase() -> None:
    got = translate(
        "instance.create.error",
        "nova-compute:compute",
        create_error("NoValidHost", "No valid host was found. There are not enough hosts available."),
        AT,
    )
    assert got == BootFailure(
        instance="178b0921-8f85-4257-88b6-2e743b5a975c",
        name="some-server",
        host="compute",
        at=AT,
        exception="NoValidHost",
        message="No valid host was found. There are not enough hosts available.",
        phase="scheduling",
    )


def test_a_forced_down_service_is_down_and_a_plain_update_is_nothing() -> None:
    got = translate("service.update", "nova-compute:host1", service_update(True), AT)
    assert got == NodeEvent("nova-compute", EvidenceKind.DOWN, AT, "nova-compute on host1 forced down")
    assert translate("service.update", "nova-compute:host1", service_update(False), AT) is None
    assert translate("instance.create.start", "nova-compute:compute", {}, AT) is None


def test_an_exception_is_an_error_of_the_publisher() -> None:
    got = translate("compute.exception", "nova-osapi_compute:ctl1", COMPUTE_EXCEPTION, AT)
    assert got == NodeEvent("nova-api", EvidenceKind.ERROR, AT, "AggregateNameExists on ctl1")


@pytest.fixture
async def bus(rabbitmq: RabbitMQ) -> AsyncIterator[tuple[str, Any, list[Received], asyncio.Event]]:
    """A NovaListener running on a topic of its own, and a Notifier factory on the same broker."""
    topic = f"versioned-{secrets.token_hex(4)}"
    got: list[Received] = []
    arrived = asyncio.Event()

    async def handle(received: Received) -> None:
        got.append(received)
        arrived.set()

    ready = asyncio.Event()
    listener = NovaListener(rabbitmq.url, topic=topic, pool="haven-test")
    task = asyncio.create_task(listener.run(handle, ready))
    await asyncio.wait_for(ready.wait(), 30)
    conf = cfg.ConfigOpts()
    conf([], project="nova-test", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(conf, url=rabbitmq.url)
    try:
        yield topic, transport, got, arrived
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await listener.aclose()
        await asyncio.to_thread(transport.cleanup)


async def _until(got: list[Received], arrived: asyncio.Event, count: int) -> None:
    async with asyncio.timeout(20):
        while len(got) < count:
            arrived.clear()
            await arrived.wait()


@pytest.mark.rabbitmq
async def test_nova_notifications_arrive_through_a_real_rabbitmq(
    bus: tuple[str, Any, list[Received], asyncio.Event],
) -> None:
    topic, transport, got, arrived = bus

    def send() -> None:
        # As Nova does: the messagingv2 driver, publisher "<binary>:<host>", one Notifier per publisher.
        compute = oslo_messaging.Notifier(
            transport, publisher_id="nova-compute:compute", driver="messagingv2", topics=[topic]
        )
        compute.info({}, "service.update", service_update(False))  # not evidence: dropped
        compute.info({}, "service.update", service_update(True))
        compute.error(
            {}, "instance.create.error", create_error("ImageNotFound", "Image 1 could not be found.")
        )
        api = oslo_messaging.Notifier(
            transport, publisher_id="nova-osapi_compute:ctl1", driver="messagingv2", topics=[topic]
        )
        api.error({}, "compute.exception", COMPUTE_EXCEPTION)

    await asyncio.to_thread(send)
    await _until(got, arrived, 3)
    items = [r.item for r in got]
    assert [type(i).__name__ for i in items] == ["NodeEvent", "BootFailure", "NodeEvent"]
    down, failure, error = items
    assert isinstance(down, NodeEvent) and down.kind is EvidenceKind.DOWN and down.node == "nova-compute"
    assert isinstance(failure, BootFailure) and failure.phase == "image download"
    assert failure.exception == "ImageNotFound" and failure.host == "compute"
    assert isinstance(error, NodeEvent) and (error.node, error.kind) == ("nova-api", EvidenceKind.ERROR)
    # oslo's own message ids and timestamps: distinct ids, times from the sender's clock (UTC), in order.
    assert len({r.message_id for r in got}) == 3 and all(r.message_id for r in got)
    times = [i.at for i in items]
    assert times == sorted(times)
    assert abs(times[0] - time.time()) < 30


@pytest.mark.rabbitmq
async def test_a_listener_runs_again_after_it_stopped(rabbitmq: RabbitMQ) -> None:
    """A new leadership term runs the same listener again: its pool's queue kept what came in between."""
    topic = f"versioned-{secrets.token_hex(4)}"
    listener = NovaListener(rabbitmq.url, topic=topic, pool="haven-test")
    got: list[Received] = []

    async def handle(received: Received) -> None:
        got.append(received)

    conf = cfg.ConfigOpts()
    conf([], project="nova-test", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(conf, url=rabbitmq.url)
    notifier = oslo_messaging.Notifier(
        transport, publisher_id="nova-compute:host1", driver="messagingv2", topics=[topic]
    )
    try:
        for term in range(2):
            ready = asyncio.Event()
            task = asyncio.create_task(listener.run(handle, ready))
            await asyncio.wait_for(ready.wait(), 30)
            if term == 0:  # sent now, read in this term
                await asyncio.to_thread(notifier.info, {}, "service.update", service_update(True))
            async with asyncio.timeout(20):
                while len(got) < term + 1:
                    await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            if term == 0:  # sent between the terms: the queue keeps it for the next one
                await asyncio.to_thread(notifier.error, {}, "compute.exception", COMPUTE_EXCEPTION)
    finally:
        await listener.aclose()
        await asyncio.to_thread(transport.cleanup)
    assert [type(r.item).__name__ for r in got] == ["NodeEvent", "NodeEvent"]
    assert [r.item.kind for r in got if isinstance(r.item, NodeEvent)] == [
        EvidenceKind.DOWN,
        EvidenceKind.ERROR,
    ]
