"""What `haven import masakari` reads from a running Masakari: its failover segments and their hosts.

Built by haven.cloud.openstack.masakari from Masakari's API, and compared with haven's store by
haven.service.masakari_import. Each segment keeps Masakari's uuid as Masakari shows it beside the
domain object it would become in haven (whose id is that uuid without dashes).
"""

from __future__ import annotations

from dataclasses import dataclass

from haven.domain.incidents import Segment, SegmentHost


@dataclass(frozen=True, slots=True)
class MasakariSegment:
    uuid: str  # Masakari's segment uuid, dashed
    segment: Segment  # its id is ``uuid`` in haven's stored form (hex, no dashes)
    hosts: tuple[SegmentHost, ...]  # with Masakari's host uuids; segment_id is ``segment.id``
