"""Events haven publishes to the outside world (webhooks, the OpenStack bus), as the outbox keeps them.

Shared by haven.notify (which builds, delivers and retries them) and haven.store
(which keeps them durably until every sink has them), two layers that may not
import each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Priority(StrEnum):
    """oslo.messaging's notification priorities that haven uses."""

    INFO = "INFO"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class PublishedEvent:
    """One event, published once to every sink; ``key`` makes appending it twice a no-op."""

    id: str  # also the oslo message_id and the webhook's X-Haven-Event-Id
    key: str  # e.g. "<notification id>/haven.recovery.start"
    event_type: str
    priority: Priority
    payload: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one event stands with one sink."""

    event: PublishedEvent
    sink: str
    attempts: int = 0
    next_attempt_at: float = 0.0
    delivered_at: float | None = None
    last_error: str | None = None
    abandoned: bool = False  # a permanent refusal (a 4xx): not retried, kept for the record


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int = 0
    delivered: int = 0
    abandoned: int = 0
    by_sink: Mapping[str, int] = field(default_factory=dict)  # pending per sink
