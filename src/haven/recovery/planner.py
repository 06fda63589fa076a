"""Decide where the servers of failed hosts go: the pure core of host recovery.

The recovery engine calls ``plan_evacuation`` once per host failure, with a snapshot of
the failed hosts' servers and the segment's healthy hosts, and turns the resulting
``EvacuationPlan`` into evacuate steps. Nothing here does I/O or reads a clock, so one
snapshot always yields one plan: a restarted engine that re-plans gets the same answer,
and the rules can be tested without a cloud.

The rules are Masakari's, made explicit. HA-enabled servers go first, then by
``HA_Priority`` and size. The recovery method says which hosts (reserved or not) may
receive them. Each server goes to the host with the most free RAM that has room, so the
evacuations spread over many destinations and run in parallel. Hard server-group
policies are never broken; soft ones give way only when nothing else has room.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from haven.domain.cloud import Flavor, GroupPolicy, Server, ServerGroup, VmState
from haven.domain.ids import HostName, ServerGroupId, ServerId
from haven.domain.incidents import RecoveryMethod
from haven.domain.plan import EvacuationPlan, Placement, TargetHost, Unplaced, UnplacedCause

# Which targets each method may use, in the order it tries them: True means reserved hosts.
_POOL_ORDER: Mapping[RecoveryMethod, tuple[bool, ...]] = {
    RecoveryMethod.AUTO: (False,),
    RecoveryMethod.RESERVED_HOST: (True,),
    RecoveryMethod.AUTO_PRIORITY: (False, True),
    RecoveryMethod.RH_PRIORITY: (True, False),
}

_NEVER_EVACUATED: Mapping[VmState, str] = {
    VmState.DELETED: "server is deleted; there is nothing to evacuate",
    VmState.BUILDING: "server is still building; Nova cannot evacuate a server before it is built",
}

_AFFINE = frozenset({GroupPolicy.AFFINITY, GroupPolicy.SOFT_AFFINITY})


def plan_evacuation(
    servers: Sequence[Server],
    targets: Sequence[TargetHost],
    groups: Mapping[ServerGroupId, ServerGroup],
    method: RecoveryMethod,
    *,
    evacuate_all_instances: bool = False,
    ignore_instances_in_error_state: bool = False,
) -> EvacuationPlan:
    """Place the servers of failed hosts onto ``targets``, highest priority first.

    ``servers`` are every server that was on the failed host(s); ``targets`` the healthy
    hosts of the same segment. Non-HA servers are left out entirely unless
    ``evacuate_all_instances``. Every server that is considered ends up exactly once in
    ``placements`` (in evacuation order), ``unplaced`` or ``skipped``.
    """
    chosen, skipped = _select(servers, evacuate_all_instances, ignore_instances_in_error_state)
    planner = _Planner(targets, groups, method, chosen)
    placements: list[Placement] = []
    unplaced: list[Unplaced] = []
    for server in chosen:
        outcome = planner.place(server)
        if isinstance(outcome, Placement):
            placements.append(outcome)
        else:
            unplaced.append(outcome)
    return EvacuationPlan(
        placements=tuple(placements),
        unplaced=tuple(unplaced),
        reserved_hosts_used=planner.reserved_hosts_used(),
        skipped=tuple(skipped),
    )


def _select(
    servers: Iterable[Server], evacuate_all: bool, ignore_error: bool
) -> tuple[list[Server], list[Unplaced]]:
    """The servers to plan, in evacuation order, and those deliberately left where they are."""
    wanted = sorted((s for s in servers if s.ha_enabled or evacuate_all), key=_evacuation_order)
    chosen: list[Server] = []
    skipped: list[Unplaced] = []
    for server in wanted:
        reason = _skip_reason(server, ignore_error)
        if reason is None:
            chosen.append(server)
        else:
            skipped.append(Unplaced(server.id, reason, UnplacedCause.VM_STATE))
    return chosen, skipped


def _skip_reason(server: Server, ignore_error: bool) -> str | None:
    if server.vm_state in _NEVER_EVACUATED:
        return _NEVER_EVACUATED[server.vm_state]
    if server.vm_state is VmState.ERROR and ignore_error:
        return "server is in error state and ignore_instances_in_error_state is set"
    return None


def _evacuation_order(server: Server) -> tuple[bool, int, int, int, str]:
    # Bigger flavors first among equals: they are the hardest to fit once hosts fill up.
    flavor = server.flavor
    return (not server.ha_enabled, -server.priority, -flavor.ram_mb, -flavor.vcpus, server.id)


@dataclass(slots=True, eq=False)
class _Slot:
    """One target's limits and usage while the plan fills it: the only mutable state here."""

    name: HostName
    reserved: bool
    rank: int  # position in name order; makes heap entries unique and ties go by name
    max_vcpus: float
    max_ram_mb: float
    max_disk_gb: float
    vcpus: float
    ram_mb: float
    disk_gb: float
    groups: set[ServerGroupId]
    version: int = 0  # bumped on every placement, so older heap entries are known stale

    @classmethod
    def of(cls, target: TargetHost, rank: int) -> _Slot:
        capacity = target.capacity
        return cls(
            name=target.name,
            reserved=target.reserved,
            rank=rank,
            max_vcpus=capacity.schedulable_vcpus,
            max_ram_mb=capacity.schedulable_ram_mb,
            max_disk_gb=capacity.schedulable_disk_gb,
            vcpus=target.used_vcpus,
            ram_mb=target.used_ram_mb,
            disk_gb=target.used_disk_gb,
            groups=set(target.groups_present),
        )

    def fits(self, vcpus: float, ram_mb: float, disk_gb: float) -> bool:
        return (
            self.vcpus + vcpus <= self.max_vcpus
            and self.ram_mb + ram_mb <= self.max_ram_mb
            and self.disk_gb + disk_gb <= self.max_disk_gb
        )

    def fits_flavor(self, flavor: Flavor) -> bool:
        return self.fits(flavor.vcpus, flavor.ram_mb, flavor.disk_gb)

    def take(self, flavor: Flavor) -> None:
        self.vcpus += flavor.vcpus
        self.ram_mb += flavor.ram_mb
        self.disk_gb += flavor.disk_gb
        self.version += 1

    def spread_key(self) -> tuple[float, float, int]:
        """Smaller is better: most free RAM, then most free vCPU, then name."""
        return (self.ram_mb - self.max_ram_mb, self.vcpus - self.max_vcpus, self.rank)

    def describe_free(self) -> str:
        return (
            f"{_amount(self.max_vcpus - self.vcpus)} vCPU, {_amount(self.max_ram_mb - self.ram_mb)} MB RAM, "
            f"{_amount(self.max_disk_gb - self.disk_gb)} GB disk"
        )


_Entry = tuple[float, float, int, int, _Slot]  # spread_key, version, slot
_Shape = tuple[int, int, int]  # vCPU, RAM, disk a flavor asks for

# Hosts without room a scan may pass over before the flavor gets a heap of its own.
_SCAN_BUDGET = 32


def _entry(slot: _Slot) -> _Entry:
    return (*slot.spread_key(), slot.version, slot)


class _Pool:
    """The targets a method may use at one stage (reserved or not), kept in spread order.

    Heaps of spread keys with lazy updates: a slot that received a server is pushed again
    with a new version, and its older entries are dropped when they surface. Usage only
    grows, and the rest relies on it: a slot that lost room for something never gets it back.

    The main heap holds the slots that still have room for the smallest server of the plan,
    and a scan of it stops at the first slot short of RAM. Hosts with RAM but no vCPU or
    disk left would still be walked past by every server that follows, so once a scan has
    passed over too many, the flavor's shape gets a heap of only the slots with room for it.
    """

    def __init__(self, slots: list[_Slot], smallest: _Shape) -> None:
        self.slots = slots
        self._smallest = smallest
        self._all: list[_Entry] = []
        self._best_retired: _Slot | None = None  # retired slots never change again
        for slot in slots:
            self._file(slot)
        heapq.heapify(self._all)
        self._by_shape: dict[_Shape, list[_Entry]] = {}

    def updated(self, slot: _Slot) -> None:
        self._file(slot)
        for shape, heap in self._by_shape.items():
            if slot.fits(*shape):
                heapq.heappush(heap, _entry(slot))

    def _file(self, slot: _Slot) -> None:
        # A slot without room for the smallest server of the plan is full for good: retire it,
        # keeping only the best of them for reasons.
        if slot.fits(*self._smallest):
            heapq.heappush(self._all, _entry(slot))
        elif self._best_retired is None or slot.spread_key() < self._best_retired.spread_key():
            self._best_retired = slot

    def most_free(self) -> _Slot | None:
        """The slot with the most free RAM, room or not: what an operator would look at first."""
        heap = self._all
        while heap and heap[0][3] != heap[0][4].version:
            heapq.heappop(heap)
        candidates = [s for s in (heap[0][4] if heap else None, self._best_retired) if s is not None]
        return min(candidates, key=_Slot.spread_key, default=None)

    def find(
        self, flavor: Flavor, avoid: ServerGroupId | None, rather_not: ServerGroupId | None
    ) -> tuple[_Slot | None, bool]:
        """The first slot in spread order with room for ``flavor``, and whether ``avoid`` refused any.

        Slots holding ``avoid`` (hard anti-affinity) are never chosen; slots holding
        ``rather_not`` (soft anti-affinity) only when no other slot has room.
        """
        shape = (flavor.vcpus, flavor.ram_mb, flavor.disk_gb)
        heap = self._by_shape.get(shape)
        if heap is None:
            outcome = _walk(self._all, flavor, avoid, rather_not, _SCAN_BUDGET)
            if outcome is not None:
                return outcome
            heap = [_entry(s) for s in self.slots if s.fits(*shape)]
            heapq.heapify(heap)
            self._by_shape[shape] = heap
        outcome = _walk(heap, flavor, avoid, rather_not, None)
        assert outcome is not None  # without a budget the walk always finishes
        return outcome


def _walk(
    heap: list[_Entry],
    flavor: Flavor,
    avoid: ServerGroupId | None,
    rather_not: ServerGroupId | None,
    budget: int | None,
) -> tuple[_Slot | None, bool] | None:
    """``_Pool.find`` on one heap; None if a slot without room turns up after ``budget`` passed ones."""
    passed: list[_Entry] = []
    fallback: _Slot | None = None
    refused = False
    try:
        while heap:
            slot = heap[0][4]
            if heap[0][3] != slot.version:
                heapq.heappop(heap)
                continue
            if slot.ram_mb + flavor.ram_mb > slot.max_ram_mb:
                break  # the heap is in free-RAM order: no slot below this one has the RAM either
            passed.append(heapq.heappop(heap))
            if not slot.fits_flavor(flavor):
                if budget is not None and len(passed) > budget:
                    return None
            elif avoid is not None and avoid in slot.groups:
                refused = True
            elif rather_not is not None and rather_not in slot.groups:
                fallback = fallback or slot
            else:
                return slot, refused
        return fallback, refused
    finally:
        for entry in passed:
            heapq.heappush(heap, entry)


class _Planner:
    """The mutable state of one planning run: slots, pools and where affine groups are bound."""

    def __init__(
        self,
        targets: Sequence[TargetHost],
        groups: Mapping[ServerGroupId, ServerGroup],
        method: RecoveryMethod,
        servers: Sequence[Server],
    ) -> None:
        slots = [_Slot.of(t, rank) for rank, t in enumerate(sorted(targets, key=lambda t: t.name))]
        smallest = _smallest(servers)
        self._method = method
        self._groups = groups
        self._group_of_member = {m: g.id for g in groups.values() for m in g.members}
        self._pools = {r: _Pool([s for s in slots if s.reserved is r], smallest) for r in _POOL_ORDER[method]}
        self._pool_rank = {reserved: rank for rank, reserved in enumerate(self._pools)}
        # Reserved hosts the method never uses; named in reasons so nobody wonders why they sat idle.
        self._idle_reserved = 0 if True in self._pools else sum(1 for s in slots if s.reserved)
        self._present: dict[ServerGroupId, list[_Slot]] = {}
        for slot in slots:
            for group_id in slot.groups:
                self._present.setdefault(group_id, []).append(slot)
        self._anchors: dict[ServerGroupId, tuple[_Slot, ServerId]] = {}
        self._reserved_used: set[HostName] = set()

    def reserved_hosts_used(self) -> tuple[HostName, ...]:
        return tuple(sorted(self._reserved_used))

    def place(self, server: Server) -> Placement | Unplaced:
        group = self._group_of(server)
        if group is not None and group.policy in _AFFINE:
            return self._place_together(server, group)
        return self._spread(server, group)

    def _group_of(self, server: Server) -> ServerGroup | None:
        # Drivers may fill either side of the membership; a group we know nothing of binds nothing.
        group_id = server.group if server.group is not None else self._group_of_member.get(server.id)
        return self._groups.get(group_id) if group_id is not None else None

    def _spread(self, server: Server, group: ServerGroup | None) -> Placement | Unplaced:
        policy = group.policy if group is not None else None
        avoid = group.id if group is not None and policy is GroupPolicy.ANTI_AFFINITY else None
        rather_not = group.id if group is not None and policy is GroupPolicy.SOFT_ANTI_AFFINITY else None
        refused = False
        for pool in self._pools.values():
            slot, pool_refused = pool.find(server.flavor, avoid, rather_not)
            refused = refused or pool_refused
            if slot is not None:
                return self._commit(server, slot, group)
        if refused and group is not None:
            reason = (
                f"anti-affinity group {_group_name(group)}: every target with room for flavor "
                f"{_describe_flavor(server.flavor)} already holds a member"
            )
            return Unplaced(server.id, reason, UnplacedCause.ANTI_AFFINITY)
        return self._no_room(server)

    def _place_together(self, server: Server, group: ServerGroup) -> Placement | Unplaced:
        """Affinity: follow the group's first placed member, or the hosts the group already runs on."""
        hard = group.policy is GroupPolicy.AFFINITY
        anchor = self._anchors.get(group.id)
        present = [s for s in self._present.get(group.id, ()) if s.reserved in self._pools]
        bound = [anchor[0]] if anchor is not None else present
        ranked = sorted(bound, key=lambda s: (self._pool_rank[s.reserved], s.spread_key()))
        for slot in ranked:
            if slot.fits_flavor(server.flavor):
                return self._commit(server, slot, group)
        if not hard:
            return self._spread(server, group)
        if anchor is not None or present:
            reason = self._affinity_full(server, group, anchor, ranked)
            return Unplaced(server.id, reason, UnplacedCause.AFFINITY)
        elsewhere = self._present.get(group.id)
        if elsewhere:
            names = ", ".join(s.name for s in elsewhere)
            reason = (
                f"affinity group {_group_name(group)}: members already run on {names}, "
                f"which recovery method {self._method.value} does not use"
            )
            return Unplaced(server.id, reason, UnplacedCause.AFFINITY)
        return self._spread(server, group)

    def _affinity_full(
        self, server: Server, group: ServerGroup, anchor: tuple[_Slot, ServerId] | None, ranked: list[_Slot]
    ) -> str:
        flavor = _describe_flavor(server.flavor)
        if anchor is not None:
            slot, first = anchor
            return (
                f"affinity group {_group_name(group)}: members follow {first} to {slot.name}, "
                f"which has no room for flavor {flavor}; free there: {slot.describe_free()}"
            )
        names = ", ".join(s.name for s in ranked)
        return (
            f"affinity group {_group_name(group)}: members already run on {names}, and none has room "
            f"for flavor {flavor}; free on {ranked[0].name}: {ranked[0].describe_free()}"
        )

    def _commit(self, server: Server, slot: _Slot, group: ServerGroup | None) -> Placement:
        slot.take(server.flavor)
        if group is not None:
            slot.groups.add(group.id)
            if group.policy in _AFFINE:
                self._anchors.setdefault(group.id, (slot, server.id))
        if slot.reserved:
            self._reserved_used.add(slot.name)
        self._pools[slot.reserved].updated(slot)
        return Placement(server.id, slot.name)

    def _no_room(self, server: Server) -> Unplaced:
        if not any(pool.slots for pool in self._pools.values()):
            return Unplaced(server.id, self._no_target_reason(), UnplacedCause.NO_TARGET)
        candidates = [s for s in (p.most_free() for p in self._pools.values()) if s is not None]
        best = min(candidates, key=_Slot.spread_key)
        flavor = _describe_flavor(server.flavor)
        room = f"room for flavor {flavor}; most free: {best.name} with {best.describe_free()}"
        if self._method is RecoveryMethod.RESERVED_HOST:
            reason = f"recovery method reserved_host but the segment has no reserved host with {room}"
        elif self._method is RecoveryMethod.AUTO:
            reason = f"no target in the segment has {room}"
            if self._idle_reserved:
                reason += f" (recovery method auto leaves the {self._idle_reserved} reserved host(s) unused)"
        else:
            reason = f"no target in the segment, reserved or not, has {room}"
        return Unplaced(server.id, reason, UnplacedCause.NO_ROOM)

    def _no_target_reason(self) -> str:
        if self._method is RecoveryMethod.RESERVED_HOST:
            return "recovery method reserved_host but the segment has no reserved host"
        if self._method is RecoveryMethod.AUTO and self._idle_reserved:
            return "recovery method auto but the segment's only healthy hosts are reserved ones"
        return "the segment has no healthy host to evacuate to"


def _smallest(servers: Sequence[Server]) -> _Shape:
    """Per resource, the least any server of the plan asks for: a slot without it is full for good."""
    if not servers:
        return (0, 0, 0)
    return (
        min(s.flavor.vcpus for s in servers),
        min(s.flavor.ram_mb for s in servers),
        min(s.flavor.disk_gb for s in servers),
    )


def _group_name(group: ServerGroup) -> str:
    return group.name or group.id


def _describe_flavor(flavor: Flavor) -> str:
    return f"{flavor.name} ({flavor.vcpus} vCPU, {flavor.ram_mb} MB RAM, {flavor.disk_gb} GB disk)"


def _amount(value: float) -> str:
    # Allocation ratios make capacities floats; show whole numbers without a trailing ".0".
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
