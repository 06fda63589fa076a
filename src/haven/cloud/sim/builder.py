"""Builds a simulated cloud from a few numbers: zones, racks, hosts, flavors and VMs.

Called by drills, the demo and `haven serve`; deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass

from haven.cloud.sim.cloud import SimCloud
from haven.cloud.sim.state import SimHost, SimServer
from haven.cloud.sim.timings import SimTimings
from haven.domain.clock import Clock
from haven.domain.cloud import HA_ENABLED_KEY, HA_PRIORITY_KEY, Capacity, Flavor, GroupPolicy, ServerGroup
from haven.domain.errors import UserError
from haven.domain.ids import HostName, ServerGroupId, ServerId

FLAVORS: tuple[tuple[Flavor, float], ...] = (
    (Flavor("m1.small", 1, 2048, 20), 0.40),
    (Flavor("m1.medium", 2, 4096, 40), 0.35),
    (Flavor("m1.large", 4, 8192, 80), 0.20),
    (Flavor("m1.xlarge", 8, 16384, 160), 0.05),
)
HOST_CAPACITY = Capacity(vcpus=48, ram_mb=196_608, disk_gb=4_000, cpu_allocation_ratio=4.0)
RESERVED_REASON = "reserved for HA recovery"
MAX_RACK_SIZE = 40


@dataclass(frozen=True, slots=True)
class CloudSpec:
    hosts: int = 30
    vms: int = 300
    zones: int = 3
    ha_fraction: float = 1 / 3
    seed: int = 1
    reserved_per_zone: int = 0
    second_network: bool = True

    def validate(self) -> None:
        if self.hosts < 1:
            raise UserError(f"--hosts must be at least 1, got {self.hosts}", "pass a positive host count")
        if self.vms < 0:
            raise UserError(f"--vms must not be negative, got {self.vms}", "pass 0 or more VMs")
        if not 1 <= self.zones <= self.hosts:
            raise UserError(f"zones must be between 1 and the host count ({self.hosts}), got {self.zones}")
        if not 0.0 <= self.ha_fraction <= 1.0:
            raise UserError(f"ha fraction must be between 0 and 1, got {self.ha_fraction}")
        if self.reserved_per_zone * self.zones >= self.hosts:
            raise UserError("every host would be reserved", "use fewer reserved hosts or more hosts")


@dataclass(frozen=True, slots=True)
class SimTopology:
    """Where each host stands: the failure domains a drill aims its faults at."""

    zones: dict[str, list[HostName]]
    racks: dict[str, list[HostName]]
    reserved: frozenset[HostName]


def rack_size_for(hosts_per_zone: int) -> int:
    """Racks of 40 in a big cloud; in a small one about a third of a zone, so a rack is below the gate."""
    return min(MAX_RACK_SIZE, max(1, math.ceil(hosts_per_zone / 3)))


def build_cloud(
    spec: CloudSpec, clock: Clock, timings: SimTimings | None = None
) -> tuple[SimCloud, SimTopology]:
    spec.validate()
    rng = random.Random(spec.seed)
    timings = timings or SimTimings()
    hosts, topology = _build_hosts(spec, rng, timings)
    servers = _place_servers(spec, rng, hosts, topology)
    groups = _make_anti_affinity_groups(servers, rng)
    return SimCloud(clock, hosts, servers, groups, timings), topology


def _build_hosts(
    spec: CloudSpec, rng: random.Random, timings: SimTimings
) -> tuple[list[SimHost], SimTopology]:
    hosts: list[SimHost] = []
    zones: dict[str, list[HostName]] = {}
    racks: dict[str, list[HostName]] = {}
    reserved: set[HostName] = set()
    per_zone = [
        spec.hosts // spec.zones + (1 if z < spec.hosts % spec.zones else 0) for z in range(spec.zones)
    ]
    number = 0
    for z, count in enumerate(per_zone):
        zone = f"az{z + 1}"
        size = rack_size_for(count)
        for i in range(count):
            number += 1
            name = HostName(f"compute-{number:05d}")
            rack = f"{zone}-rack{i // size + 1:02d}"
            host = SimHost(
                name=name,
                zone=zone,
                aggregate=rack,
                capacity=HOST_CAPACITY,
                heartbeat_phase=rng.random() * timings.heartbeat_interval_s,
                has_second_network=spec.second_network,
            )
            if i >= count - spec.reserved_per_zone:
                host.service_enabled, host.disabled_reason = False, RESERVED_REASON
                reserved.add(name)
            hosts.append(host)
            zones.setdefault(zone, []).append(name)
            racks.setdefault(rack, []).append(name)
    return hosts, SimTopology(zones, racks, frozenset(reserved))


def _place_servers(
    spec: CloudSpec, rng: random.Random, hosts: list[SimHost], topology: SimTopology
) -> list[SimServer]:
    usable = [h for h in hosts if h.name not in topology.reserved]
    flavors = [f for f, _ in FLAVORS]
    weights = [w for _, w in FLAVORS]
    used = {h.name: [0, 0, 0] for h in usable}
    servers: list[SimServer] = []
    for i, flavor in enumerate(rng.choices(flavors, weights, k=spec.vms)):
        host = _first_fit(usable, used, i, flavor)
        metadata = {}
        if rng.random() < spec.ha_fraction:
            metadata = {HA_ENABLED_KEY: "True", HA_PRIORITY_KEY: str(rng.choice((0, 0, 1, 2, 3)))}
        sid = ServerId(str(uuid.UUID(int=rng.getrandbits(128), version=4)))
        servers.append(
            SimServer(id=sid, name=f"vm-{i + 1:06d}", host=host.name, flavor=flavor, metadata=metadata)
        )
    return servers


def _first_fit(usable: list[SimHost], used: dict[HostName, list[int]], i: int, flavor: Flavor) -> SimHost:
    for k in range(len(usable)):
        host = usable[(i + k) % len(usable)]
        u = used[host.name]
        if host.capacity.admits(flavor, u[0], u[1], u[2]):
            u[0] += flavor.vcpus
            u[1] += flavor.ram_mb
            u[2] += flavor.disk_gb
            return host
    raise UserError(
        f"the simulated hosts cannot hold {i + 1} VMs",
        "use fewer --vms or more --hosts (about 20 VMs per host fit)",
    )


def _make_anti_affinity_groups(servers: list[SimServer], rng: random.Random) -> list[ServerGroup]:
    """Some HA VMs form anti-affinity pairs or triples, as replicated applications do."""
    ha = [s for s in servers if s.metadata]
    groups: list[ServerGroup] = []
    for g in range(len(ha) // 30):
        members = rng.sample(ha, k=3)
        if len({m.host for m in members}) < 3 or any(m.group for m in members):
            continue
        gid = ServerGroupId(f"aa-{g + 1:04d}")
        for m in members:
            m.group = gid
        groups.append(
            ServerGroup(
                gid, f"anti-affinity-{g + 1}", GroupPolicy.ANTI_AFFINITY, frozenset(m.id for m in members)
            )
        )
    return groups
