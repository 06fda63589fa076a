"""plan_evacuation: which servers, in what order, onto which hosts, and why some cannot go."""

from __future__ import annotations

import gc
import random
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from haven.domain.cloud import (
    HA_ENABLED_KEY,
    HA_PRIORITY_KEY,
    Capacity,
    Flavor,
    GroupPolicy,
    Server,
    ServerGroup,
    VmState,
)
from haven.domain.ids import HostName, ServerGroupId, ServerId
from haven.domain.incidents import RecoveryMethod
from haven.domain.plan import EvacuationPlan, TargetHost, UnplacedCause
from haven.recovery import planner
from haven.recovery.planner import plan_evacuation

SMALL = Flavor("m1.small", vcpus=1, ram_mb=2048, disk_gb=20)
MEDIUM = Flavor("m1.medium", vcpus=2, ram_mb=4096, disk_gb=40)
LARGE = Flavor("m1.large", vcpus=4, ram_mb=8192, disk_gb=80)
FAILED = HostName("compute-dead")


def vm(
    sid: str,
    *,
    ha: bool = True,
    priority: int | None = None,
    flavor: Flavor = SMALL,
    state: VmState = VmState.ACTIVE,
    group: str | None = None,
) -> Server:
    metadata = {HA_ENABLED_KEY: "True"} if ha else {}
    if priority is not None:
        metadata[HA_PRIORITY_KEY] = str(priority)
    return Server(
        id=ServerId(sid),
        name=sid,
        host=FAILED,
        flavor=flavor,
        vm_state=state,
        metadata=metadata,
        group=ServerGroupId(group) if group is not None else None,
    )


def host(
    name: str,
    *,
    vcpus: int = 16,
    ram: int = 32768,
    disk: int = 1000,
    used: tuple[int, int, int] = (0, 0, 0),
    reserved: bool = False,
    groups: Iterable[str] = (),
    cpu_ratio: float = 1.0,
) -> TargetHost:
    return TargetHost(
        name=HostName(name),
        capacity=Capacity(vcpus, ram, disk, cpu_allocation_ratio=cpu_ratio),
        used_vcpus=used[0],
        used_ram_mb=used[1],
        used_disk_gb=used[2],
        reserved=reserved,
        groups_present=frozenset(ServerGroupId(g) for g in groups),
    )


def group(gid: str, policy: GroupPolicy, *members: str, name: str | None = None) -> ServerGroup:
    return ServerGroup(ServerGroupId(gid), name or gid, policy, frozenset(ServerId(m) for m in members))


def groups_of(*gs: ServerGroup) -> dict[ServerGroupId, ServerGroup]:
    return {g.id: g for g in gs}


def plan(
    servers: Sequence[Server],
    targets: Sequence[TargetHost],
    method: RecoveryMethod = RecoveryMethod.AUTO,
    groups: Mapping[ServerGroupId, ServerGroup] | None = None,
    **flags: bool,
) -> EvacuationPlan:
    return plan_evacuation(servers, targets, groups or {}, method, **flags)


def where(p: EvacuationPlan) -> dict[str, str]:
    return {pl.server_id: pl.target for pl in p.placements}


def reasons(p: EvacuationPlan) -> dict[str, str]:
    return {u.server_id: u.reason for u in p.unplaced}


# --- checks shared by the examples and the properties ---------------------------------------


def check_capacity(p: EvacuationPlan, servers: Sequence[Server], targets: Sequence[TargetHost]) -> None:
    flavor = {s.id: s.flavor for s in servers}
    load = {t.name: [t.used_vcpus, t.used_ram_mb, t.used_disk_gb] for t in targets}
    for pl in p.placements:
        f = flavor[pl.server_id]
        load[pl.target][0] += f.vcpus
        load[pl.target][1] += f.ram_mb
        load[pl.target][2] += f.disk_gb
    for t in targets:
        vcpus, ram, disk = load[t.name]
        if vcpus == t.used_vcpus and ram == t.used_ram_mb and disk == t.used_disk_gb:
            continue  # a host that was already full before the plan is not the plan's doing
        assert vcpus <= t.capacity.schedulable_vcpus, t.name
        assert ram <= t.capacity.schedulable_ram_mb, t.name
        assert disk <= t.capacity.schedulable_disk_gb, t.name


def check_partition(p: EvacuationPlan, servers: Sequence[Server], *, evacuate_all: bool) -> None:
    expected = {s.id for s in servers if s.ha_enabled or evacuate_all}
    seen = (
        [pl.server_id for pl in p.placements]
        + [u.server_id for u in p.unplaced]
        + [u.server_id for u in p.skipped]
    )
    assert Counter(seen) == Counter(expected)


def check_groups(
    p: EvacuationPlan,
    servers: Sequence[Server],
    targets: Sequence[TargetHost],
    groups: Mapping[ServerGroupId, ServerGroup],
) -> None:
    group_of = {s.id: s.group for s in servers}
    present = {t.name: t.groups_present for t in targets}
    by_group: dict[ServerGroupId, list[HostName]] = {}
    for pl in p.placements:
        gid = group_of[pl.server_id]
        if gid is None or gid not in groups:
            continue
        by_group.setdefault(gid, []).append(pl.target)
        if groups[gid].policy is GroupPolicy.ANTI_AFFINITY:
            assert gid not in present[pl.target]
    for gid, hosts in by_group.items():
        if groups[gid].policy is GroupPolicy.ANTI_AFFINITY:
            assert len(hosts) == len(set(hosts)), gid
        if groups[gid].policy is GroupPolicy.AFFINITY:
            assert len(set(hosts)) == 1, gid
            bound = [t for t, gs in present.items() if gid in gs]
            assert not bound or hosts[0] in bound


def check_method(p: EvacuationPlan, targets: Sequence[TargetHost], method: RecoveryMethod) -> None:
    reserved = {t.name for t in targets if t.reserved}
    used = {pl.target for pl in p.placements}
    if method is RecoveryMethod.AUTO:
        assert not used & reserved
    if method is RecoveryMethod.RESERVED_HOST:
        assert used <= reserved
    assert list(p.reserved_hosts_used) == sorted(used & reserved)


# --- which servers ---------------------------------------------------------------------------


def test_only_ha_servers_are_planned_by_default() -> None:
    p = plan([vm("a"), vm("b", ha=False)], [host("h1")])
    assert where(p) == {"a": "h1"}
    assert not p.unplaced and not p.skipped


def test_evacuate_all_places_every_ha_server_before_any_other() -> None:
    servers = [vm("plain", ha=False, priority=99, flavor=LARGE), vm("ha", priority=0)]
    p = plan(servers, [host("h1")], evacuate_all_instances=True)
    assert [pl.server_id for pl in p.placements] == ["ha", "plain"]


def test_evacuate_all_leaves_non_ha_unplaced_when_ha_took_the_room() -> None:
    servers = [vm("plain", ha=False, flavor=LARGE), vm("ha", flavor=LARGE)]
    p = plan(servers, [host("h1", vcpus=4, ram=8192, disk=80)], evacuate_all_instances=True)
    assert where(p) == {"ha": "h1"}
    assert list(reasons(p)) == ["plain"]


def test_error_servers_are_evacuated_unless_told_to_ignore_them() -> None:
    servers = [vm("ok"), vm("broken", state=VmState.ERROR)]
    assert set(where(plan(servers, [host("h1")]))) == {"ok", "broken"}

    p = plan(servers, [host("h1")], ignore_instances_in_error_state=True)
    assert where(p) == {"ok": "h1"}
    assert [(u.server_id, u.cause) for u in p.skipped] == [("broken", UnplacedCause.VM_STATE)]
    assert "error state" in p.skipped[0].reason
    assert not p.unplaced


@pytest.mark.parametrize(("state", "word"), [(VmState.DELETED, "deleted"), (VmState.BUILDING, "building")])
def test_deleted_and_building_servers_are_skipped_with_a_reason(state: VmState, word: str) -> None:
    p = plan(
        [vm("x", state=state), vm("y", ha=False, state=state)], [host("h1")], evacuate_all_instances=True
    )
    assert not p.placements and not p.unplaced
    assert [u.server_id for u in p.skipped] == ["x", "y"]
    assert all(word in u.reason for u in p.skipped)


def test_non_ha_server_in_a_skipped_state_is_not_mentioned_without_evacuate_all() -> None:
    p = plan([vm("gone", ha=False, state=VmState.DELETED)], [host("h1")])
    assert p == plan([], [host("h1")])


def test_empty_input_gives_an_empty_plan() -> None:
    assert plan([], []) == plan_evacuation([], [], {}, RecoveryMethod.RH_PRIORITY)


# --- order -----------------------------------------------------------------------------------


def test_placements_come_in_priority_then_size_then_id_order() -> None:
    servers = [
        vm("c", priority=1, flavor=SMALL),
        vm("b", priority=1, flavor=SMALL),
        vm("a", priority=1, flavor=Flavor("cpu", vcpus=8, ram_mb=2048, disk_gb=20)),
        vm("d", priority=1, flavor=LARGE),
        vm("e", priority=5, flavor=SMALL),
        vm("f", flavor=LARGE),  # no HA_Priority: counts as 0
    ]
    p = plan(servers, [host("h1", vcpus=64, ram=65536)])
    assert [pl.server_id for pl in p.placements] == ["e", "d", "a", "b", "c", "f"]


# --- recovery methods ------------------------------------------------------------------------


def segment() -> list[TargetHost]:
    # One LARGE fits on each host.
    return [
        host("n1", vcpus=4, ram=8192, disk=80),
        host("n2", vcpus=4, ram=8192, disk=80),
        host("r2", vcpus=4, ram=8192, disk=80, reserved=True),
        host("r1", vcpus=4, ram=8192, disk=80, reserved=True),
    ]


def larges(n: int) -> list[Server]:
    return [vm(f"s{i}", priority=10 - i, flavor=LARGE) for i in range(n)]


def test_auto_never_uses_reserved_hosts() -> None:
    p = plan(larges(3), segment(), RecoveryMethod.AUTO)
    assert where(p) == {"s0": "n1", "s1": "n2"}
    assert p.reserved_hosts_used == ()
    assert "s2" in reasons(p)
    assert "recovery method auto leaves the 2 reserved host(s) unused" in reasons(p)["s2"]


def test_auto_with_only_reserved_hosts_has_no_target() -> None:
    p = plan(larges(1), [host("r1", reserved=True)], RecoveryMethod.AUTO)
    assert p.unplaced[0].cause is UnplacedCause.NO_TARGET
    assert (
        p.unplaced[0].reason == "recovery method auto but the segment's only healthy hosts are reserved ones"
    )


def test_reserved_host_uses_only_reserved_hosts_and_reports_them_sorted() -> None:
    p = plan(larges(3), segment(), RecoveryMethod.RESERVED_HOST)
    assert where(p) == {"s0": "r1", "s1": "r2"}
    assert p.reserved_hosts_used == ("r1", "r2")
    assert reasons(p)["s2"].startswith(
        "recovery method reserved_host but the segment has no reserved host with room for flavor m1.large"
    )


def test_reserved_host_without_reserved_hosts() -> None:
    p = plan(larges(1), [host("n1")], RecoveryMethod.RESERVED_HOST)
    assert p.unplaced[0].cause is UnplacedCause.NO_TARGET
    assert p.unplaced[0].reason == "recovery method reserved_host but the segment has no reserved host"


def test_reserved_hosts_used_lists_only_hosts_that_received_a_server() -> None:
    p = plan(larges(1), segment(), RecoveryMethod.RESERVED_HOST)
    assert p.reserved_hosts_used == ("r1",)


def test_auto_priority_fills_ordinary_hosts_first_then_reserved() -> None:
    p = plan(larges(3), segment(), RecoveryMethod.AUTO_PRIORITY)
    assert where(p) == {"s0": "n1", "s1": "n2", "s2": "r1"}
    assert p.reserved_hosts_used == ("r1",)
    assert plan(larges(2), segment(), RecoveryMethod.AUTO_PRIORITY).reserved_hosts_used == ()


def test_rh_priority_fills_reserved_hosts_first_then_ordinary() -> None:
    p = plan(larges(3), segment(), RecoveryMethod.RH_PRIORITY)
    assert where(p) == {"s0": "r1", "s1": "r2", "s2": "n1"}
    assert p.reserved_hosts_used == ("r1", "r2")


def test_priority_methods_report_when_neither_kind_has_room() -> None:
    p = plan(larges(5), segment(), RecoveryMethod.RH_PRIORITY)
    assert list(reasons(p)) == ["s4"]
    assert reasons(p)["s4"].startswith("no target in the segment, reserved or not, has room")


def test_no_targets_at_all() -> None:
    p = plan(larges(1), [], RecoveryMethod.AUTO_PRIORITY)
    assert p.unplaced[0].reason == "the segment has no healthy host to evacuate to"


# --- capacity --------------------------------------------------------------------------------


def test_when_room_runs_out_the_highest_priorities_are_placed_and_the_lowest_reported() -> None:
    servers = [vm(f"p{prio}", priority=prio, flavor=LARGE) for prio in (3, 9, 1, 7, 5)]
    targets = [host("compute-7", vcpus=14, ram=28672, disk=1000)]  # room for three, then 2 vCPU / 4 GB left
    p = plan(servers, targets)
    assert [pl.server_id for pl in p.placements] == ["p9", "p7", "p5"]
    assert [u.server_id for u in p.unplaced] == ["p3", "p1"]
    assert all(u.cause is UnplacedCause.NO_ROOM for u in p.unplaced)
    assert reasons(p)["p3"] == (
        "no target in the segment has room for flavor m1.large (4 vCPU, 8192 MB RAM, 80 GB disk); "
        "most free: compute-7 with 2 vCPU, 4096 MB RAM, 760 GB disk"
    )


def test_smaller_servers_still_fill_the_room_a_large_one_could_not_use() -> None:
    p = plan([vm("big", priority=5, flavor=LARGE), vm("small", flavor=SMALL)], [host("h", vcpus=2, ram=4096)])
    assert where(p) == {"small": "h"}
    assert list(reasons(p)) == ["big"]


def test_every_resource_counts_disk_included() -> None:
    p = plan([vm("a", flavor=LARGE)], [host("h", disk=79)])
    assert p.unplaced[0].cause is UnplacedCause.NO_ROOM
    assert "-" not in p.unplaced[0].reason and "79 GB disk" in p.unplaced[0].reason


def test_existing_usage_and_allocation_ratios_are_honoured() -> None:
    # 2 cores at ratio 4 schedule 8 vCPU, 5 of them already used: one 2-vCPU flavor fits, then no more.
    targets = [host("h", vcpus=2, used=(5, 0, 0), cpu_ratio=4.0)]
    p = plan([vm("a", flavor=MEDIUM), vm("b", flavor=MEDIUM)], targets)
    assert where(p) == {"a": "h"}
    assert "most free: h with 1 vCPU" in reasons(p)["b"]


def test_an_exact_fit_is_a_fit() -> None:
    assert where(plan([vm("a", flavor=LARGE)], [host("h", vcpus=4, ram=8192, disk=80)])) == {"a": "h"}


def test_the_most_free_host_is_named_even_when_every_host_is_full() -> None:
    p = plan([vm("x")], [host("a", ram=1024), host("c", ram=512), host("b", ram=1536)])
    assert "most free: b with 16 vCPU, 1536 MB RAM" in reasons(p)["x"]


def test_fractional_capacity_is_shown_with_one_decimal() -> None:
    p = plan([vm("a", flavor=LARGE)], [host("h", vcpus=1, cpu_ratio=1.5)])
    assert "most free: h with 1.5 vCPU" in reasons(p)["a"]


# --- spreading -------------------------------------------------------------------------------


def test_each_server_goes_to_the_host_with_most_free_ram() -> None:
    targets = [host("a", ram=16384), host("b", ram=32768, used=(0, 8192, 0)), host("c", ram=65536)]
    p = plan([vm("x", flavor=LARGE)], targets)
    assert where(p) == {"x": "c"}


def test_ties_go_to_most_free_vcpu_then_to_the_name() -> None:
    targets = [host("b", vcpus=8), host("a", vcpus=8), host("c", vcpus=16)]
    assert where(plan([vm("x")], targets)) == {"x": "c"}
    assert where(plan([vm("x")], targets[:2])) == {"x": "a"}


def test_equal_hosts_receive_servers_in_turn() -> None:
    targets = [host(f"h{i}") for i in range(4)]
    p = plan([vm(f"s{i}", flavor=MEDIUM) for i in range(8)], targets)
    assert Counter(where(p).values()) == dict.fromkeys(("h0", "h1", "h2", "h3"), 2)


def test_a_host_with_ram_but_no_vcpu_is_passed_over() -> None:
    targets = [host("ram-rich", vcpus=1, ram=262144), host("modest", vcpus=8, ram=16384)]
    p = plan([vm("x", flavor=LARGE)], targets)
    assert where(p) == {"x": "modest"}


# --- server groups ---------------------------------------------------------------------------


def test_hard_anti_affinity_puts_members_on_different_hosts() -> None:
    g = group("g1", GroupPolicy.ANTI_AFFINITY, "a", "b", name="web")
    servers = [vm("a", group="g1"), vm("b", group="g1")]
    targets = [host("big", ram=262144), host("small", ram=8192)]
    p = plan(servers, targets, groups=groups_of(g))
    assert set(where(p).values()) == {"big", "small"}


def test_hard_anti_affinity_avoids_hosts_already_running_a_member() -> None:
    g = group("g1", GroupPolicy.ANTI_AFFINITY, "a", name="web")
    targets = [host("busy", ram=262144, groups=["g1"]), host("free", ram=8192)]
    p = plan([vm("a", group="g1")], targets, groups=groups_of(g))
    assert where(p) == {"a": "free"}


def test_anti_affinity_that_cannot_be_kept_is_reported_as_such() -> None:
    g = group("g1", GroupPolicy.ANTI_AFFINITY, "a", "b", "c", name="web")
    servers = [vm("a", group="g1", priority=3), vm("b", group="g1", priority=2), vm("c", group="g1")]
    targets = [host("h1"), host("h2", groups=["g1"]), host("h3")]
    p = plan(servers, targets, groups=groups_of(g))
    assert set(where(p)) == {"a", "b"}
    assert p.unplaced[0].cause is UnplacedCause.ANTI_AFFINITY
    assert reasons(p)["c"] == (
        "anti-affinity group web: every target with room for flavor m1.small "
        "(1 vCPU, 2048 MB RAM, 20 GB disk) already holds a member"
    )


def test_membership_may_come_from_the_group_instead_of_the_server() -> None:
    g = group("g1", GroupPolicy.ANTI_AFFINITY, "a", "b")
    p = plan([vm("a"), vm("b")], [host("h1"), host("h2")], groups=groups_of(g))
    assert set(where(p).values()) == {"h1", "h2"}


def test_soft_anti_affinity_spreads_when_it_can_and_shares_when_it_must() -> None:
    g = group("g1", GroupPolicy.SOFT_ANTI_AFFINITY, "a", "b", "c")
    servers = [vm(s, group="g1", flavor=MEDIUM) for s in "abc"]
    spread = plan(servers, [host("big", ram=262144), host("small", ram=16384)], groups=groups_of(g))
    assert Counter(where(spread).values()) == {"big": 2, "small": 1}
    alone = plan(servers, [host("only")], groups=groups_of(g))
    assert set(where(alone).values()) == {"only"}


def test_hard_affinity_keeps_members_with_the_first_one_placed() -> None:
    g = group("g1", GroupPolicy.AFFINITY, "a", "b", "c", name="db")
    servers = [vm("a", group="g1", priority=9), vm("b", group="g1"), vm("c", group="g1")]
    targets = [host("h1", ram=65536), host("h2", ram=32768)]
    p = plan(servers, targets, groups=groups_of(g))
    assert where(p) == {"a": "h1", "b": "h1", "c": "h1"}


def test_a_member_that_cannot_follow_is_unplaced_and_told_why() -> None:
    g = group("g1", GroupPolicy.AFFINITY, "a", "b", name="db")
    servers = [vm("a", group="g1", priority=9, flavor=LARGE), vm("b", group="g1", flavor=LARGE)]
    targets = [host("h1", vcpus=6, ram=12288, disk=100), host("h2", vcpus=4, ram=8192, disk=80)]
    p = plan(servers, targets, groups=groups_of(g))
    assert where(p) == {"a": "h1"}
    assert p.unplaced[0].cause is UnplacedCause.AFFINITY
    assert reasons(p)["b"] == (
        "affinity group db: members follow a to h1, which has no room for flavor m1.large "
        "(4 vCPU, 8192 MB RAM, 80 GB disk); free there: 2 vCPU, 4096 MB RAM, 20 GB disk"
    )


def test_hard_affinity_binds_to_the_host_where_the_group_already_runs() -> None:
    g = group("g1", GroupPolicy.AFFINITY, "a", "live", name="db")
    targets = [host("roomy", ram=262144), host("home", ram=16384, groups=["g1"])]
    assert where(plan([vm("a", group="g1")], targets, groups=groups_of(g))) == {"a": "home"}

    p = plan(
        [vm("a", group="g1", flavor=LARGE)],
        [targets[0], host("home", ram=4096, groups=["g1"])],
        groups=groups_of(g),
    )
    assert p.unplaced[0].cause is UnplacedCause.AFFINITY
    assert reasons(p)["a"].startswith("affinity group db: members already run on home, and none has room")


def test_hard_affinity_bound_to_a_host_the_method_may_not_use() -> None:
    g = group("g1", GroupPolicy.AFFINITY, "a", name="db")
    targets = [host("n1"), host("r1", reserved=True, groups=["g1"])]
    p = plan([vm("a", group="g1")], targets, RecoveryMethod.AUTO, groups=groups_of(g))
    assert (
        reasons(p)["a"]
        == "affinity group db: members already run on r1, which recovery method auto does not use"
    )


def test_the_next_member_leads_when_the_first_cannot_be_placed() -> None:
    g = group("g1", GroupPolicy.AFFINITY, "big", "b", "c")
    servers = [vm("big", group="g1", priority=9, flavor=LARGE), vm("b", group="g1"), vm("c", group="g1")]
    p = plan(servers, [host("h1", ram=4096), host("h2", ram=6144)], groups=groups_of(g))
    assert where(p) == {"b": "h2", "c": "h2"}
    assert p.unplaced[0].cause is UnplacedCause.NO_ROOM


def test_soft_affinity_follows_while_there_is_room_then_goes_elsewhere() -> None:
    g = group("g1", GroupPolicy.SOFT_AFFINITY, "a", "b", "c", "d")
    tiny = Flavor("m1.tiny", vcpus=1, ram_mb=512, disk_gb=1)
    servers = [
        vm("a", group="g1", priority=3, flavor=LARGE),
        vm("b", group="g1", priority=2),
        vm("c", group="g1", priority=1, flavor=MEDIUM),
        vm("d", group="g1", flavor=tiny),
    ]
    targets = [host("h1", vcpus=6, ram=10752, disk=101), host("h2", vcpus=4, ram=8192, disk=100)]
    p = plan(servers, targets, groups=groups_of(g))
    # d still prefers a's host, though c (placed elsewhere) left more room on h2.
    assert where(p) == {"a": "h1", "b": "h1", "c": "h2", "d": "h1"}


def test_a_group_missing_from_the_mapping_binds_nothing() -> None:
    p = plan([vm("a", group="ghost"), vm("b", group="ghost")], [host("h1")])
    assert where(p) == {"a": "h1", "b": "h1"}


# --- determinism -----------------------------------------------------------------------------


def test_the_same_snapshot_gives_the_same_plan_whatever_the_input_order() -> None:
    rng = random.Random(7)
    servers, targets, groups = random_segment(rng, n_servers=120, n_targets=40)
    first = plan_evacuation(
        servers, targets, groups, RecoveryMethod.AUTO_PRIORITY, evacuate_all_instances=True
    )
    for _ in range(5):
        s, t = servers[:], targets[:]
        rng.shuffle(s)
        rng.shuffle(t)
        again = plan_evacuation(s, t, groups, RecoveryMethod.AUTO_PRIORITY, evacuate_all_instances=True)
        assert again == first


# --- a reference planner: obviously right, too slow for production ---------------------------


def reference_plan(
    servers: Sequence[Server], targets: Sequence[TargetHost], method: RecoveryMethod
) -> list[tuple[str, str | None]]:
    """Scan every target for every server; only for plans without server groups."""
    pools = {
        RecoveryMethod.AUTO: (False,),
        RecoveryMethod.RESERVED_HOST: (True,),
        RecoveryMethod.AUTO_PRIORITY: (False, True),
        RecoveryMethod.RH_PRIORITY: (True, False),
    }[method]
    used = {t.name: [float(t.used_vcpus), float(t.used_ram_mb), float(t.used_disk_gb)] for t in targets}
    chosen = sorted(
        (s for s in servers if s.ha_enabled and s.vm_state not in (VmState.DELETED, VmState.BUILDING)),
        key=lambda s: (-s.priority, -s.flavor.ram_mb, -s.flavor.vcpus, s.id),
    )
    out: list[tuple[str, str | None]] = []
    for s in chosen:
        f = s.flavor
        best: HostName | None = None
        for reserved in pools:
            fitting = [
                t
                for t in targets
                if t.reserved is reserved
                and used[t.name][0] + f.vcpus <= t.capacity.schedulable_vcpus
                and used[t.name][1] + f.ram_mb <= t.capacity.schedulable_ram_mb
                and used[t.name][2] + f.disk_gb <= t.capacity.schedulable_disk_gb
            ]
            if fitting:
                best = min(
                    fitting,
                    key=lambda t: (
                        used[t.name][1] - t.capacity.schedulable_ram_mb,
                        used[t.name][0] - t.capacity.schedulable_vcpus,
                        t.name,
                    ),
                ).name
                break
        if best is not None:
            used[best][0] += f.vcpus
            used[best][1] += f.ram_mb
            used[best][2] += f.disk_gb
        out.append((s.id, best))
    return out


def as_pairs(p: EvacuationPlan) -> list[tuple[str, str | None]]:
    placed: list[tuple[str, str | None]] = [(pl.server_id, pl.target) for pl in p.placements]
    return sorted(placed + [(u.server_id, None) for u in p.unplaced])


# --- properties ------------------------------------------------------------------------------

FLAVORS = [SMALL, MEDIUM, LARGE, Flavor("c1.cpu", 8, 2048, 10), Flavor("r1.ram", 1, 16384, 10)]
GROUP_IDS = ["g0", "g1", "g2", "g3"]
Snapshot = tuple[list[Server], list[TargetHost], dict[ServerGroupId, ServerGroup], RecoveryMethod, bool, bool]


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    n_targets = draw(st.integers(0, 8))
    targets = []
    for i in range(n_targets):
        vcpus = draw(st.integers(1, 16))
        ram = draw(st.sampled_from([4096, 8192, 16384, 24576, 65536]))
        disk = draw(st.integers(10, 400))
        targets.append(
            host(
                f"t{i}",
                vcpus=vcpus,
                ram=ram,
                disk=disk,
                used=(draw(st.integers(0, vcpus)), draw(st.integers(0, ram)), draw(st.integers(0, disk))),
                reserved=draw(st.booleans()),
                groups=draw(st.sets(st.sampled_from(GROUP_IDS), max_size=2)),
                cpu_ratio=draw(st.sampled_from([1.0, 1.5, 4.0])),
            )
        )
    policies = {g: draw(st.sampled_from(list(GroupPolicy))) for g in GROUP_IDS}
    servers = [
        vm(
            f"s{i:02d}",
            ha=draw(st.booleans()),
            priority=draw(st.integers(0, 3)),
            flavor=draw(st.sampled_from(FLAVORS)),
            state=draw(st.sampled_from(list(VmState))),
            group=draw(st.none() | st.sampled_from(GROUP_IDS)),
        )
        for i in range(draw(st.integers(0, 30)))
    ]
    groups = {
        ServerGroupId(g): group(g, policies[g], *(s.id for s in servers if s.group == g)) for g in GROUP_IDS
    }
    return (
        servers,
        targets,
        groups,
        draw(st.sampled_from(list(RecoveryMethod))),
        draw(st.booleans()),
        draw(st.booleans()),
    )


def run(snap: Snapshot, *, budget: int = planner._SCAN_BUDGET) -> EvacuationPlan:
    servers, targets, groups, method, evacuate_all, ignore_error = snap
    # A flavor gets a heap of its own once a scan passes over _SCAN_BUDGET hosts without room.
    # The snapshots are small, so budget 0 is what exercises those heaps.
    with patch.object(planner, "_SCAN_BUDGET", budget):
        return plan_evacuation(
            servers,
            targets,
            groups,
            method,
            evacuate_all_instances=evacuate_all,
            ignore_instances_in_error_state=ignore_error,
        )


@pytest.mark.parametrize("budget", [0, planner._SCAN_BUDGET])
@settings(max_examples=200, deadline=None)
@given(snap=snapshots())
def test_plans_keep_every_rule(snap: Snapshot, budget: int) -> None:
    servers, targets, groups, method, evacuate_all, _ = snap
    p = run(snap, budget=budget)
    check_partition(p, servers, evacuate_all=evacuate_all)
    check_capacity(p, servers, targets)
    check_groups(p, servers, targets, groups)
    check_method(p, targets, method)
    assert all(u.reason and u.cause is not None for u in p.unplaced + p.skipped)


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_plans_depend_on_neither_input_order_nor_scan_budget(snap: Snapshot) -> None:
    servers, targets, groups, method, evacuate_all, ignore_error = snap
    reordered = (list(reversed(servers)), list(reversed(targets)), groups, method, evacuate_all, ignore_error)
    assert run(snap) == run(reordered, budget=0)


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_no_higher_priority_server_lacks_room_that_a_lower_one_of_its_flavor_found(snap: Snapshot) -> None:
    servers = snap[0]
    p = run(snap)
    by_id = {s.id: s for s in servers}
    placed = [by_id[pl.server_id] for pl in p.placements if by_id[pl.server_id].ha_enabled]
    no_room = [by_id[u.server_id] for u in p.unplaced if u.cause is UnplacedCause.NO_ROOM]
    for low in placed:
        for high in no_room:
            assert not (high.ha_enabled and high.flavor == low.flavor and high.priority > low.priority)


@pytest.mark.parametrize("budget", [0, planner._SCAN_BUDGET])
@settings(max_examples=200, deadline=None)
@given(snap=snapshots())
def test_without_groups_the_plan_matches_a_plain_scan_of_every_target(snap: Snapshot, budget: int) -> None:
    servers, targets, _, method, _, _ = snap
    p = run((servers, targets, {}, method, False, False), budget=budget)
    assert as_pairs(p) == sorted(reference_plan(servers, targets, method))


# --- scale -----------------------------------------------------------------------------------


def random_segment(
    rng: random.Random, *, n_servers: int, n_targets: int
) -> tuple[list[Server], list[TargetHost], dict[ServerGroupId, ServerGroup]]:
    targets = [
        host(
            f"compute-{i:04d}",
            vcpus=rng.choice([16, 32, 48]),
            ram=rng.choice([65536, 131072, 262144]),
            disk=rng.choice([500, 1000, 2000]),
            used=(rng.randint(0, 40), rng.randint(0, 200000), rng.randint(0, 900)),
            reserved=rng.random() < 0.1,
            groups=[f"g{rng.randrange(20)}"] if rng.random() < 0.2 else [],
            cpu_ratio=4.0,
        )
        for i in range(n_targets)
    ]
    servers = [
        vm(
            f"vm-{i:04d}",
            ha=rng.random() < 0.8,
            priority=rng.randrange(5),
            flavor=rng.choice(FLAVORS),
            state=VmState.ERROR if rng.random() < 0.02 else VmState.ACTIVE,
            group=f"g{rng.randrange(20)}" if rng.random() < 0.3 else None,
        )
        for i in range(n_servers)
    ]
    policies = list(GroupPolicy)
    groups = {
        ServerGroupId(f"g{k}"): group(
            f"g{k}", policies[k % 4], *(s.id for s in servers if s.group == f"g{k}"), name=f"group-{k}"
        )
        for k in range(20)
    }
    return servers, targets, groups


def test_a_rack_of_800_servers_onto_3000_targets() -> None:
    servers, targets, groups = random_segment(random.Random(42), n_servers=800, n_targets=3000)
    gc.collect()  # else the printed time includes collecting the snapshot just built, not planning
    started = time.perf_counter()
    p = plan_evacuation(servers, targets, groups, RecoveryMethod.AUTO_PRIORITY, evacuate_all_instances=True)
    elapsed = time.perf_counter() - started
    print(f"\nplanned 800 servers onto 3000 targets in {elapsed * 1000:.1f} ms")
    check_partition(p, servers, evacuate_all=True)
    check_capacity(p, servers, targets)
    check_groups(p, servers, targets, groups)
    check_method(p, targets, RecoveryMethod.AUTO_PRIORITY)
    assert len(p.placements) > 600


def test_a_crowded_segment_matches_the_plain_scan() -> None:
    rng = random.Random(3)
    servers, targets, _ = random_segment(rng, n_servers=800, n_targets=60)
    p = plan_evacuation(servers, targets, {}, RecoveryMethod.RH_PRIORITY)
    assert p.unplaced, "the segment should run out of room"
    assert as_pairs(p) == sorted(reference_plan(servers, targets, RecoveryMethod.RH_PRIORITY))


def test_hosts_with_ram_but_no_vcpu_do_not_slow_every_server_down() -> None:
    # 3000 hosts with plenty of RAM and one free vCPU sit at the top of the spread order;
    # every 8-vCPU server has to get past them to the hosts that can take it.
    targets = [host(f"starved-{i:04d}", vcpus=8, used=(7, 0, 0), ram=262144) for i in range(3000)]
    targets += [host(f"roomy-{i:03d}", vcpus=64, ram=131072) for i in range(100)]
    cpu = Flavor("c1.xlarge", vcpus=8, ram_mb=4096, disk_gb=20)
    servers = [vm(f"s{i:03d}", flavor=cpu if i % 2 else SMALL, priority=i % 3) for i in range(800)]
    gc.collect()
    started = time.perf_counter()
    p = plan_evacuation(servers, targets, {}, RecoveryMethod.AUTO)
    elapsed_ms = (time.perf_counter() - started) * 1000
    print(f"\nplanned 800 servers past 3000 vCPU-starved hosts in {elapsed_ms:.1f} ms")
    assert as_pairs(p) == sorted(reference_plan(servers, targets, RecoveryMethod.AUTO))
    assert not p.unplaced
