"""OpenStack's service dependency graph: the control plane's declared specs plus the compute side.

Called by haven.explain (the graph the ranker walks) and, later, by the control plane's impact analysis.
The control-plane services and what each depends on are not listed here a second time: they come from
the ServiceSpecs the caller passes (haven.controlplane's catalogue, with haven.toml's overrides). This
module adds what the control plane does not run (nova-compute and the Neutron agents on the hypervisors),
the user operations with their phases, and how Nova's faults and binaries map onto the graph.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from haven.domain.controlplane import ServiceName, ServiceSpec

S = ServiceName

SERVER_BOOT = "server-boot"  # the operation node a boot's symptom is seen on
SERVER_EVACUATE = "server-evacuate"  # a rebuild elsewhere: scheduled, built, spawned and bound as a boot is

# The services on each hypervisor (not in the control-plane catalogue) and what they need.
_COMPUTE_SIDE: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        # nova-compute reaches the database through the conductor, reports to Placement, downloads images
        # from Glance, binds ports in Neutron, all with Keystone tokens, and waits on RabbitMQ for its RPC.
        "nova-compute": (
            "rabbitmq",
            "nova-conductor",
            "placement-api",
            "glance-api",
            "neutron-server",
            "keystone",
        ),
        "neutron-agent": ("rabbitmq", "neutron-server"),
    }
)

PHASES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "api": ("nova-api",),
        "scheduling": ("nova-scheduler", "placement-api"),
        "build": ("nova-conductor",),
        "image download": ("glance-api",),
        "port binding": ("neutron-server", "neutron-agent"),
        "spawn": ("nova-compute",),
    }
)
"""A server boot's phases, in order, and the services doing each one's work."""

_BOOT_NEEDS = tuple(dict.fromkeys(n for nodes in PHASES.values() for n in nodes))
_OPERATIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {SERVER_BOOT: _BOOT_NEEDS, SERVER_EVACUATE: _BOOT_NEEDS}
)

LABELS: Mapping[str, str] = MappingProxyType(
    {
        "keystone": "Keystone",
        "glance-api": "Glance",
        "placement-api": "Placement",
        "neutron-server": "Neutron",
        "rabbitmq": "RabbitMQ",
        "mariadb": "the database (MariaDB)",
        "memcached": "memcached",
        "haproxy": "HAProxy",
        SERVER_BOOT: "server boot",
        SERVER_EVACUATE: "evacuation",
    }
)

# Nova's exception names (a fault's ``exception``) and words in its message, mapped to a boot's phase.
_FAULT_PHASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"NoValidHost|No valid host|AllocationUpdateFailed|Placement", re.I), "scheduling"),
    (re.compile(r"Image|Glance", re.I), "image download"),
    (
        re.compile(r"PortBinding|binding_failed|VirtualInterface|Neutron|allocate the network", re.I),
        "port binding",
    ),
)
# Wrappers (a reschedule gave up, a build aborted) name the phase only when nothing more specific does.
_SPAWN = re.compile(r"MaxRetriesExceeded|RescheduledException|BuildAbort|InstanceExists", re.I)

_BINARY_NODES: Mapping[str, str] = MappingProxyType(
    {
        "nova-osapi_compute": "nova-api",
        "nova-metadata": "nova-api",
        "neutron-openvswitch-agent": "neutron-agent",
        "neutron-ovn-metadata-agent": "neutron-agent",
        "neutron-dhcp-agent": "neutron-agent",
        "neutron-l3-agent": "neutron-agent",
    }
)


@dataclass(frozen=True, slots=True)
class Topology:
    """Nodes (services and operations), what each needs, words for them, and an operation's phases."""

    depends_on: Mapping[str, tuple[str, ...]]
    labels: Mapping[str, str]
    phases: Mapping[str, tuple[str, ...]]
    operations: frozenset[str]

    def needed_by(self, node: str) -> frozenset[str]:
        """Every node that needs ``node``, directly or not: what its failure can break (impact)."""
        users: dict[str, set[str]] = {}
        for user, needs in self.depends_on.items():
            for need in needs:
                users.setdefault(need, set()).add(user)
        seen: set[str] = set()
        todo = list(users.get(node, ()))
        while todo:
            current = todo.pop()
            if current not in seen and current != node:
                seen.add(current)
                todo.extend(users.get(current, ()))
        return frozenset(seen)


def openstack_topology(control_plane: Iterable[ServiceSpec]) -> Topology:
    """The graph of ``control_plane``'s services (their ``depends_on``), the compute side and a boot."""
    depends_on: dict[str, tuple[str, ...]] = {}
    for spec in sorted(control_plane, key=lambda s: s.name):
        depends_on[spec.name] = tuple(spec.depends_on)
    for node, needs in {**_COMPUTE_SIDE, **_OPERATIONS}.items():
        depends_on.setdefault(node, needs)
    return Topology(
        depends_on=MappingProxyType(depends_on),
        labels=LABELS,
        phases=PHASES,
        operations=frozenset(_OPERATIONS),
    )


def phase_of_fault(exception: str, message: str = "") -> str | None:
    """The boot phase a Nova fault points at ("NoValidHost" → "scheduling"), or None when unknown."""
    for text in (exception, message):
        for pattern, phase in _FAULT_PHASES:
            if text and pattern.search(text):
                return phase
    return "spawn" if _SPAWN.search(exception) else None


def node_of_binary(binary: str) -> str:
    """The graph node of a service binary as Nova and Neutron name it in their notifications."""
    return _BINARY_NODES.get(binary, binary)
