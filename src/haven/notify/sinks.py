"""The one interface every place haven publishes to implements, and how a delivery can fail.

The Publisher calls ``deliver`` once per attempt; a sink never retries by
itself (the outbox does, durably). Errors, classified by whether a retry helps:

DeliveryError          the sink did not take the event
├── retry=True         connection refused, timeout, 5xx, 429 (``retry_after`` when the receiver said)
└── retry=False        the receiver refused it for good (a 4xx other than 429): kept, not retried
"""

from __future__ import annotations

from typing import Protocol

from haven.domain.publishing import PublishedEvent


class DeliveryError(Exception):
    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


class Sink(Protocol):
    @property
    def name(self) -> str:
        """Stable and free of secrets: it names the sink's rows in the outbox and in logs."""
        ...

    async def deliver(self, event: PublishedEvent) -> None:
        """Hand the event over, or raise DeliveryError."""
        ...

    async def aclose(self) -> None: ...
