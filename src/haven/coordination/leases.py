"""Host heartbeats as etcd leases: the agent keeps one per channel alive, the engine watches them all.

Who calls it: ``haven agent`` runs a ``HostHeartbeat`` per configured channel (management network,
and where configured a second network, each with its own etcd endpoint/client); the engine runs one
``HostLeaseView`` and the detector's "agent lease" liveness channel reads it.

Key layout: ``/haven/<cluster>/hosts/<host>/<channel>``, attached to that channel's lease, value a
small JSON object (the TTL). The agent refreshes every ``interval_s`` (1 s); the key vanishes when
the lease expires (the agent or its network is gone for a TTL) or is revoked (the agent stopped
cleanly). A keep-alive does not change the key, so etcd sees no write per heartbeat: the engine's
cost is O(hosts that change), not O(hosts) per second.

What the engine can answer: for each host and channel, whether the lease is alive and its last
heartbeat: "now" while the key exists and the view is in sync with etcd, the moment the view lost
sync while it cannot vouch (``synced`` False: an observer problem, not a host problem), and the
moment the key vanished for an expired channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from haven.coordination.etcd import EtcdClient, KeyValue, WatchEvent
from haven.coordination.watching import KeyWatch
from haven.domain.errors import CoordinationError, CoordinationUnavailable
from haven.domain.waiting import within

log = logging.getLogger("haven.coordination")

DEFAULT_TTL_S = 3
DEFAULT_INTERVAL_S = 1.0


def hosts_prefix(cluster: str) -> str:
    return f"/haven/{cluster}/hosts/"


def _check_name(what: str, name: str) -> str:
    if not name or "/" in name or "\0" in name:
        raise ValueError(f"{what} {name!r} must be non-empty, without '/' or NUL")
    return name


class HostHeartbeat:
    """The agent side: one channel's lease for one host, kept alive while ``run`` runs."""

    def __init__(
        self,
        client: EtcdClient,
        host: str,
        channel: str,
        *,
        cluster: str = "default",
        ttl_s: int = DEFAULT_TTL_S,
        interval_s: float = DEFAULT_INTERVAL_S,
        revoke_on_exit: bool = True,
    ) -> None:
        self.client = client
        self.key = hosts_prefix(cluster) + f"{_check_name('host', host)}/{_check_name('channel', channel)}"
        self.ttl_s = ttl_s
        self.interval_s = interval_s
        self.revoke_on_exit = revoke_on_exit
        self.lease = 0
        self.last_ok: float | None = None  # monotonic time of the last successful refresh

    async def run(self) -> None:
        """Heartbeat until cancelled; etcd outages are logged and retried every interval."""
        reported = False
        try:
            while True:
                try:
                    await self._beat()
                    if reported:
                        log.info("heartbeat %s: etcd at %s answers again", self.key, self.client.url)
                    reported = False
                except (CoordinationUnavailable, CoordinationError) as exc:
                    if not reported:
                        log.warning("heartbeat %s: %s; retrying every %.1f s", self.key, exc, self.interval_s)
                    reported = True
                await asyncio.sleep(self.interval_s)
        finally:
            if self.revoke_on_exit and self.lease:
                with contextlib.suppress(CoordinationUnavailable, CoordinationError, TimeoutError):
                    await within(self.client.revoke(self.lease), self.client.timeout_s * 2)

    async def _beat(self) -> None:
        if self.lease and await self.client.keepalive(self.lease) > 0:
            self.last_ok = time.monotonic()
            return
        # First beat, or the lease expired while we could not reach etcd: a new lease and key.
        lease, ttl = await self.client.grant(self.ttl_s)
        await self.client.put(self.key, json.dumps({"ttl": ttl}).encode(), lease)
        self.lease = lease
        self.last_ok = time.monotonic()


@dataclass(frozen=True)
class ChannelHeartbeat:
    """One host's one channel as the engine sees it; times are wall-clock seconds (time.time())."""

    host: str
    channel: str
    alive: bool
    last_heartbeat: float  # now while alive and in sync; when the lease vanished if not alive
    ttl_s: int
    alive_since: float | None = None  # while alive: when the view saw this lease appear (agent (re)started)


@dataclass
class _Entry:
    alive: bool
    since: float  # wall time of the last change the view saw
    ttl_s: int


class HostLeaseView:
    """The engine side: every host's channels and their last heartbeat, mirrored while ``run`` runs."""

    def __init__(
        self,
        client: EtcdClient,
        *,
        cluster: str = "default",
        probe_interval_s: float = 1.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.prefix = hosts_prefix(cluster)
        self._clock = wall_clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lost_sync_at: float | None = None
        self.watch = KeyWatch(client, self.prefix, prefix=True, probe_interval_s=probe_interval_s,
                              on_event=self._on_event, on_reset=self._on_reset,
                              on_sync=self._on_sync)  # fmt: skip

    @property
    def synced(self) -> bool:
        """False while etcd cannot be reached: the view then knows nothing newer than ``lost_sync_at``."""
        return self.watch.synced

    async def run(self) -> None:
        await self.watch.run()

    async def wait_changed(self, timeout_s: float | None = None) -> bool:
        return await self.watch.changes.wait(timeout_s)

    def last_heartbeat(self, host: str, channel: str) -> ChannelHeartbeat | None:
        """The channel's state, or None if this host never heartbeat on it while the view ran."""
        entry = self._entries.get((host, channel))
        if entry is None:
            return None
        if entry.alive:
            when = self._clock() if self.synced else (self._lost_sync_at or entry.since)
        else:
            when = entry.since
        return ChannelHeartbeat(
            host, channel, entry.alive, when, entry.ttl_s, entry.since if entry.alive else None
        )

    def snapshot(self) -> dict[str, dict[str, ChannelHeartbeat]]:
        """host -> channel -> heartbeat, for every host seen."""
        out: dict[str, dict[str, ChannelHeartbeat]] = {}
        for host, channel in list(self._entries):
            beat = self.last_heartbeat(host, channel)
            if beat is not None:
                out.setdefault(host, {})[channel] = beat
        return out

    def _parse(self, kv: KeyValue) -> tuple[str, str] | None:
        parts = kv.key[len(self.prefix) :].split("/")
        return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None

    def _ttl(self, kv: KeyValue) -> int:
        try:
            return int(json.loads(kv.value).get("ttl", 0))
        except (ValueError, AttributeError):
            return 0  # a foreign value under our prefix: still a heartbeat, TTL unknown

    def _on_sync(self, synced: bool) -> None:
        self._lost_sync_at = None if synced else self._clock()

    def _on_event(self, event: WatchEvent) -> None:
        name = self._parse(event.kv)
        if name is None:
            return
        previous = self._entries.get(name)
        ttl = previous.ttl_s if previous and event.deleted else self._ttl(event.kv)
        self._entries[name] = _Entry(alive=not event.deleted, since=self._clock(), ttl_s=ttl)

    def _on_reset(self, keys: dict[str, KeyValue]) -> None:
        now = self._clock()
        present = {name: kv for kv in keys.values() if (name := self._parse(kv)) is not None}
        for name, entry in self._entries.items():
            if name not in present and entry.alive:
                self._entries[name] = _Entry(alive=False, since=now, ttl_s=entry.ttl_s)
        for name, kv in present.items():
            if not (name in self._entries and self._entries[name].alive):
                self._entries[name] = _Entry(alive=True, since=now, ttl_s=self._ttl(kv))
