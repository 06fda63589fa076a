"""Outgoing events for custom recovery: signed webhooks and OpenStack-style notifications on RabbitMQ.

``events`` turns what the engine reports into published events; ``publisher``
keeps them in the store's outbox and delivers them to every ``sinks.Sink``
(``webhook``, ``rabbit``), retrying with back-off until each sink has them.
"""

from haven.notify.events import (
    CLAIM,
    LEFT_TO_OWNER,
    NOTIFICATION_CREATE,
    PROGRESS,
    RECOVERY_END,
    RECOVERY_ERROR,
    RECOVERY_START,
)
from haven.notify.publisher import Outbox, Publisher, PublishSettings
from haven.notify.sinks import DeliveryError, Sink

__all__ = [
    "CLAIM",
    "LEFT_TO_OWNER",
    "NOTIFICATION_CREATE",
    "PROGRESS",
    "RECOVERY_END",
    "RECOVERY_ERROR",
    "RECOVERY_START",
    "DeliveryError",
    "Outbox",
    "PublishSettings",
    "Publisher",
    "Sink",
]
