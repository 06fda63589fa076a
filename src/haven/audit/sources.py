"""The audit's Layout read from what haven already knows: its store, its cloud, haven.toml.

Who calls it: ``haven audit`` without ``--layout`` (haven.cli.audit) and ``GET /v1/haven/audit``
(haven.api.routes.haven_audit), each with its own store, config and cloud. Reads; changes nothing.

- **Segments and their hosts**: the store (``haven serve``'s segments, Masakari's ``segment host``s).
- **Each host's capacity, what it carries and its servers** (flavors, ``HA_Enabled``, ``HA_Mode``, server
  groups): the cloud port (the simulated cloud, or Nova). A host is a target as a real recovery's plan
  step takes it (``haven.recovery.host_steps._usable_target``): not on maintenance, not forced down, its
  nova-compute up, enabled (or reserved); the capacity it has left is Nova's ``*_used`` figures, as the
  plan step's ``haven.recovery.targets.TargetBook`` reads them.
- **Failure domains**: a compute host's rack is its host aggregate, as the cloud reports it (the
  dashboard's zone and rack map reads the same ``Host.aggregate``); a host in no aggregate is a domain
  of its own. A controller's domain is its ``[[controlplane.controllers]] domain`` (on the simulated cloud
  without controllers: haven.controlplane.running.SIM_CONTROLLERS, as ``haven impact`` and ``haven
  serve`` use), and a domain the leader recorded with a replica (the store) wins for that host.
- **Control-plane replicas**: each service's replicas the leader's latest pass recorded (the store),
  those that are deployed (neither stopped nor absent); a service with no record: the hosts its
  declaration allows (``hosts``, else every controller, within its ``domains``).
- **Quorum clusters**: ``[stateful.galera]`` nodes (the ``local`` driver runs every node on this machine,
  "localhost"; a ``systemd`` node runs where its ``bus`` reaches: the controller with that ``bus``, else the
  address's ``host=``, else this machine), the
  ``[stateful.rabbitmq]`` nodes (a ``systemd`` node where its ``bus`` reaches, as Galera's, else the host
  of its Erlang node name, ``rabbit-1@ctl-1`` -> ``ctl-1``), and
  each control-plane service declared ``quorum`` (its replicas, as above).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from haven.audit.findings import Cluster, Layout, Segment
from haven.cloud.base import Cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.running import SIM_CONTROLLERS, SIM_SERVICES
from haven.domain.cloud import Host
from haven.domain.controlplane import Controller, ReplicaHealth, ReplicaState, ServiceSpec
from haven.domain.ids import HostName, ServerGroupId
from haven.domain.incidents import SegmentHost
from haven.domain.plan import TargetHost
from haven.domain.settings import RecoverySettings
from haven.stateful.config import StatefulConfig
from haven.store import Store

THIS_MACHINE = "localhost"  # where the local Galera driver runs its nodes
_NOT_DEPLOYED = (ReplicaHealth.STOPPED, ReplicaHealth.ABSENT)


@dataclass(frozen=True, slots=True)
class AuditSources:
    """What the audit reads besides the store: the cloud and haven.toml's sections (no I/O yet)."""

    cloud: Cloud
    controlplane: ControlPlaneConfig
    stateful: StatefulConfig
    recovery: RecoverySettings
    simulated: bool  # the simulated cloud: its simulated controllers stand in for undeclared ones


async def read_layout(store: Store, sources: AuditSources) -> Layout:
    """The Layout of this cloud now. Cloud errors (CloudError) pass through for the caller to word."""
    controllers = sources.controlplane.controllers
    if not controllers and sources.simulated:
        controllers = SIM_CONTROLLERS
    replicas = store.list_replicas()
    domains: dict[str, str] = {str(c.host): str(c.domain) for c in controllers}
    domains.update({str(r.host): str(r.domain) for r in replicas if r.domain})
    specs = _specs(sources.controlplane, sources.simulated)
    services = _replica_hosts(specs, controllers, replicas)
    clusters = _clusters(sources.stateful, controllers)
    clusters += [
        Cluster(str(s.name), services[str(s.name)]) for s in specs if s.quorum and s.name in services
    ]
    hosts = {h.name: h for h in await sources.cloud.list_hosts()}
    servers = list(await sources.cloud.list_servers())
    groups = {g.id: g for g in await sources.cloud.list_server_groups()}
    present: dict[str, set[ServerGroupId]] = {}  # where each group's members run (anti-affinity)
    for s in servers:
        if s.group is not None:
            present.setdefault(s.host, set()).add(s.group)
    segments = []
    for segment in store.list_segments():
        members = [m for m in store.list_hosts(segment.id) if m.name in hosts]
        for m in members:
            domains.setdefault(str(m.name), hosts[m.name].aggregate or str(m.name))
        targets = [_target(hosts[m.name], m, present) for m in members if _usable(hosts[m.name], m)]
        names = {t.name for t in targets}
        mine = tuple(s for s in servers if s.host in names)
        segments.append(
            Segment(
                segment.name,
                tuple(targets),
                mine,
                segment.recovery_method,
                {g: groups[g] for g in {s.group for s in mine} if g is not None and g in groups},
                sources.recovery.evacuate_all_instances,
                sources.recovery.ignore_instances_in_error_state,
            )
        )
    return Layout(
        domains,
        services,
        tuple(clusters),
        tuple(segments),
        controllers=tuple(str(c.host) for c in controllers),
    )


def _specs(config: ControlPlaneConfig, simulated: bool) -> list[ServiceSpec]:
    if config.services:
        return list(config.services)
    if simulated:  # the simulated control plane haven serve runs on the simulated cloud
        return [CATALOGUE[s] for s in SIM_SERVICES]
    return []


def _replica_hosts(
    specs: Sequence[ServiceSpec], controllers: Sequence[Controller], replicas: Sequence[ReplicaState]
) -> dict[str, tuple[str, ...]]:
    recorded: dict[str, list[str]] = {}
    for r in replicas:
        if r.health not in _NOT_DEPLOYED:
            recorded.setdefault(str(r.service), []).append(str(r.host))
    out = {k: tuple(sorted(v)) for k, v in recorded.items()}
    for spec in specs:
        if str(spec.name) in out or any(r.service == spec.name for r in replicas):
            continue  # recorded: where it is deployed wins over where it may be
        allowed = [
            str(c.host)
            for c in controllers
            if (not spec.hosts or c.host in spec.hosts) and (not spec.domains or c.domain in spec.domains)
        ]
        if allowed:
            out[str(spec.name)] = tuple(allowed)
    return out


def _clusters(stateful: StatefulConfig, controllers: Sequence[Controller]) -> list[Cluster]:
    out = []
    by_bus = {c.bus: str(c.host) for c in controllers if c.bus}
    if stateful.galera is not None:
        galera = stateful.galera
        hosts = [
            _bus_host(n.bus, by_bus) if galera.driver == "systemd" else THIS_MACHINE for n in galera.nodes
        ]
        out.append(Cluster(f"galera {galera.cluster}", tuple(hosts)))
    if stateful.rabbitmq is not None:
        rabbit = stateful.rabbitmq
        systemd = rabbit.driver == "systemd"
        places = [_rabbit_host(n.name, n.bus if systemd else "", by_bus) for n in rabbit.nodes]
        out.append(Cluster(f"rabbitmq {rabbit.cluster}", tuple(places)))
    return out


def _rabbit_host(name: str, bus: str, by_bus: Mapping[str, str]) -> str:
    """Where a RabbitMQ node runs: a ``systemd`` node's unit runs where its ``bus`` reaches (a controller
    with that bus, else the address's ``host=``); otherwise the host of its Erlang node name
    (``rabbit-1@ctl-1`` -> ``ctl-1``). The bus comes first because nodes sharing one machine's loopback
    share a host name (the HA lab's are all ``@localhost``, their units on ctl-1 and ctl-2)."""
    return _bus_machine(bus, by_bus) or name.split("@", 1)[1]


def _bus_host(bus: str, by_bus: Mapping[str, str]) -> str:
    """The machine a systemd D-Bus address reaches: a controller with that bus, else its ``host=``."""
    return _bus_machine(bus, by_bus) or THIS_MACHINE  # empty (the system bus) or unix:path=...: here


def _bus_machine(bus: str, by_bus: Mapping[str, str]) -> str | None:
    if bus and bus in by_bus:
        return by_bus[bus]
    for part in bus.partition(":")[2].split(","):
        key, _, value = part.partition("=")
        if key == "host" and value:
            return value
    return None


def _usable(host: Host, member: SegmentHost) -> bool:
    """A target a real recovery would use (haven.recovery.host_steps._usable_target, less the
    detector's own verdict, which only the engine holds)."""
    if member.on_maintenance or host.forced_down or not host.service_up:
        return False
    return host.service_enabled or member.reserved  # reserved hosts are kept disabled until needed


def _target(host: Host, member: SegmentHost, present: Mapping[str, set[ServerGroupId]]) -> TargetHost:
    return TargetHost(
        HostName(host.name),
        host.capacity,
        host.used_vcpus,
        host.used_ram_mb,
        host.used_disk_gb,
        reserved=member.reserved,
        groups_present=frozenset(present.get(host.name, ())),
    )
