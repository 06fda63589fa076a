"""A local copy of an etcd key (or prefix) kept in sync across etcd restarts: ``KeyWatch``.

Who calls it: the etcd elector (followers watch the leader key) and the engine's host-lease view
(watches every agent's heartbeat keys). Both need the same thing: the current keys, and to be told
at once when they change, even if etcd restarts or the network drops under a quiet watch.

How it stays honest: it reads the keys, then watches from the next revision. The watch ends by an
exception when its stream ends (``EtcdClient.watch`` never hangs silently on EOF), and a probe calls
etcd's status every ``probe_interval_s``: a failed probe (etcd gone, or the stream wedged behind a
dead connection) or a new raft term / member (etcd restarted faster than the probe) tears the
watch down. Then, once etcd answers again, it re-watches from the last revision it saw, so no
change is missed; if etcd compacted that history, it re-reads the keys instead. ``synced`` is
False while it cannot vouch for its copy, so readers can refuse to draw conclusions from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from haven.coordination.etcd import EtcdClient, KeyValue, WatchCompacted, WatchEvent
from haven.domain.errors import CoordinationError, CoordinationUnavailable
from haven.domain.waiting import within

log = logging.getLogger("haven.coordination")


class Notifier:
    """Wakes every waiter on each ``notify``; waiters may give up after a timeout."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout_s: float | None = None) -> bool:
        """True if notified, False if ``timeout_s`` passed first."""
        event = self._event
        try:
            await within(event.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


class _Restarted(CoordinationUnavailable):
    """etcd answered from a new raft term or another member: the open stream may be dead."""


async def cancel_and_wait(tasks: list[asyncio.Task[None]], bound_s: float) -> None:
    """Cancel the tasks and wait for them, at most ``bound_s``: a task stuck in closing an HTTP stream
    is left behind (logged) rather than holding up an engine's stop or a resignation forever."""
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=bound_s)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, (CoordinationError, CoordinationUnavailable)):
                log.warning("a watch task ended with %r while stopping", exc)
    if pending:
        log.warning("%d watch task(s) still running %.1f s after cancel", len(pending), bound_s)


class KeyWatch:
    """``keys`` mirrors ``key`` (or every key under it when ``prefix``) while ``run`` runs."""

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        *,
        prefix: bool = False,
        probe_interval_s: float = 1.0,
        on_event: Callable[[WatchEvent], None] | None = None,
        on_reset: Callable[[dict[str, KeyValue]], None] | None = None,
        on_sync: Callable[[bool], None] | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.prefix = prefix
        self.probe_interval_s = probe_interval_s
        self.keys: dict[str, KeyValue] = {}
        self.revision = 0  # the store revision our copy reflects
        self.synced = False
        self.watches_opened = 0  # 1 + how often the watch was re-established (tests, metrics)
        self.changes = Notifier()
        self._on_event = on_event
        self._on_reset = on_reset
        self._on_sync = on_sync

    async def run(self) -> None:
        """Mirror the keys until cancelled; etcd outages are logged and waited out, never raised."""
        reported = False
        while True:
            try:
                if self.revision == 0:
                    await self._reset()
                await self._watch_with_probe()
            except WatchCompacted as exc:
                log.warning("watch on %s: %s; re-reading the keys", self.key, exc)
                self.revision = 0
            except CoordinationError as exc:  # e.g. a refused watch: re-read, then retry
                log.warning("watch on %s: %s", self.key, exc)
                self.revision = 0
                await self._lost()
            except CoordinationUnavailable as exc:
                if not reported or isinstance(exc, _Restarted):
                    log.warning("watch on %s interrupted: %s; re-watching from revision %d when back",
                                self.key, exc.message, self.revision + 1)  # fmt: skip
                reported = True
                await self._lost()
                continue
            reported = False

    async def _lost(self) -> None:
        self._set_synced(False)
        await asyncio.sleep(self.probe_interval_s)

    def _set_synced(self, synced: bool) -> None:
        if synced != self.synced:
            self.synced = synced
            if self._on_sync is not None:
                self._on_sync(synced)
            self.changes.notify()

    async def _reset(self) -> None:
        revision, kvs = await self.client.get(self.key, prefix=self.prefix)
        self.keys = {kv.key: kv for kv in kvs}
        self.revision = revision
        if self._on_reset is not None:
            self._on_reset(dict(self.keys))
        self.changes.notify()

    async def _watch_with_probe(self) -> None:
        first = await self.client.status()
        tasks = [
            asyncio.create_task(self._consume()),
            asyncio.create_task(self._probe(first.member_id, first.raft_term)),
        ]
        self.watches_opened += 1
        self._set_synced(True)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raises why the watch ended
        finally:
            await cancel_and_wait(tasks, self.client.timeout_s * 4)

    async def _consume(self) -> None:
        async for events in self.client.watch(self.key, prefix=self.prefix, start_revision=self.revision + 1):
            for event in events:
                if event.deleted:
                    self.keys.pop(event.kv.key, None)
                else:
                    self.keys[event.kv.key] = event.kv
                self.revision = max(self.revision, event.kv.mod_revision)
                if self._on_event is not None:
                    self._on_event(event)
            self.changes.notify()

    async def _probe(self, member_id: str, raft_term: int) -> None:
        while True:
            await asyncio.sleep(self.probe_interval_s)
            status = await self.client.status()
            if (status.member_id, status.raft_term) != (member_id, raft_term):
                raise _Restarted(f"etcd at {self.client.url} answered from raft term {status.raft_term} "
                                 f"(was {raft_term}): it restarted or changed leader")  # fmt: skip
