"""One RabbitMQ node run by systemd as a unit: haven's RabbitNode over that unit's D-Bus.

Who calls it: haven.lab.ha_stateful (the HA lab's RabbitMQ units) and its tests.

Whether the node runs is its unit's ActiveState (haven.stateful.galera_systemd.SystemdUnit), or an
Erlang VM of its node name found as the local driver finds it; starting it is systemd's StartUnit job.
Its cluster status and its app's stop/start go through ``rabbitmqctl`` exactly as for a local node
(haven.stateful.rabbitmq_node.LocalRabbitNode): the CLI reaches the node over Erlang distribution,
wherever systemd runs it. The unit (``unit_file``) runs Debian's rabbitmq-server with the node's
environment (its name, ports, Mnesia and log folders, the cluster's epmd port and cookie HOME) and
``Restart=no``: haven starts a stopped node, as for Galera.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from haven.domain.errors import TemporaryError
from haven.stateful.galera_systemd import SystemdUnit
from haven.stateful.rabbitmq import ClusterStatus
from haven.stateful.rabbitmq_node import CLI_TIMEOUT_S, RABBITMQ_SERVER, LocalRabbitNode, RabbitLayout
from haven.stateful.rabbitmq_queues import QueueRead


def unit_file(layout: RabbitLayout, description: str) -> str:
    """The node's unit: rabbitmq-server with the node's own environment (none of haven's own)."""
    env = {k: v for k, v in layout.server_env().items() if k.startswith(("RABBITMQ_", "ERL_"))}
    env["HOME"] = str(layout.home)
    env["PATH"] = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    # rabbitmq-server then execs the Erlang VM (its mode "under systemd") instead of keeping a shell as
    # the unit's main process: a SIGKILL of the main process is then one of the VM, as a crash is. The
    # socket named does not exist (the lab's systemd has no notify socket of its own): nothing is sent.
    env["NOTIFY_SOCKET"] = str(layout.folder / "no-notify-socket")
    lines = "".join(f'Environment="{key}={value}"\n' for key, value in sorted(env.items()))
    out = layout.folder / "server.log"
    return (
        f"[Unit]\nDescription={description}\nDefaultDependencies=no\n"
        f"[Service]\nType=exec\n{lines}WorkingDirectory={layout.folder}\n"
        f"ExecStart={RABBITMQ_SERVER}\nStandardOutput=append:{out}\nStandardError=append:{out}\n"
        "Restart=no\nTimeoutStopSec=60\n"
    )


class SystemdRabbitNode:
    """A RabbitMQ node whose server is the unit ``unit`` of the systemd at D-Bus ``bus``."""

    def __init__(
        self,
        layout: RabbitLayout,
        unit: str,
        bus: str | None = None,
        cli_timeout_s: float = CLI_TIMEOUT_S,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.name = layout.name
        self.layout = layout
        self.unit = unit
        self.bus = bus
        self.files = LocalRabbitNode(layout, cli_timeout_s)  # rabbitmqctl, the VM found in /proc
        self.systemd = SystemdUnit(unit, bus, start_timeout_s)

    async def running(self) -> bool:
        if await self.systemd.running():
            return True
        return await asyncio.to_thread(self.files.runs)

    async def status(self) -> ClusterStatus:
        return await self.files.status()

    async def queues(self, timeout_s: float | None = None) -> QueueRead:
        return await self.files.queues(timeout_s)

    async def start(self) -> None:
        """StartUnit (not waiting for the boot: the next passes watch it). Never while it runs."""
        if await self.running():
            return
        state = await self.systemd.start()
        if state != "active":
            raise TemporaryError(
                f"{self.name}: {self.unit} is {state} after its start: {self.files.log_tail(3)}"
            )

    async def restart_app(self) -> None:
        await self.files.restart_app()

    async def start_app(self) -> None:
        await self.files.start_app()

    async def reachable(self, peers: Sequence[str]) -> tuple[str, ...]:
        return await self.files.reachable(peers)

    async def remote_calls(self) -> str:
        return await self.files.remote_calls()

    async def kill(self) -> None:
        """A crash of this node: SIGKILL to its server's main process, until the unit is down."""
        await self.systemd.kill()
