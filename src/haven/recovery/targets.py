"""Candidate target hosts for planning, per segment, kept for a few seconds and updated by each plan.

Called by the plan step. When a rack fails, forty plans run within a second;
reading the whole segment from the cloud and the store for each would cost
O(segment) forty times. The book reads a segment once, charges every plan's
placements to it, and is read afresh after ``ttl_s``. A fresh read adds what
planned evacuations not yet issued will take (the executor's claims), which
the cloud cannot know yet.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from haven.cloud.base import Cloud
from haven.domain.cloud import Host, Server
from haven.domain.ids import HostName, SegmentId, ServerGroupId, ServerId
from haven.domain.incidents import SegmentHost
from haven.domain.plan import Placement, TargetHost
from haven.store import Store


@dataclass(frozen=True, slots=True)
class Claim:
    vcpus: int = 0
    ram_mb: int = 0
    disk_gb: int = 0

    def __add__(self, other: Claim) -> Claim:
        return Claim(self.vcpus + other.vcpus, self.ram_mb + other.ram_mb, self.disk_gb + other.disk_gb)


@dataclass(slots=True)
class _Snapshot:
    taken_at: float
    hosts: dict[HostName, tuple[Host, SegmentHost]]
    used: dict[HostName, list[int]] = field(default_factory=dict)  # vcpus, ram_mb, disk_gb


class TargetBook:
    def __init__(self, claims: Callable[[], Mapping[HostName, Claim]], ttl_s: float = 5.0) -> None:
        self._claims = claims
        self._ttl_s = ttl_s
        self._snapshots: dict[SegmentId, _Snapshot] = {}

    async def candidates(
        self,
        cloud: Cloud,
        store: Store,
        segment_id: SegmentId,
        now: float,
        usable: Callable[[Host, SegmentHost], bool],
        presence: Mapping[HostName, set[ServerGroupId]],
        limit: int | None = None,
    ) -> list[TargetHost]:
        """Usable hosts of the segment with their usage as haven expects it to be.

        With ``limit``, only that many of the emptiest (by free RAM): a spreading plan
        for a handful of VMs never reaches further, and a big segment is then cheap.
        """
        snap = await self._snapshot(cloud, store, segment_id, now)
        names: Iterable[HostName] = snap.hosts
        if limit is not None and len(snap.hosts) > 2 * limit:
            # Twice the limit leaves room for the few that turn out unusable (dead, suspect, disabled).
            names = heapq.nlargest(
                2 * limit,
                snap.hosts,
                key=lambda n: snap.hosts[n][0].capacity.schedulable_ram_mb - snap.used[n][1],
            )
        targets = []
        for name in names:
            host, member = snap.hosts[name]
            if not usable(host, member):
                continue
            vcpus, ram, disk = snap.used[name]
            targets.append(
                TargetHost(
                    name=name,
                    capacity=host.capacity,
                    used_vcpus=vcpus,
                    used_ram_mb=ram,
                    used_disk_gb=disk,
                    reserved=member.reserved,
                    groups_present=frozenset(presence.get(name, ())),
                )
            )
            if limit is not None and len(targets) >= limit:
                break
        return targets

    async def refresh(self, cloud: Cloud, store: Store, segment_id: SegmentId, now: float) -> None:
        """Read the segment's hosts now unless the snapshot is fresh: a plan asks it beside its other
        reads, so ``candidates`` then finds it ready instead of reading after them."""
        await self._snapshot(cloud, store, segment_id, now)

    def charge(
        self, segment_id: SegmentId, placements: Iterable[Placement], servers: Mapping[ServerId, Server]
    ) -> None:
        """Count a plan's placements against the snapshot, so the next plan sees them."""
        snap = self._snapshots.get(segment_id)
        if snap is None:
            return
        for p in placements:
            used, flavor = snap.used.get(p.target), servers[p.server_id].flavor
            if used is not None:
                used[0] += flavor.vcpus
                used[1] += flavor.ram_mb
                used[2] += flavor.disk_gb

    async def _snapshot(self, cloud: Cloud, store: Store, segment_id: SegmentId, now: float) -> _Snapshot:
        snap = self._snapshots.get(segment_id)
        if snap is not None and now - snap.taken_at < self._ttl_s:
            return snap
        members = {h.name: h for h in store.list_hosts(segment_id)}
        hosts = {h.name: (h, members[h.name]) for h in await cloud.list_hosts() if h.name in members}
        claims = self._claims()
        used: dict[HostName, list[int]] = {}
        for name, (host, _) in hosts.items():
            c = claims.get(name, Claim())
            used[name] = [
                host.used_vcpus + c.vcpus,
                host.used_ram_mb + c.ram_mb,
                host.used_disk_gb + c.disk_gb,
            ]
        snap = _Snapshot(now, hosts, used)
        self._snapshots[segment_id] = snap
        return snap


def short_list_size(servers: int) -> int:
    """How many of the emptiest hosts a plan for ``servers`` VMs looks at first."""
    return max(64, 8 * servers)
