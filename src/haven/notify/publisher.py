"""The Publisher: engine events kept in the store's outbox, then delivered to every sink until each has them.

``haven serve`` passes ``Publisher.on_event`` to the engine as (part of) its
event sink and runs ``Publisher.run`` in its TaskGroup. ``on_event`` turns an
engine event into a published event and appends it to the outbox at once (one
small write, like the engine's own), so it survives a crash; it never waits
for a receiver. ``run`` delivers due deliveries, each sink in order and the
sinks side by side, and writes each outcome back: delivered; refused for good
(kept, not retried); or failed, retried after an exponential back-off (or the
receiver's Retry-After) until ``give_up_after_s`` has passed. At start it
resumes whatever an earlier run left undelivered. Delivered events are pruned,
keeping the newest ``keep_delivered``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, defaultdict
from collections.abc import Collection, Coroutine, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from haven.domain.clock import Clock
from haven.domain.events import EngineEvent
from haven.domain.ids import NotificationId
from haven.domain.incidents import Notification
from haven.domain.publishing import Delivery, PublishedEvent
from haven.notify.events import event_type_for, key_for, published_event
from haven.notify.sinks import DeliveryError, Sink

_log = logging.getLogger(__name__)
_REMEMBERED_KEYS = 10_000  # keys appended lately: a resumed recovery's step events skip the database


@dataclass(frozen=True, slots=True)
class PublishSettings:
    first_retry_s: float = 1.0
    max_retry_s: float = 300.0
    give_up_after_s: float = 86_400.0  # a day of failed attempts, then the event is abandoned
    attempt_timeout_s: float = 15.0
    batch: int = 100
    keep_delivered: int = 1000
    idle_wait_s: float = 5.0  # look at the outbox at least this often (another engine may append)
    stop_grace_s: float = 2.0  # at stop, attempts under way may finish and be recorded (not resent later)


class Outbox(Protocol):
    """What the Publisher needs from the store (haven.store.Store has it)."""

    def get_notification(self, notification_id: NotificationId) -> Notification: ...
    def append_event(self, event: PublishedEvent, sinks: Sequence[str]) -> bool: ...
    def due_deliveries(self, now: float, sinks: Collection[str], limit: int = 100) -> list[Delivery]: ...
    def next_delivery_at(self, sinks: Collection[str]) -> float | None: ...
    def record_delivery(self, delivery: Delivery) -> None: ...
    def abandon_deliveries(self, *, except_sinks: Collection[str], reason: str) -> int: ...
    def prune_outbox(self, keep: int) -> int: ...


class Publisher:
    def __init__(
        self, outbox: Outbox, sinks: Sequence[Sink], clock: Clock, settings: PublishSettings | None = None
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"two sinks with the same name: {', '.join(sorted(names))}")
        self._outbox, self._clock = outbox, clock
        self._sinks = {s.name: s for s in sinks}
        self.settings = settings or PublishSettings()
        self._wake = asyncio.Event()
        self._seen: OrderedDict[str, None] = OrderedDict()

    @property
    def sink_names(self) -> list[str]:
        return list(self._sinks)

    # ---- intake: called by the engine, in the event loop ------------------------------------

    def on_event(self, event: EngineEvent) -> None:
        """An EventSink: keep the event in the outbox if it is one haven publishes; never raises."""
        event_type = event_type_for(event)
        if event_type is None or event.notification_id is None or not self._sinks:
            return
        key = key_for(event.notification_id, event_type)
        if key in self._seen:
            return
        try:
            notification = self._outbox.get_notification(event.notification_id)
            self._outbox.append_event(
                published_event(event_type, notification, self._clock.now(), event.detail, key),
                self.sink_names,
            )
        except Exception:  # publishing must never break a recovery
            _log.exception("could not keep event %s in the outbox", key)
            return
        self._remember(key)
        self._wake.set()

    def _remember(self, key: str) -> None:
        self._seen[key] = None
        if len(self._seen) > _REMEMBERED_KEYS:
            self._seen.popitem(last=False)

    # ---- delivery: a task in serve's TaskGroup ------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set (an attempt under way is dropped: the next start retries it)."""
        try:
            if not self._sinks:
                await stop.wait()
                return
            gone = await asyncio.to_thread(
                self._outbox.abandon_deliveries,
                except_sinks=self.sink_names,
                reason="sink no longer configured",
            )
            if gone:
                _log.warning("%d undelivered event(s) were for sinks no longer configured", gone)
            while not stop.is_set():
                self._wake.clear()
                if not await _unless_stopped(self._pass(), stop, self.settings.stop_grace_s):
                    break
                await self._wait(stop)
        finally:
            for sink in self._sinks.values():
                await sink.aclose()

    async def _pass(self) -> None:
        try:
            await self.deliver_due()
        except Exception:  # the database hiccuped: publishing must not stop haven; the next pass retries
            _log.exception("publishing pass failed")

    async def _wait(self, stop: asyncio.Event) -> None:
        next_at = await asyncio.to_thread(self._outbox.next_delivery_at, self.sink_names)
        wait = self.settings.idle_wait_s
        if next_at is not None:
            wait = min(wait, max(0.0, next_at - self._clock.now()))
        if wait <= 0:
            return
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())}
        try:
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def deliver_due(self) -> int:
        """One pass: each due delivery attempted once (each sink in order); returns how many succeeded."""
        due = await asyncio.to_thread(
            self._outbox.due_deliveries, self._clock.now(), self.sink_names, self.settings.batch
        )
        by_sink: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in due:
            by_sink[delivery.sink].append(delivery)
        delivered = sum(await asyncio.gather(*(self._deliver_to(s, d) for s, d in by_sink.items())))
        if delivered:
            await asyncio.to_thread(self._outbox.prune_outbox, self.settings.keep_delivered)
        return delivered

    async def _deliver_to(self, sink_name: str, deliveries: list[Delivery]) -> int:
        sink = self._sinks[sink_name]
        delivered = 0
        for delivery in deliveries:
            outcome = await self._attempt(sink, delivery)
            await asyncio.to_thread(self._outbox.record_delivery, outcome)
            if outcome.delivered_at is not None:
                delivered += 1
            elif not outcome.abandoned:
                break  # the sink is failing: the rest wait for the next pass rather than fail in a row
        return delivered

    async def _attempt(self, sink: Sink, delivery: Delivery) -> Delivery:
        attempts = delivery.attempts + 1
        try:
            async with asyncio.timeout(self.settings.attempt_timeout_s):
                await sink.deliver(delivery.event)
        except DeliveryError as exc:
            error, retry, retry_after = str(exc), exc.retry, exc.retry_after
        except TimeoutError:
            error, retry, retry_after = (
                f"{sink.name}: no answer in {self.settings.attempt_timeout_s:g} s",
                True,
                None,
            )
        else:
            return replace(delivery, attempts=attempts, delivered_at=self._clock.now(), last_error=None)
        now = self._clock.now()
        if retry and now - delivery.event.created_at > self.settings.give_up_after_s:
            error, retry = f"gave up after {attempts} attempts: {error}", False
        if not retry:
            _log.error("event %s (%s) not delivered to %s: %s", delivery.event.id, delivery.event.event_type,
                       sink.name, error)  # fmt: skip
            return replace(delivery, attempts=attempts, last_error=error, abandoned=True)
        delay = min(self.settings.first_retry_s * 2 ** (attempts - 1), self.settings.max_retry_s)
        if retry_after is not None:
            delay = min(max(delay, retry_after), self.settings.max_retry_s)
        _log.warning("event %s to %s failed (attempt %d), next in %.1f s: %s", delivery.event.id, sink.name,
                     attempts, delay, error)  # fmt: skip
        return replace(delivery, attempts=attempts, next_attempt_at=now + delay, last_error=error)


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event, grace_s: float) -> bool:
    """Run ``work``; once ``stop`` is set, give it ``grace_s`` more, then cancel it and return False."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            await asyncio.wait({task}, timeout=grace_s)
    finally:
        for pending in (task, stopper):
            pending.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
    return not stop.is_set()
