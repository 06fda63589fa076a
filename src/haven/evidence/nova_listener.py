"""Listening to OpenStack's versioned notifications on the cloud's RabbitMQ, through oslo.messaging.

Built by haven.service.explaining from ``[diagnosis] transport_url``; hands each notification, translated
by haven.evidence.nova, to haven.explain. A listener with a *pool* of its own gets its own queue on the
``versioned_notifications`` topic, so haven takes no message from another consumer (Ceilometer,
Searchlight) and misses none when several listen.

oslo.messaging's errors end here: a transport that cannot be used is a ValueError at construction (a
configuration mistake); a broker that goes away is oslo's to reconnect to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from oslo_config import cfg

from haven.evidence.nova import VERSIONED_TOPIC, Received, at_of, translate
from haven.notify.oslo import oslo_messaging

_log = logging.getLogger(__name__)

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
            item = translate(event_type, publisher_id, payload, at_of(meta, self._now()))
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
    """Listens on ``topic`` (pool ``pool``) and awaits ``handler`` for each useful notification, in order.

    ``run`` may be called again after it ended (a new leadership term); ``aclose`` releases the transport.
    """

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
        """Until cancelled. ``ready`` is set when the queue is bound: nothing sent after it is lost."""
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
            await asyncio.shield(asyncio.to_thread(_stop, server))

    async def aclose(self) -> None:
        await asyncio.to_thread(self._transport.cleanup)


def _stop(server: Any) -> None:
    server.stop()
    server.wait()
