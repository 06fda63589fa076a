"""A throw-away RabbitMQ for the tests: Debian's rabbitmq-server on loopback, with its own epmd.

The session-scoped ``rabbitmq`` fixture starts one broker per test session (it
takes seconds to boot) on free ports, with its node name, database, logs and
HOME in a temporary folder. It runs the server script directly (not Debian's
wrapper, which switches to the ``rabbitmq`` user and its system folders), so
root or any user will do. Erlang's port mapper (epmd) is started first by the
fixture, on a free port bound to 127.0.0.1, so the node uses ours rather than a
shared one, and stopping it stops exactly ours. Every listener is on loopback:
AMQP, and Erlang distribution too (``inet_dist_use_interface``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .process import ServerProcess, free_port, port_open, require

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "/usr/bin/epmd"
START_TIMEOUT_S = 90.0


@dataclass
class RabbitMQ:
    port: int
    node: str
    started_in_s: float
    server: ServerProcess
    epmd: ServerProcess

    @property
    def url(self) -> str:
        """An oslo.messaging transport URL (RabbitMQ's default guest user may log in from loopback)."""
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"


def start_rabbitmq(folder: Path) -> RabbitMQ:
    require(RABBITMQ_SERVER, "rabbitmq-server")
    require(EPMD, "erlang-base")
    epmd_port, amqp_port, dist_port = free_port(), free_port(), free_port()
    node = f"haven-test-{secrets.token_hex(4)}@localhost"
    epmd = ServerProcess(
        "epmd",
        [EPMD, "-port", str(epmd_port), "-address", "127.0.0.1"],
        folder / "epmd.log",
        env={"ERL_EPMD_ADDRESS": "127.0.0.1", "ERL_EPMD_PORT": str(epmd_port)},
    ).start()
    epmd.wait_until(lambda: port_open(epmd_port), 10, "epmd listening")
    (folder / "enabled_plugins").write_text("[].\n")
    env = {
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(amqp_port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
        "RABBITMQ_LOG_BASE": str(folder / "log"),
        "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),  # absent: the defaults
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(folder / "rabbitmq.pid"),
        "HOME": str(folder),  # the Erlang cookie goes here
    }
    started = time.monotonic()
    server = ServerProcess("rabbitmq-server", [RABBITMQ_SERVER], folder / "rabbitmq.log", env=env, cwd=folder)
    server.start()
    try:
        server.wait_until(lambda: port_open(amqp_port), START_TIMEOUT_S, "AMQP listener")
    except BaseException:
        server.stop()
        epmd.stop()
        raise
    return RabbitMQ(amqp_port, node, time.monotonic() - started, server, epmd)


def stop_rabbitmq(broker: RabbitMQ) -> None:
    broker.server.stop(grace_s=30)
    broker.epmd.stop()


@pytest.fixture(scope="session", name="rabbitmq")
def rabbitmq_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    broker = start_rabbitmq(tmp_path_factory.mktemp("rabbitmq"))
    print(f"rabbitmq-server ready in {broker.started_in_s:.1f} s on port {broker.port}")
    yield broker
    stop_rabbitmq(broker)
