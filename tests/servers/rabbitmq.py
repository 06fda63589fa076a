"""A throw-away RabbitMQ for the tests, started by haven.lab.rabbitmq (shared with ``haven lab``).

The session-scoped ``rabbitmq`` fixture starts one broker per test session (it takes
seconds to boot) on free loopback ports, with its own epmd, node name, database, logs
and HOME in a temporary folder, and stops exactly that broker and epmd at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haven.lab.rabbitmq import RabbitMQ, missing_binaries, start_rabbitmq

from .process import require

__all__ = ["RabbitMQ", "rabbitmq_fixture", "start_rabbitmq", "stop_rabbitmq"]


def stop_rabbitmq(broker: RabbitMQ) -> None:
    broker.stop()


@pytest.fixture(scope="session", name="rabbitmq")
def rabbitmq_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    for path, package in missing_binaries():
        require(path, package)
    broker = start_rabbitmq(tmp_path_factory.mktemp("rabbitmq"), node_prefix="haven-test")
    print(f"rabbitmq-server ready in {broker.started_in_s:.1f} s on port {broker.port}")
    yield broker
    stop_rabbitmq(broker)
