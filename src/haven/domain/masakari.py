"""What `haven import masakari` reads from a running Masakari: its failover segments and their hosts.

Built by haven.cloud.openstack.masakari from Masakari's API, and compared with haven's store by
haven.service.masakari_import. Each record keeps Masakari's own uuid beside the domain object it
would become in haven, so a report can name both.
"""

from __future__ import annotations

from dataclasses import dataclass

from haven.domain.incidents import Segment, SegmentHost


@dataclass(frozen=True, slots=True)
class MasakariHost:
    uuid: str  # Masakari's host uuid, dashed
    host: SegmentHost  # its segment_id is the haven id of the Masakari segment it belongs to


@dataclass(frozen=True, slots=True)
class MasakariSegment:
    uuid: str  # Masakari's segment uuid, dashed
    segment: Segment  # its id is ``uuid`` in haven's stored form (hex, no dashes)
    hosts: tuple[MasakariHost, ...]
