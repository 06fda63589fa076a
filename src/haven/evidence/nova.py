"""OpenStack's versioned notifications (Nova's, from the cloud's RabbitMQ) → the ranker's events and symptoms.

Started by the service wiring (or ``haven explain listen``) with the cloud's ``transport_url``; hands each
translated notification to haven.explain. A listener with a *pool* of its own gets its own queue on the
``versioned_notifications`` exchange topic, so haven takes no message from another consumer (Ceilometer,
Searchlight) and misses none when several listen.

What is kept (the payload shapes of Nova's doc/notification_samples):

- ``instance.create.error`` → a BootFailure: the symptom, with its fault's exception and message and the
  boot phase they point at (haven.topology.phase_of_fault);
- ``service.update`` with ``forced_down`` → the service DOWN (a ``disabled`` service is an operator's or
  haven's own choice, not a fault);
- ``compute.exception`` and other ``*.error`` notifications → an ERROR on the publishing service.

oslo.messaging's errors end here: a transport that cannot be used is a ValueError at construction (a
configuration mistake); a broker that goes away is oslo's to reconnect to.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from oslo_config import cfg

from haven.diagnosis import EvidenceKind, NodeEvent
from haven.notify.oslo import oslo_messaging
from haven.topology import node_of_binary, phase_of_fault

VERSIONED_TOPIC = "versioned_notifications"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BootFailure:
    """A server that failed to build: a symptom to explain."""

    instance: str  # the server's uuid
    name: str
    host: str  # the compute host it failed on ("" when it never got one)
    at: float
    exception: str  # the fault's exception class, e.g. "NoValidHost"
    message: str
    phase: str | None  # the boot phase the fault points at, None when unknown


@dataclass(frozen=True, slots=True)
class Received:
    """One notification as haven keeps it: its message id (for idempotency) and what it says."""

    message_id: str
    item: NodeEvent | BootFailure


def _data(payload: Any) -> Mapping[str, Any]:
    if isinstance(payload, Mapping):
        inner = payload.get("nova_object.data", payload)
        if isinstance(inner, Mapping):
            return inner
    return {}


def _at(metadata: Mapping[str, Any], fallback: float) -> float:
    stamp = metadata.get("timestamp")
    if not isinstance(stamp, str):
        return fallback
    try:
        parsed = datetime.datetime.fromisoformat(stamp)
    except ValueError:
        return fallback
    return parsed.replace(tzinfo=datetime.UTC).timestamp() if parsed.tzinfo is None else parsed.timestamp()


def translate(event_type: str, publisher_id: str, payload: Any, at: float) -> NodeEvent | BootFailure | None:
    """What one versioned notification says, in the ranker's words; None when it says nothing useful."""
    data = _data(payload)
    binary, _, publisher_host = publisher_id.partition(":")
    if event_type == "instance.create.error":
        fault = _data(data.get("fault"))
        exception = str(fault.get("exception") or "")
        message = str(fault.get("exception_message") or "")
        return BootFailure(
            instance=str(data.get("uuid") or ""),
            name=str(data.get("display_name") or ""),
            host=str(data.get("host") or ""),
            at=at,
            exception=exception,
            message=message,
            phase=phase_of_fault(exception, message),
        )
    if event_type == "service.update":
        if not data.get("forced_down"):
            return None
        node = node_of_binary(str(data.get("binary") or binary))
        detail = f"{data.get('binary') or binary} on {data.get('host') or publisher_host} forced down"
        return NodeEvent(node, EvidenceKind.DOWN, at, detail)
    if event_type == "compute.exception" or event_type.endswith(".error"):
        exception = str(data.get("exception") or _data(data.get("fault")).get("exception") or event_type)
        where = f" on {publisher_host}" if publisher_host else ""
        return NodeEvent(node_of_binary(binary), EvidenceKind.ERROR, at, f"{exception}{where}")
    return None


Handler = Callable[[Received], Awaitable[None]]


class _Endpoint:
    """oslo.messaging's notification endpoint: called in oslo's thread, hands over to the event loop."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Received], now: Callable[[], float]
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._now = now

    def _take(self, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        meta = metadata if isinstance(metadata, Mapping) else {}
        try:
            item = translate(event_type, publisher_id, payload, _at(meta, self._now()))
        except Exception:  # one malformed notification must not stop the listener
            _log.exception("cannot read %s from %s", event_type, publisher_id)
            return
        if item is not None:
            received = Received(str(meta.get("message_id") or ""), item)
            self._loop.call_soon_threadsafe(self._queue.put_nowait, received)

    def info(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._take(publisher_id, event_type, payload, metadata)

    def warn(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._take(publisher_id, event_type, payload, metadata)

    def error(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._take(publisher_id, event_type, payload, metadata)

    def critical(self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any) -> None:
        self._take(publisher_id, event_type, payload, metadata)


class NovaListener:
    """Listens on ``topic`` (pool ``pool``) and awaits ``handler`` for each useful notification, in order."""

    def __init__(
        self,
        transport_url: str,
        topic: str = VERSIONED_TOPIC,
        pool: str = "haven",
        now: Callable[[], float] = time.time,  # for a notification without oslo's timestamp (never seen)
    ) -> None:
        self._now = now
        self._conf = cfg.ConfigOpts()  # private: haven reads no oslo config files and touches no globals
        self._conf([], project="haven", default_config_files=[], default_config_dirs=[])
        try:
            self._transport = oslo_messaging.get_notification_transport(self._conf, url=transport_url)
        except oslo_messaging.MessagingException as exc:
            raise ValueError(f"transport_url cannot be used: {type(exc).__name__}") from None
        self._topic = topic
        self._pool = pool

    def __repr__(self) -> str:
        return f"NovaListener(topic={self._topic!r}, pool={self._pool!r})"  # the URL holds a password

    async def run(self, handler: Handler, ready: asyncio.Event | None = None) -> None:
        """Until cancelled, once only. ``ready`` is set when the queue is bound: nothing later is lost."""
        queue: asyncio.Queue[Received] = asyncio.Queue()
        endpoint = _Endpoint(asyncio.get_running_loop(), queue, self._now)
        server = oslo_messaging.get_notification_listener(
            self._transport,
            [oslo_messaging.Target(topic=self._topic)],
            [endpoint],
            executor="threading",
            pool=self._pool,
        )
        await asyncio.to_thread(server.start)
        try:
            if ready is not None:
                ready.set()
            while True:
                await handler(await queue.get())
        finally:
            await asyncio.shield(asyncio.to_thread(_stop, server, self._transport))


def _stop(server: Any, transport: Any) -> None:
    server.stop()
    server.wait()
    transport.cleanup()
