"""The host agent: heartbeats, libvirt watch, process checks and delivery, under one TaskGroup.

Who calls it: ``haven agent`` (haven.cli.agent) builds an ``Agent`` from the config and awaits
``run(stop)``; tests do the same in-process. Every report is spooled (``haven.agent.spool``) before
the reporter tries to send it, so a stop, a crash or an unreachable engine loses nothing.

Stopping (``stop`` set, e.g. on SIGTERM) cancels the tasks: heartbeats revoke their leases (the
engine sees the agent gone at once, not after a TTL), the libvirt connection is closed, and what
is still spooled stays for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from haven.agent.config import AgentConfig
from haven.agent.processes import ProcessWatch
from haven.agent.reporter import Reporter
from haven.agent.reports import notification, process_payload, vm_payload
from haven.agent.spool import Spool
from haven.coordination.etcd import EtcdClient
from haven.coordination.leases import HostHeartbeat
from haven.domain.errors import ConfigError

if TYPE_CHECKING:
    from haven.agent.libvirt_watch import LibvirtWatch  # imports libvirt: only when a URI is set

log = logging.getLogger("haven.agent")


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.spool = Spool(config.state_dir)
        self.reporter = Reporter(
            self.spool, config.engine_url, token_file=config.token_file,
            retry_min_s=config.retry_min_s, retry_max_s=config.retry_max_s,
        )  # fmt: skip
        self.clients = [EtcdClient(c.etcd, display_url=c.etcd) for c in config.channels]
        self.heartbeats = [
            HostHeartbeat(client, config.host, channel.name, cluster=config.cluster,
                          ttl_s=config.heartbeat_ttl_s, interval_s=config.heartbeat_interval_s)
            for client, channel in zip(self.clients, config.channels, strict=True)
        ]  # fmt: skip
        self.processes = ProcessWatch(
            config.processes, self.report_process, interval_s=config.process_interval_s,
            cmdline=config.process_cmdline,
        )  # fmt: skip
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started = asyncio.Event()  # set once run() can take events
        self.libvirt: LibvirtWatch | None = self._libvirt_watch() if config.libvirt_uri else None

    def report(self, type_: str, payload: dict[str, str]) -> None:
        """Spool one notification (on the event loop thread) and wake the reporter."""
        self.spool.add(notification(type_, self.config.host, payload))
        self.reporter.wake()

    def report_process(self, name: str, running: bool) -> None:
        self.report("PROCESS", process_payload(name, running))

    def on_libvirt_event(self, event_id: int, event_type: int, detail: int, uuid: str) -> None:
        """Called on libvirt's event thread: filter there, spool on the agent's loop."""
        payload = vm_payload(event_id, event_type, detail, uuid)
        if payload is None:
            return
        log.warning("libvirt: domain %s %s %s", uuid, payload["event"], payload["vir_domain_event"])
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.report, "VM", payload)

    def _libvirt_watch(self) -> LibvirtWatch:
        try:
            from haven.agent.libvirt_watch import LibvirtWatch
        except ImportError as exc:
            raise ConfigError(
                f"agent.libvirt_uri is {self.config.libvirt_uri} but libvirt-python is not installed",
                "make agent-deps (or pip install 'haven[agent]'), or set libvirt_uri = \"\" for no VM watch",
            ) from exc
        c = self.config
        return LibvirtWatch(
            c.libvirt_uri or "",
            self.on_libvirt_event,
            keepalive_interval_s=c.keepalive_interval_s,
            keepalive_count=c.keepalive_count,
            reconnect_interval_s=c.reconnect_interval_s,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop every part and close what was opened."""
        self._loop = asyncio.get_running_loop()
        self.started.set()
        log.info("haven agent for host %s: %d channel(s), engine %s, %d notification(s) spooled",
                 self.config.host, len(self.heartbeats), self.config.engine_url, len(self.spool))  # fmt: skip
        parts: list[Callable[[], Coroutine[Any, Any, None]]] = [h.run for h in self.heartbeats]
        parts += [self.reporter.run]
        if self.config.processes:
            parts.append(self.processes.run)
        if self.libvirt is not None:
            parts.append(self.libvirt.run)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(part()) for part in parts]
                await stop.wait()
                for task in tasks:
                    task.cancel()
        finally:
            for client in self.clients:
                with contextlib.suppress(Exception):
                    await client.aclose()
            left = len(self.spool)
            self.spool.close()
            log.info("haven agent stopped (%d notification(s) left in the spool)", left)
