"""RabbitMQ's own state as evidence: its resource alarms (publishers blocked) and Nova's queues backed up.

Called by haven.drill.faults_observe (the fault drill and bench/explain.py run ``watch_broker`` beside
the canary, on the lab's transport URL). What it sees needs nothing but AMQP, the access haven already
has to Nova's bus for its notifications (``[diagnosis] transport_url``):

- **an alarm**: each look opens a connection that offers the ``connection.blocked`` capability and
  publishes one unroutable message (dropped by the broker); while a memory or disk alarm is in effect,
  RabbitMQ answers ``connection.blocked`` and reads nothing more from that connection (its reason,
  "low on memory" or "low on disk", py-amqp does not pass on: the evidence says "a memory or disk
  alarm"). That is an ERROR of ``rabbitmq`` in the scope ``broker:alarm``,
  dated at the first look that saw it; a look that is not blocked is rabbitmq HEALTHY in that scope.
- **a backlog**: the ready messages of each watched queue (a passive declare: Nova's own queues,
  ``conductor`` and ``scheduler``, never created here), plus its unacknowledged ones when a source
  gives them (``BrokerSeen.unacked``; AMQP cannot: Nova's consumers take every message at once, so a
  storm sits unacknowledged in the consumer, not ready); ``backlog`` or more is an ERROR of ``rabbitmq``
  in ``broker:queue:<name>``, fewer is HEALTHY there.

Only what changed is kept (the store's evidence is keyed by scope and time), so a quiet broker writes
nothing after its first look. A broker that cannot be reached is no evidence here (the control plane's
AMQP probe and Nova's own failures say that).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from haven.diagnosis import EvidenceKind, NodeEvent
from haven.diagnosis.words import clock as hhmmss
from haven.domain.clock import Clock
from haven.store import Store

_log = logging.getLogger(__name__)
NODE = "rabbitmq"
NOVA_QUEUES = ("conductor", "scheduler")


@dataclass(frozen=True)
class BrokerSeen:
    """One look at the broker: why it blocked publishers (None: it did not), each queue's ready messages."""

    blocked: str | None
    ready: Mapping[str, int] = field(default_factory=dict)
    # each queue's messages delivered to its consumer and not acknowledged yet, when known (AMQP cannot
    # tell: RabbitMQ's management API, its Prometheus plugin or its CLI can): Nova's consumers take
    # every message at once (oslo.messaging's prefetch is unlimited), so a backlog is unacknowledged
    unacked: Mapping[str, int] = field(default_factory=dict)
    unacked_at: float | None = None  # when ``unacked`` was read (None: with this look)


@dataclass
class BrokerEvidence:
    """Turns looks into evidence, keeping only changes (pure: no I/O)."""

    backlog: int = 1000
    _alarm: str | None = None  # the reason last kept ("" for healthy)
    _queues: dict[str, bool] = field(default_factory=dict)  # queue -> backed up, as last kept
    _short: dict[str, tuple[float, int]] = field(default_factory=dict)  # queue -> last seen short: when, held

    def observe(self, seen: BrokerSeen, now: float) -> dict[str, NodeEvent]:
        events: dict[str, NodeEvent] = {}
        alarm = seen.blocked or ""
        if alarm != self._alarm:
            if alarm:
                detail = "RabbitMQ blocks every publisher: a memory or disk alarm is in effect"
                events[f"broker:alarm:{now:.3f}"] = NodeEvent(
                    NODE, EvidenceKind.ERROR, now, detail, "broker:alarm"
                )
            elif self._alarm is not None:
                events[f"broker:alarm:{now:.3f}"] = NodeEvent(
                    NODE, EvidenceKind.HEALTHY, now, "RabbitMQ accepts publishers again", "broker:alarm"
                )
            self._alarm = alarm
        for queue, ready in sorted(seen.ready.items()):
            unacked = seen.unacked.get(queue, 0)
            held = ready + unacked
            backed_up = held >= self.backlog
            if not backed_up:  # when it was last known short: the counts read then, both of them
                read_at = now if seen.unacked_at is None else min(now, seen.unacked_at)
                self._short[queue] = (max(read_at, self._short.get(queue, (read_at, 0))[0]), held)
            if self._queues.get(queue) == backed_up:
                continue
            scope = f"broker:queue:{queue}"
            if backed_up:
                detail = f"Nova's {queue} queue holds {held:,} messages not yet taken"
                if unacked:
                    detail = (f"Nova's {queue} queue holds {held:,} messages not yet done ({ready:,} ready, "
                              f"{unacked:,} delivered to its consumer and not acknowledged)")  # fmt: skip
                # The backlog began after the last look that saw the queue short (the unacknowledged
                # count is read every 20 s or so): dated there, as a failing probe is dated at its last
                # pass, so a backlog's victims (computes whose reports wait behind it) do not seem older.
                at = now
                if queue in self._short:
                    at, before = self._short[queue]
                    detail += f", seen at {hhmmss(now)}; {before:,} at {hhmmss(at)}"
                events[f"{scope}:{now:.3f}"] = NodeEvent(NODE, EvidenceKind.ERROR, at, detail, scope)
            elif queue in self._queues:
                # Dated as the short reading is (never after it): a backlog that comes back is dated at
                # its last short reading, which must not fall before this end of the last one.
                at, _ = self._short[queue]
                detail = f"Nova's {queue} queue is down to {held:,} messages"
                events[f"{scope}:{now:.3f}"] = NodeEvent(NODE, EvidenceKind.HEALTHY, at, detail, scope)
            self._queues[queue] = backed_up
        return events


def look(
    url: str, queues: Sequence[str] = NOVA_QUEUES, timeout_s: float = 3.0, blocked_wait_s: float = 1.0
) -> BrokerSeen:
    """One look through AMQP at ``url`` (rabbit://user:password@host:port/vhost); blocking. A blocked
    broker answers the publish at once: ``blocked_wait_s`` is how long its silence counts as not blocked."""
    import amqp  # type: ignore[import-untyped]

    parts = urlsplit(url)
    vhost = unquote(parts.path[1:]) or "/"
    blocked: list[str] = []
    connection = amqp.Connection(
        f"{parts.hostname}:{parts.port or 5672}", userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"), virtual_host=vhost, connect_timeout=timeout_s,
        read_timeout=timeout_s, write_timeout=timeout_s,
        on_blocked=lambda reason: blocked.append(str(reason)),
    )  # fmt: skip
    connection.connect()
    ready: dict[str, int] = {}
    try:
        for queue in queues:
            channel = connection.channel()
            try:
                _, count, _ = channel.queue_declare(queue, passive=True)
                ready[queue] = int(count)
            except amqp.exceptions.NotFound:
                continue  # that service declared no such queue: nothing to say of it
            finally:
                if channel.is_open:
                    channel.close()
        channel = connection.channel()
        channel.basic_publish(
            amqp.Message(b""), exchange="", routing_key=f"haven-broker-look-{uuid.uuid4().hex}"
        )
        deadline = time.monotonic() + blocked_wait_s
        while not blocked and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.2)
            except TimeoutError:
                continue
    finally:
        if blocked:
            connection.collect()  # a blocked broker reads no close: drop the socket
        else:
            try:
                connection.close()
            except Exception:
                connection.collect()
    return BrokerSeen(blocked[0] if blocked else None, ready)


async def watch_broker(
    url: str, store: Store, clock: Clock, period_s: float = 2.0,
    looker: Callable[[str], BrokerSeen] = look,
) -> None:  # fmt: skip
    """Until cancelled: a look every ``period_s``, what changed kept as evidence in ``store``."""
    evidence = BrokerEvidence()
    while True:
        try:
            seen = await asyncio.to_thread(looker, url)
        except Exception as exc:  # unreachable or refused: no evidence from here (see the docstring)
            _log.debug("the broker look failed: %s", exc)
        else:
            now = clock.now()
            events = evidence.observe(seen, now)
            if events:
                await asyncio.to_thread(store.keep_evidence, events, now)
        await clock.sleep_until(clock.now() + period_s)
