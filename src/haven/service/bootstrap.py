"""First-start set-up: one failover segment per availability zone, as most operators lay them out.

Called by drills, the demo and `haven serve` when the store has no segment yet; `haven serve` only
with ``[segments] bootstrap = "per-zone"`` (the default on the simulated cloud; a real cloud starts
empty, as Masakari does: haven.service.config.SEGMENT_BOOTSTRAPS).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from haven.domain.cloud import Host
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import RecoveryMethod, Segment, SegmentHost
from haven.store import Store


def segments_per_zone(
    store: Store,
    hosts: Sequence[Host],
    method: RecoveryMethod = RecoveryMethod.AUTO,
    reserved: Collection[HostName] = (),
) -> list[Segment]:
    """Create a segment per zone holding its hosts, unless the store already has segments."""
    existing = store.list_segments()
    if existing:
        return existing
    zones = sorted({h.zone for h in hosts})
    segments = {
        zone: store.create_segment(
            Segment(
                SegmentId(uuid.uuid4().hex),
                f"segment-{zone}",
                method,
                description=f"every host of availability zone {zone}",
            )
        )
        for zone in zones
    }
    store.add_hosts([SegmentHost(h.name, segments[h.zone].id, reserved=h.name in reserved) for h in hosts])
    return list(segments.values())
