"""Fixtures of the publishing tests: a real webhook receiver per test; the session's RabbitMQ and a real
oslo.messaging notification listener on a topic of its own per test."""

from __future__ import annotations

import queue
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from oslo_config import cfg

from haven.notify.oslo import oslo_messaging
from servers.process import free_port
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)

from .receiver import WebhookReceiver

SECRET = b"s3cret-for-tests"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(SECRET, free_port()).start()
    yield started
    started.stop()


class Endpoint:
    """An oslo.messaging notification endpoint, as ceilometer or a custom-recovery consumer writes one."""

    def __init__(self) -> None:
        self.got: queue.Queue[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = queue.Queue()

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self.got.put(("INFO", publisher_id, event_type, payload, metadata))

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self.got.put(("ERROR", publisher_id, event_type, payload, metadata))


@pytest.fixture
def listener(rabbitmq: RabbitMQ) -> Iterator[tuple[str, Endpoint]]:
    """A real oslo.messaging notification listener on a topic of its own."""
    topic = f"haven-test-{secrets.token_hex(4)}"
    conf = cfg.ConfigOpts()
    conf([], project="haven-test", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(conf, url=rabbitmq.url)
    endpoint = Endpoint()
    server = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic=topic)], [endpoint], executor="threading"
    )
    server.start()
    yield topic, endpoint
    server.stop()
    server.wait()
    transport.cleanup()
