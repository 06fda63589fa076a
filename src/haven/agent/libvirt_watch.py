"""Watching libvirt's domain events, reconnecting whenever libvirtd goes away (libvirt-python).

Who calls it: ``haven.agent.runner`` runs ``LibvirtWatch.run`` with a callback that turns each
event into a VM notification (``haven.agent.reports.vm_payload``). This is the only module that
imports libvirt (no type stubs exist: mypy treats it as Any, so this wrapper keeps the typed
surface small). libvirt-python is the optional ``agent`` extra (``make agent-deps``).

How, as masakari-monitors' instance monitor does it and as measured (FACTS.md):
- ``virEventRegisterDefaultImpl`` once per process, before the first ``open``, and a daemon
  thread that runs ``virEventRunDefaultImpl`` forever: every callback runs on that thread, so the
  callback given here must only hand the event over (the runner uses call_soon_threadsafe).
- A connection thread opens the URI read-only, registers the lifecycle, reboot, watchdog, I/O
  error (and reason) and control-error callbacks, turns on keep-alive (a libvirtd that stops
  answering is noticed after ``interval * (count + 1)`` s) and a close callback (a libvirtd that
  exits or restarts is noticed at once). When either fires it drops the connection and opens a
  new one every ``reconnect_interval_s`` until libvirtd answers again.
- Plain ``test:///`` has no keep-alive (measured); that is not an error.
Events that happen while libvirtd is down are not replayed by libvirt (the monitor loses them too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt

from haven.agent.reports import (
    EVENT_ID_CONTROL_ERROR,
    EVENT_ID_IO_ERROR,
    EVENT_ID_IO_ERROR_REASON,
    EVENT_ID_LIFECYCLE,
    EVENT_ID_REBOOT,
    EVENT_ID_WATCHDOG,
    NO_DETAIL,
)

log = logging.getLogger("haven.agent")

# (event id, event type or action, lifecycle detail, domain uuid); called on libvirt's event thread.
EventSink = Callable[[int, int, int, str], None]

_loop_lock = threading.Lock()
_loop_started = False


def ensure_event_loop() -> None:
    """Register libvirt's default event loop and run it on a daemon thread (once per process)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # Without a handler libvirt prints every error (a refused reconnect...) to stderr.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _loop_started = True


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


class LibvirtWatch:
    def __init__(
        self,
        uri: str,
        sink: EventSink,
        *,
        keepalive_interval_s: int = 5,
        keepalive_count: int = 3,
        reconnect_interval_s: float = 2.0,
    ) -> None:
        self.uri = uri
        self.sink = sink
        self.keepalive = (keepalive_interval_s, keepalive_count)
        self.reconnect_interval_s = reconnect_interval_s
        self.connected = threading.Event()
        self.connections = 0  # how many times a connection was opened (reconnects = connections - 1)
        self._stop = threading.Event()

    async def run(self) -> None:
        """Watch until cancelled; the connection thread is stopped and joined on the way out."""
        ensure_event_loop()
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def body() -> None:
            try:
                self._connect_loop()
            finally:
                loop.call_soon_threadsafe(finished)

        self._stop.clear()
        thread = threading.Thread(target=body, name="libvirt-connection", daemon=True)
        thread.start()
        try:
            await asyncio.shield(done)
        finally:
            self._stop.set()
            await asyncio.to_thread(thread.join, 10)

    def _connect_loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                conn = libvirt.openReadOnly(self.uri)
            except libvirt.libvirtError as exc:
                if not failing:
                    log.warning("libvirt at %s: %s; retrying every %.1f s",
                                self.uri, exc.get_error_message(), self.reconnect_interval_s)  # fmt: skip
                failing = True
                self._stop.wait(self.reconnect_interval_s)
                continue
            failing = False
            try:
                self._watch(conn)
            finally:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            if not self._stop.is_set():
                log.warning("libvirt connection to %s lost; reconnecting", self.uri)
                self._stop.wait(self.reconnect_interval_s)

    def _watch(self, conn: Any) -> None:
        """Register the callbacks, then wait until the connection dies or the watch is stopped."""
        closed = threading.Event()
        conn.registerCloseCallback(lambda _conn, _reason, _opaque: closed.set(), None)
        ids = [
            conn.domainEventRegisterAny(None, event_id, handler, None)
            for event_id, handler in self._handlers()
        ]
        try:
            conn.setKeepAlive(*self.keepalive)
        except libvirt.libvirtError:
            log.info(
                "libvirt at %s has no keep-alive (plain test:/// driver); relying on close events", self.uri
            )
        self.connections += 1
        self.connected.set()
        log.info("watching libvirt at %s (connection %d)", self.uri, self.connections)
        try:
            while not self._stop.is_set() and not closed.wait(0.5):
                if conn.isAlive() != 1:
                    break
        finally:
            self.connected.clear()
            for callback_id in ids:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.domainEventDeregisterAny(callback_id)
            with contextlib.suppress(libvirt.libvirtError):
                conn.unregisterCloseCallback()

    def _emit(self, event_id: int, event_type: int, detail: int, dom: Any) -> None:
        try:
            self.sink(event_id, event_type, detail, str(dom.UUIDString()))
        except Exception:  # a bug here must not kill libvirt's event thread
            log.exception("handling libvirt event %d/%d/%d failed", event_id, event_type, detail)

    def _handlers(self) -> list[tuple[int, Callable[..., None]]]:
        # The callback signatures are libvirt-python's, one per event id.
        def lifecycle(_conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
            self._emit(EVENT_ID_LIFECYCLE, event, detail, dom)

        def reboot(_conn: Any, dom: Any, _opaque: Any) -> None:
            self._emit(EVENT_ID_REBOOT, NO_DETAIL, NO_DETAIL, dom)

        def watchdog(_conn: Any, dom: Any, action: int, _opaque: Any) -> None:
            self._emit(EVENT_ID_WATCHDOG, action, NO_DETAIL, dom)

        def io_error(_conn: Any, dom: Any, _src: str, _dev: str, action: int, _opaque: Any) -> None:
            self._emit(EVENT_ID_IO_ERROR, action, NO_DETAIL, dom)

        def io_error_reason(_c: Any, dom: Any, _s: str, _d: str, _action: int, _r: str, _o: Any) -> None:
            self._emit(EVENT_ID_IO_ERROR_REASON, NO_DETAIL, NO_DETAIL, dom)

        def control_error(_conn: Any, dom: Any, _opaque: Any) -> None:
            self._emit(EVENT_ID_CONTROL_ERROR, NO_DETAIL, NO_DETAIL, dom)

        return [
            (EVENT_ID_LIFECYCLE, lifecycle),
            (EVENT_ID_REBOOT, reboot),
            (EVENT_ID_WATCHDOG, watchdog),
            (EVENT_ID_IO_ERROR, io_error),
            (EVENT_ID_IO_ERROR_REASON, io_error_reason),
            (EVENT_ID_CONTROL_ERROR, control_error),
        ]
