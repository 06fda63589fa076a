"""``EventHub``: the engine's events handed to every open dashboard page as they happen.

``haven serve`` adds the hub to the engine's event sinks (beside the metrics and the publisher); each
server-sent-events stream of the dashboard subscribes and reads the events from its own bounded queue,
so the pages follow the engine without reading the database on a timer. A page that falls too far
behind (its queue full: a rack failing, a slow browser) is told to reload once instead of being
fed a partial history; the engine never waits for a page.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from haven.domain.events import EngineEvent

QUEUE_SIZE = 2000


@dataclass(eq=False)
class Subscription:
    """One page's view of the events: read ``queue``; ``overflowed`` once it lost one."""

    queue: asyncio.Queue[EngineEvent] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    overflowed: bool = False
    closed: bool = False  # the server is stopping: end the stream
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class EventHub:
    """An EventSink (call it with each event) that fans events out to the subscribed pages."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def __call__(self, event: EngineEvent) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._deliver(event)
        else:  # an event from a worker thread: handed to the loop that owns the queues
            loop.call_soon_threadsafe(self._deliver, event)

    def _deliver(self, event: EngineEvent) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                sub.overflowed = True
            sub.wake.set()

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A subscription for as long as the ``with`` lasts (one server-sent-events stream)."""
        self._loop = asyncio.get_running_loop()
        sub = Subscription()
        with self._lock:
            self._subs.add(sub)
        try:
            yield sub
        finally:
            with self._lock:
                self._subs.discard(sub)

    def close(self) -> None:
        """The server is stopping: every stream ends now (an open page would hold the stop up)."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.closed = True
            sub.wake.set()

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)
