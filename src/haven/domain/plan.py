"""The output of recovery planning: where each VM goes, and what cannot go anywhere and why.

``haven.recovery.planner`` produces an ``EvacuationPlan`` from a snapshot; the recovery
engine turns its placements into evacuate steps and reports the rest to the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

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


class UnplacedCause(StrEnum):
    """Why a server was left out, for code that reacts differently to each (alerts, retries)."""

    NO_TARGET = "no_target"  # the recovery method allows no host of the segment at all
    NO_ROOM = "no_room"  # allowed hosts exist, none has room for the flavor
    ANTI_AFFINITY = "anti_affinity"  # hosts with room exist, all already hold a member of the group
    AFFINITY = "affinity"  # the host the group is bound to has no room or may not be used
    VM_STATE = "vm_state"  # the server's state rules out evacuating it (skipped, not failed)


@dataclass(frozen=True, slots=True)
class Unplaced:
    server_id: ServerId
    reason: str  # for a person: names the cause and the numbers behind it
    cause: UnplacedCause | None = None  # None: the producer did not classify it


@dataclass(frozen=True, slots=True)
class EvacuationPlan:
    placements: tuple[Placement, ...]  # in the order the evacuations should start
    unplaced: tuple[Unplaced, ...]
    reserved_hosts_used: tuple[HostName, ...] = ()  # sorted; the engine enables them and clears reserved
    skipped: tuple[Unplaced, ...] = ()  # deliberately not evacuated (error/deleted/building servers)
