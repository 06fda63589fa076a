"""OpenStack-style notifications on RabbitMQ: oslo.messaging's 2.0 envelope, on ``<topic>.<priority>``.

Built by the service wiring from ``[publish] transport_url``, called by the
Publisher once per attempt. A consumer already listening on the OpenStack bus
(``oslo_messaging.get_notification_listener``, ceilometer, a kombu consumer)
receives ``{"oslo.version": "2.0", "oslo.message": "<json>"}`` where the
message holds message_id, publisher_id (``haven.<host>``), event_type,
priority, payload and timestamp, as from any OpenStack service.

Why not oslo.messaging's Notifier: it logs and swallows every sending error,
so haven could never tell a delivered event from a lost one. This sends the
same message through the same transport (the call the Notifier's messagingv2
driver makes), with ``retry=0`` so a broker that is down fails the attempt at
once and the outbox retries it later. The message_id is haven's event id, the
same on every retry, so a consumer can deduplicate. The transport is
synchronous: every call runs in a worker thread, never in the event loop.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import socket
from typing import Any

from oslo_config import cfg

from haven.domain.publishing import PublishedEvent
from haven.notify.oslo import oslo_messaging
from haven.notify.sinks import DeliveryError

DEFAULT_TOPIC = "notifications"
_log = logging.getLogger(__name__)


class RabbitSink:
    def __init__(self, transport_url: str, topic: str = DEFAULT_TOPIC, host: str | None = None) -> None:
        # A private ConfigOpts: haven reads no oslo config files and touches no global state.
        self._conf = cfg.ConfigOpts()
        self._conf([], project="haven", default_config_files=[], default_config_dirs=[])
        try:
            self._transport = oslo_messaging.get_notification_transport(self._conf, url=transport_url)
        except oslo_messaging.MessagingException as exc:
            raise ValueError(f"transport_url cannot be used: {type(exc).__name__}") from None
        self._topic = topic
        self.publisher_id = f"haven.{host or socket.gethostname()}"
        self.name = f"rabbitmq:{topic}"

    def __repr__(self) -> str:
        return f"RabbitSink({self.name!r})"  # the transport URL holds a password

    def message(self, event: PublishedEvent) -> dict[str, Any]:
        """The notification as oslo.messaging's Notifier would build it, with haven's event id."""
        at = datetime.datetime.fromtimestamp(event.created_at, datetime.UTC).replace(tzinfo=None)
        return {
            "message_id": event.id,
            "publisher_id": self.publisher_id,
            "event_type": event.event_type,
            "priority": event.priority.value,
            "payload": dict(event.payload),
            "timestamp": str(at),  # oslo's format: str(timeutils.utcnow())
        }

    def _send(self, event: PublishedEvent) -> None:
        target = oslo_messaging.Target(topic=f"{self._topic}.{event.priority.value.lower()}")
        self._transport._send_notification(target, {}, self.message(event), version=2.0, retry=0)

    async def deliver(self, event: PublishedEvent) -> None:
        try:
            await asyncio.to_thread(self._send, event)
        except Exception as exc:  # the drivers raise many kinds; any of them means "not sent"
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {exc}", retry=True) from exc

    async def aclose(self) -> None:
        await asyncio.to_thread(self._transport.cleanup)
