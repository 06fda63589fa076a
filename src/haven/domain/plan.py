"""The output of recovery planning: where each VM goes, and what cannot go anywhere and why."""

from __future__ import annotations

from dataclasses import dataclass, field

from haven.domain.cloud import Capacity
from haven.domain.ids import HostName, ServerGroupId, ServerId


@dataclass(frozen=True, slots=True)
class TargetHost:
    """A healthy host that may receive evacuated VMs, with what it already carries."""

    name: HostName
    capacity: Capacity
    used_vcpus: int = 0
    used_ram_mb: int = 0
    used_disk_gb: int = 0
    reserved: bool = False
    groups_present: frozenset[ServerGroupId] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Placement:
    server_id: ServerId
    target: HostName


@dataclass(frozen=True, slots=True)
class Unplaced:
    server_id: ServerId
    reason: str


@dataclass(frozen=True, slots=True)
class EvacuationPlan:
    placements: tuple[Placement, ...]
    unplaced: tuple[Unplaced, ...]
    reserved_hosts_used: tuple[HostName, ...] = ()
