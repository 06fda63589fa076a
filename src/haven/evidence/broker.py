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

- **unreachable**: a look that cannot open its AMQP connection on any host of the URL (refused, no
  answer within the look's timeout, the handshake refused; TLS when the URL says ``?ssl=1``, verified
  against the CA its ``ssl_ca_file`` names and the host connected to named by the certificate (as Nova's
  oslo.messaging and kombu check it), else the system's CAs: ``tls_for``) ``misses`` times in a row is a
  DOWN of ``rabbitmq`` in the scope ``broker:reach``, "RabbitMQ unreachable since T" (dated at the first
  failed look's start: it answered at the look before), kept again every ``repeat_s`` while it lasts so it
  stays in the ranker's window; the next look that connects is rabbitmq HEALTHY there, and so is a watcher's
  first look that connects (it ends what an earlier term kept and did not see end). One failed look is
  no evidence (a connection timed out on a loaded host). This is what ``haven serve`` knows of the bus
  without ``[controlplane]`` (its AMQP probe): haven.service.explaining runs ``watch_broker`` on
  ``[diagnosis] transport_url``, the cloud's bus it reads Nova's notifications from. A look that
  connected and then failed (a passive declare past its timeout: a slow broker) says nothing of the
  reach, and a failed write of the evidence is retried with the next look's (the watch never ends for it).

Only what changed is kept (the store's evidence is keyed by scope and time), so a quiet broker writes
nothing after its first look.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from haven.diagnosis import EvidenceKind, NodeEvent
from haven.diagnosis.words import clock as hhmmss
from haven.domain.clock import Clock
from haven.domain.masking import mask_words
from haven.evidence.transport_url import hosts as hosts
from haven.evidence.transport_url import tls_for
from haven.evidence.transport_url import tls_options as tls_options
from haven.evidence.transport_url import uses_tls as uses_tls
from haven.store import Store

_log = logging.getLogger(__name__)
NODE = "rabbitmq"
NOVA_QUEUES = ("conductor", "scheduler")
REACH = "broker:reach"  # the scope of the broker's reachability


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
    misses: int = 2  # failed looks in a row before the broker is unreachable (one can be the load's)
    repeat_s: float = 300.0  # an unreachable broker is kept again this often (the ranker's window)
    _alarm: str | None = None  # the reason last kept ("" for healthy)
    _failed: int = 0  # failed looks in a row
    _failed_since: float = 0.0  # the first one's start
    _unreachable_kept_at: float | None = None  # when "unreachable" was last kept (None: reachable)
    _reached: bool = False  # a look connected and its HEALTHY was kept
    connected_failing: bool = False  # the last look connected, then failed (logged once per run)
    _queues: dict[str, bool] = field(default_factory=dict)  # queue -> backed up, as last kept
    _short: dict[str, tuple[float, int]] = field(default_factory=dict)  # queue -> last seen short: when, held

    def unreachable(self, started: float, now: float, why: str) -> dict[str, NodeEvent]:
        """A look begun at ``started`` could not connect (``why``: on which host, what it got)."""
        self.connected_failing = False
        if not self._failed:
            self._failed_since = started
        self._failed += 1
        kept = self._unreachable_kept_at
        if self._failed < self.misses or (kept is not None and now - kept < self.repeat_s):
            return {}
        since = self._failed_since
        at = since if kept is None else now  # again: dated now, so it stays in the ranker's window
        detail = f"RabbitMQ unreachable since {hhmmss(since)}: {why}"
        self._unreachable_kept_at, self._reached = now, False
        return {f"{REACH}:{at:.3f}": NodeEvent(NODE, EvidenceKind.DOWN, at, detail, REACH)}

    def connected_but_failed(self) -> dict[str, NodeEvent]:
        """A look connected, then failed (a passive declare past its timeout): the broker was reached, so
        a run of failed connections ends here, and nothing is said of its reach."""
        self._failed = 0
        self.connected_failing = True
        return {}

    def reached(self, now: float) -> dict[str, NodeEvent]:
        """A look connected at ``now``: it ends an unreachable broker (and at the first look, an earlier
        term's); otherwise nothing."""
        self._failed = 0
        self.connected_failing = False
        if self._reached and self._unreachable_kept_at is None:
            return {}
        ended = self._unreachable_kept_at is not None
        self._unreachable_kept_at, self._reached = None, True
        detail = "RabbitMQ answers again" if ended else "RabbitMQ answers"
        return {f"{REACH}:{now:.3f}": NodeEvent(NODE, EvidenceKind.HEALTHY, now, detail, REACH)}

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
    """One look through AMQP at ``url`` (rabbit://user:password@host:port/vhost, or oslo.messaging's
    several hosts, ``rabbit://u:p@h1:5672,u:p@h2:5672/vhost``: the first that connects); blocking. A
    blocked broker answers the publish at once: ``blocked_wait_s`` is how long its silence counts as not
    blocked. Unreachable: BrokerUnreachable, naming each host and what it got (never the password)."""
    import amqp  # type: ignore[import-untyped]

    blocked: list[str] = []
    failed: list[str] = []
    for address, userid, password, vhost in hosts(url):
        connection = amqp.Connection(
            address, userid=userid, password=password, virtual_host=vhost, connect_timeout=timeout_s,
            read_timeout=timeout_s, write_timeout=timeout_s, ssl=tls_for(url, address),
            on_blocked=lambda reason: blocked.append(str(reason)),
        )  # fmt: skip
        try:
            connection.connect()
        except Exception as exc:  # refused, timed out, the handshake refused: the next host, if any
            connection.collect()
            said = mask_words(str(exc), [password])  # never the password, never a word mangled
            failed.append(f"{address}: {type(exc).__name__}: {said}"[:300])
            continue
        break
    else:
        raise BrokerUnreachable("; ".join(failed) or "no host in the transport URL")
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


class BrokerUnreachable(Exception):
    """No host of the transport URL accepted an AMQP connection (its words: each host's error)."""


async def watch_broker(
    url: str, store: Store, clock: Clock, period_s: float = 2.0,
    looker: Callable[[str], BrokerSeen] = look,
) -> None:  # fmt: skip
    """Until cancelled: a look every ``period_s``, what changed kept as evidence in ``store``."""
    evidence = BrokerEvidence()
    pending: dict[str, NodeEvent] = {}  # evidence a failed write left, kept with the next
    while True:
        started = clock.now()
        try:
            seen = await asyncio.to_thread(looker, url)
        except BrokerUnreachable as exc:  # no host connected: refused, no answer, the handshake refused
            now = clock.now()
            _log.debug("the broker look failed: %s", exc)
            events = evidence.unreachable(started, now, str(exc))
        except Exception as exc:  # connected, then the look failed (a slow broker): no word on its reach
            now = clock.now()
            if not evidence.connected_failing:
                _log.warning("the broker look failed once connected: %s: %s", type(exc).__name__, exc)
            events = evidence.connected_but_failed()
        else:
            now = clock.now()
            events = {**evidence.reached(now), **evidence.observe(seen, now)}
        pending.update(events)
        if pending:
            try:
                await asyncio.to_thread(store.keep_evidence, dict(pending), now)
            except Exception:  # the database blinked: kept with the next look's, never the watch's end
                _log.warning("could not keep the broker's evidence (retried at the next look)", exc_info=True)
            else:
                pending.clear()
        await clock.sleep_until(clock.now() + period_s)
