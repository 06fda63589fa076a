"""A RabbitMQ on loopback with its own epmd: Debian's rabbitmq-server, run without systemd.

Who calls it: ``haven lab up`` (Nova's message bus) and the test fixture
``tests/servers/rabbitmq.py``. It runs the server script directly (not Debian's wrapper,
which switches to the ``rabbitmq`` user and its system folders), so root or any user
will do, with its node name, database, logs and HOME in the given folder. Erlang's port
mapper (epmd) is started first on a free port bound to 127.0.0.1, so the node uses ours
rather than a shared one, and stopping it stops exactly ours. Every listener is on
loopback: AMQP, and Erlang distribution too (``inet_dist_use_interface``).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from haven.lab.process import LabProcess, LabServiceError, free_port, port_open

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = Path("/usr/bin/epmd")
START_TIMEOUT_S = 90.0


@dataclass
class RabbitMQ:
    port: int
    node: str
    started_in_s: float
    server: LabProcess
    epmd: LabProcess

    @property
    def url(self) -> str:
        """An oslo.messaging transport URL (RabbitMQ's default guest user may log in from loopback)."""
        return f"rabbit://guest:guest@127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.server.stop(grace_s=30)
        self.epmd.stop()


def missing_binaries() -> list[tuple[Path, str]]:
    """The binaries this launcher needs that are absent, each with its Debian package."""
    needed = [(RABBITMQ_SERVER, "rabbitmq-server"), (EPMD, "erlang-base")]
    return [(path, package) for path, package in needed if not path.exists()]


def start_rabbitmq(folder: Path, node_prefix: str = "haven") -> RabbitMQ:
    """Start a broker in ``folder`` on free loopback ports; return once AMQP accepts connections."""
    missing = missing_binaries()
    if missing:
        names = ", ".join(f"{path} (Debian package {package})" for path, package in missing)
        raise LabServiceError(f"RabbitMQ cannot start: missing {names}; run `make system-deps`")
    folder.mkdir(parents=True, exist_ok=True)
    epmd_port, amqp_port, dist_port = free_port(), free_port(), free_port()
    node = f"{node_prefix}-{secrets.token_hex(4)}@localhost"
    epmd = LabProcess(
        "epmd",
        [str(EPMD), "-port", str(epmd_port), "-address", "127.0.0.1"],
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
    server = LabProcess(
        "rabbitmq-server", [str(RABBITMQ_SERVER)], folder / "rabbitmq.log", env=env, cwd=folder
    )
    server.start()
    try:
        server.wait_until(lambda: port_open(amqp_port), START_TIMEOUT_S, "AMQP listener")
    except BaseException:
        server.stop()
        epmd.stop()
        raise
    return RabbitMQ(amqp_port, node, time.monotonic() - started, server, epmd)
