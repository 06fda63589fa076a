"""Leader election on etcd: lease + create-if-absent transaction + keep-alive (``EtcdElector``).

Who calls it: the engine, built by ``elector_from_url("etcd://HOST:PORT", identity)``; the contract
(is_leader / epoch / wait_*) is in election.py. tooz has no leader election on etcd, so this is ours.

Campaign: grant a lease (TTL ``ttl_s``), then in one transaction create ``/haven/<cluster>/leader``
= identity, attached to the lease, only if the key does not exist (create_revision == 0). The winner's
epoch is the key's create_revision: etcd's revision counter only grows, so every new term has a
larger epoch, usable as a fencing token in the database.

Leading: refresh the lease every TTL/3. The local deadline is the send time of the last successful
refresh + TTL - ``margin_s`` (measured on the monotonic clock before the request left, so the lease
on the server lives at least until then). ``is_leader()`` compares against it without a network
call; past it the elector has stepped down, whatever the network is doing, before etcd could let
anyone else win. It also steps down if the leader key is gone or belongs to another term. Having
stepped down it revokes its lease (when etcd answers) and campaigns again with a new lease: a
leader never comes back under an old epoch.

Following: a ``KeyWatch`` on the leader key wakes the follower the moment the key is deleted (lease
revoked, or expired after the leader died); a read every ``probe_interval_s`` is the backstop if a
watch is ever late, so a takeover happens within TTL + about a second of the leader's last refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from haven.coordination.election import LeaderStatus
from haven.coordination.etcd import EtcdClient, KeyValue
from haven.coordination.watching import KeyWatch, Notifier, cancel_and_wait
from haven.domain.errors import CoordinationError, CoordinationUnavailable
from haven.domain.waiting import within

log = logging.getLogger("haven.coordination")

DEFAULT_TTL_S = 3
DEFAULT_MARGIN_S = 0.5
_UNCHANGED = "\0unchanged"  # sentinel for _set(leader=...): no identity contains a NUL


class EtcdElector:
    """One engine's candidacy on one etcd cluster; ``run()`` campaigns and leads until cancelled."""

    def __init__(
        self,
        client: EtcdClient,
        identity: str,
        *,
        cluster: str = "default",
        ttl_s: int = DEFAULT_TTL_S,
        margin_s: float = DEFAULT_MARGIN_S,
        probe_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl_s < 2:
            raise ValueError(f"ttl_s={ttl_s}: etcd raises lease TTLs below 2 s to 2 s; use 2 or more")
        if not 0 < margin_s < ttl_s / 2:
            raise ValueError(f"margin_s={margin_s} must be positive and under half the TTL ({ttl_s} s)")
        self.client = client
        self.identity = identity
        self.backend = "etcd"
        self.key = f"/haven/{cluster}/leader"
        self.ttl_s = ttl_s
        self.margin_s = margin_s
        self.probe_interval_s = probe_interval_s
        self._clock = clock
        self._changes = Notifier()
        self._lease = 0  # the lease we hold or held; revoked before campaigning again
        self._checked = False  # etcd answered check() already: run() need not ask again
        self._epoch: int | None = None
        self._deadline = 0.0  # leading only while clock() < this
        self._leader: str | None = None
        self._reachable = False
        self._reason = "not started"
        self.terms = 0  # how many times this elector won (tests read it)

    # --- the Elector contract ---------------------------------------------------------------

    def is_leader(self) -> bool:
        return self._epoch is not None and self._clock() < self._deadline

    def epoch(self) -> int | None:
        return self._epoch if self.is_leader() else None

    def status(self) -> LeaderStatus:
        leading = self.is_leader()
        leader = self.identity if leading else (None if self._leader == self.identity else self._leader)
        return LeaderStatus(self.identity, leading, self.epoch(), leader, self._reachable, self._reason)

    async def wait_leading(self) -> int:
        while True:
            epoch = self.epoch()
            if epoch is not None:
                return epoch
            await self._changes.wait()

    async def wait_not_leading(self) -> None:
        while self.is_leader():
            await self._changes.wait(max(0.0, self._deadline - self._clock()))

    async def changed(self, timeout_s: float | None = None) -> LeaderStatus:
        await self._changes.wait(timeout_s)
        return self.status()

    async def check(self) -> None:
        """Raise ``CoordinationUnavailable`` (naming the URL) unless etcd answers now."""
        await self.client.status()
        self._checked = True

    async def run(self) -> None:
        """Campaign and lead until cancelled; raises ``CoordinationUnavailable`` only at start, and
        not at all after ``check()`` passed (etcd lost between the two is campaigned through)."""
        if not self._checked:
            await self.check()  # at start, an unreachable etcd is an error naming the URL
        self._set(reachable=True, reason="started")
        watch = KeyWatch(self.client, self.key, probe_interval_s=self.probe_interval_s)
        watcher = asyncio.create_task(watch.run())
        try:
            while True:
                try:
                    await self._campaign(watch)
                    await self._lead()
                except CoordinationUnavailable as exc:
                    if self._reachable:
                        log.warning("%s: %s; campaigning again when it is back", self.identity, exc.message)
                    self._set(reachable=False, reason=exc.message)
                    await asyncio.sleep(self.probe_interval_s)
                except CoordinationError as exc:
                    log.error("%s: %s", self.identity, exc)
                    self._set(reason=str(exc))
                    await asyncio.sleep(self.probe_interval_s)
        finally:
            await cancel_and_wait([watcher], self.client.timeout_s * 8)
            await self.resign()

    async def aclose(self) -> None:
        """Release the connection to etcd (after ``run`` ended)."""
        await self.client.aclose()

    async def resign(self) -> None:
        """Stop leading now and hand over at once (revoke the lease; best effort if etcd is away)."""
        was_leading = self.is_leader()
        self._step_down("resigned")
        if was_leading:
            log.info("%s resigned leadership", self.identity)
        with contextlib.suppress(CoordinationError, CoordinationUnavailable, TimeoutError):
            await within(self._revoke_old_lease(), self.client.timeout_s * 2)

    # --- campaigning and leading --------------------------------------------------------------

    async def _campaign(self, watch: KeyWatch) -> None:
        """Return once this elector holds the leader key."""
        while True:
            await self._revoke_old_lease()
            _, kvs = await self.client.get(self.key)
            self._set(reachable=True, leader=_holder(kvs[0]) if kvs else None)
            if not kvs and await self._try_win():
                return
            # The watch wakes us when the key goes; the timeout is the backstop read.
            await watch.changes.wait(self.probe_interval_s)

    async def _try_win(self) -> bool:
        sent = self._clock()
        lease, ttl = await self.client.grant(self.ttl_s)
        self._lease = lease
        created, kv = await self.client.create(self.key, self.identity.encode(), lease)
        if not created or kv is None:
            self._set(leader=_holder(kv) if kv else None)
            return False  # lost the race; _revoke_old_lease frees our lease
        self._epoch = kv.create_revision
        self._deadline = sent + ttl - self.margin_s
        self.terms += 1
        log.info("%s is the leader (epoch %d)", self.identity, kv.create_revision)
        self._set(leader=self.identity, reason=f"won the election (epoch {kv.create_revision})")
        return True

    async def _lead(self) -> None:
        """Keep the lease alive; return once leadership is over (the reason is in the status)."""
        assert self._epoch is not None
        epoch, unreachable_since = self._epoch, None
        while True:
            now = self._clock()
            if now >= self._deadline:
                why = "could not refresh the lease in time" + (
                    f" (etcd at {self.client.url} unreachable)" if unreachable_since is not None else ""
                )
                return self._stop_leading(why)
            await asyncio.sleep(min(self.ttl_s / 3, self._deadline - now))
            sent = self._clock()
            try:
                ttl, kvs = await within(self._refresh(), max(0.05, self._deadline - sent))
            except (CoordinationUnavailable, TimeoutError) as exc:
                if unreachable_since is None:
                    unreachable_since = sent
                    log.warning("%s: etcd at %s not answering while leading (%s); stepping down in %.1f s "
                                "unless it answers", self.identity, self.client.url, type(exc).__name__,
                                max(0.0, self._deadline - self._clock()))  # fmt: skip
                self._set(reachable=False)
                continue
            unreachable_since = None
            self._set(reachable=True)
            if ttl == 0:
                return self._stop_leading("the lease expired or was revoked")
            if not kvs or kvs[0].create_revision != epoch:
                return self._stop_leading("the leader key was deleted or replaced")
            self._deadline = max(self._deadline, sent + ttl - self.margin_s)

    async def _refresh(self) -> tuple[int, list[KeyValue]]:
        ttl = await self.client.keepalive(self._lease)
        _, kvs = await self.client.get(self.key)
        return ttl, kvs

    def _stop_leading(self, reason: str) -> None:
        log.warning("%s stops leading (epoch %s): %s", self.identity, self._epoch, reason)
        self._step_down(reason)

    def _step_down(self, reason: str) -> None:
        was = self._epoch is not None
        self._epoch, self._deadline = None, 0.0
        if was:
            self._set(leader=None, reason=reason)

    async def _revoke_old_lease(self) -> None:
        if self._lease and not self.is_leader():
            await self.client.revoke(self._lease)
            self._lease = 0

    def _set(
        self, *, reachable: bool | None = None, leader: str | None = _UNCHANGED, reason: str | None = None
    ) -> None:
        before = self.status()
        if reachable is not None:
            self._reachable = reachable
        if leader != _UNCHANGED:
            self._leader = leader
        if reason is not None:
            self._reason = reason
        if self.status() != before or reason is not None:
            self._changes.notify()


def _holder(kv: KeyValue) -> str:
    return kv.value.decode(errors="replace")
