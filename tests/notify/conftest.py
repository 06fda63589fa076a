"""Fixtures of the publishing tests: a real webhook receiver per test; the session's RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers.process import free_port
from servers.rabbitmq import rabbitmq  # noqa: F401 (a session fixture, shared by the tests here)

from .receiver import WebhookReceiver

SECRET = b"s3cret-for-tests"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(SECRET, free_port()).start()
    yield started
    started.stop()
