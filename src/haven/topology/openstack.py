"""OpenStack's service dependency graph: the control plane's declared specs plus the compute side.

Called by haven.explain (the graph the ranker walks) and by haven.topology.impact (``haven impact``).
The control-plane services and what each depends on are not listed here a second time: they come from
the ServiceSpecs the caller passes (haven.controlplane's catalogue, with haven.toml's overrides). This
module adds what the control plane does not run (nova-compute and the Neutron agents on the hypervisors),
the user operations (the services each goes through, the declared edges it does not use, the caches it
can or cannot count on), a boot's phases, and how Nova's faults and binaries map onto the graph. The
operations were checked against the lab (bench/impact.py, docs/controlplane.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from haven.domain.controlplane import ServiceName, ServiceSpec

S = ServiceName

SERVER_BOOT = "server-boot"  # the operation node a boot's symptom is seen on
SERVER_EVACUATE = "server-evacuate"  # a rebuild elsewhere: scheduled, built, spawned and bound as a boot is
SERVER_DELETE = "server-delete"
SERVER_RESIZE = "server-resize"
SERVER_LIST = "server-list"
SERVER_SHOW = "server-show"
SERVER_CONSOLE = "server-console"
FLAVOR_LIST = "flavor-list"
HYPERVISOR_LIST = "hypervisor-list"
TOKEN_ISSUE = "token-issue"
IMAGE_LIST = "image-list"
IMAGE_UPLOAD = "image-upload"
PLACEMENT_QUERY = "placement-query"

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

_KS = "keystone"
# Dependencies a service can do without for a while, from a cache: losing one degrades what goes through
# it, never stops it at once. Keystone caches in memcached and falls back to its database. Every API
# checks a user's token with keystonemiddleware, which keeps a validated token for token_cache_time
# (300 s by default): a token the API has already seen keeps working while Keystone is down (measured
# on the lab, bench/impact.py), a new one cannot be issued. nova-compute holds its service token (an
# hour) in its keystoneauth session.
CACHES: frozenset[tuple[str, str]] = frozenset(
    {
        (_KS, "memcached"),
        ("nova-api", _KS),
        ("placement-api", _KS),
        ("glance-api", _KS),
        ("neutron-server", _KS),
        ("nova-compute", _KS),
    }
)


@dataclass(frozen=True, slots=True)
class Fallback:
    """Another path an operation takes when ``service`` is down: the services it then calls (``calls``,
    minus the ``unused`` edges), and in words how and when (``reason``, shown with the verdict)."""

    service: str
    calls: tuple[str, ...]
    reason: str
    unused: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Operation:
    """A user operation: the services its request goes through, and which of their own dependencies
    (the catalogue's ``depends_on``, the compute side's) it does not reach.

    A service's declared dependencies are everything it may need; one operation uses only some of them
    (listing servers reads nova-api's database and checks the token, it casts nothing on RabbitMQ and asks
    nothing of Placement). ``unused`` names those edges, so the catalogue stays the one model of what
    each service needs and an override in haven.toml still reaches every operation.
    """

    name: str
    label: str
    calls: tuple[str, ...]
    unused: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    # Cache edges this operation cannot count on: a boot hands the user's token on to Glance and
    # Neutron, which have most likely never seen it (measured: the boot stops while Keystone is down).
    uncached: frozenset[tuple[str, str]] = frozenset()
    fallbacks: tuple[Fallback, ...] = ()


def _edges(unused: Mapping[str, tuple[str, ...]] | None) -> Mapping[str, frozenset[str]]:
    return MappingProxyType({service: frozenset(needs) for service, needs in (unused or {}).items()})


def _op(
    name: str,
    label: str,
    calls: tuple[str, ...],
    unused: Mapping[str, tuple[str, ...]] | None = None,
    uncached: frozenset[tuple[str, str]] = frozenset(),
    fallbacks: tuple[Fallback, ...] = (),
) -> Operation:
    return Operation(name, label, calls, _edges(unused), uncached, fallbacks)


_HANDED_ON = frozenset({("glance-api", _KS), ("neutron-server", _KS)})  # the user's token, second-hand


# nova-api's reads come from its databases; it validates the token (Keystone) on every request; only
# what it hands on (a boot's build request, a delete, a console) goes over RabbitMQ.
_READ = {"nova-api": ("rabbitmq", "placement-api")}
_SHOWN = {**_READ, "neutron-server": ("rabbitmq",)}
_TOKEN_TO_NEUTRON = frozenset({("neutron-server", _KS)})
# A call from nova-api to one compute and back (RPC over RabbitMQ), touching nothing else.
_TO_COMPUTE = {
    "nova-api": ("placement-api",),
    "nova-compute": ("nova-conductor", "placement-api", "glance-api", "neutron-server", "keystone"),
}
# Nova's API deletes a server itself ("local delete", nova/compute/api.py ``_delete``) when the compute
# holding it is not up: no report from it within service_down_time (60 s by default). nova-api then
# frees its ports (Neutron) and its Placement allocation and marks it deleted in its database; no RPC.
# A delete sent before then is cast to the compute and waits for it; the guest left on the hypervisor is
# reaped when its compute returns (running_deleted_instance_action). From Nova's code, not measured.
# A compute's report is saved through the conductor over RabbitMQ (nova-compute reaches the database
# only by the conductor's RPC, its service record included: nova/servicegroup/drivers/db.py), so with
# the conductor or the bus down no report arrives either and Nova counts every compute down after
# service_down_time: the same local delete, which needs neither (measured with RabbitMQ stopped on the
# lab, 2026-12-07: nova-api logged "instance's host compute-1 is down, deleting from database" and
# answered 204; its notifications are off there, [oslo_messaging_notifications] driver = noop: a cloud
# that sends them on the same bus would have the local delete wait for it too).
_LOCAL_PATH = ("nova-api", "neutron-server", "placement-api")
_NO_RPC = _edges({"nova-api": ("rabbitmq",)})
_LOCAL_DELETE = Fallback(
    "nova-compute",
    _LOCAL_PATH,
    "deleted locally by nova-api once Nova counts the compute down (no report for service_down_time, "
    "60 s by default); a delete sent before then waits for the compute",
    _NO_RPC,
)
_NO_REPORTS = (
    "deleted locally by nova-api once Nova counts the computes down: their reports go through the "
    "conductor over RabbitMQ, so none arrives for service_down_time (60 s by default); a delete sent "
    "before then waits for {lost}"
)
_LOCAL_DELETES = (
    _LOCAL_DELETE,
    Fallback("nova-conductor", _LOCAL_PATH, _NO_REPORTS.format(lost="the conductor"), _NO_RPC),
    Fallback("rabbitmq", _LOCAL_PATH,
             _NO_REPORTS.format(lost="RabbitMQ") + " (and so does this one if nova-api's notifications "
             "go on the same bus; the lab's are off)", _NO_RPC),
)  # fmt: skip
OPERATIONS: Mapping[str, Operation] = MappingProxyType(
    {
        op.name: op
        for op in (
            _op(TOKEN_ISSUE, "token issue", ("keystone",)),
            # A server's view carries its security groups, which nova-api reads from Neutron with the
            # user's token (measured: with Neutron hung, server list and show stop; flavors do not).
            _op(SERVER_LIST, "server list", ("nova-api", "neutron-server"), _SHOWN, _TOKEN_TO_NEUTRON),
            _op(SERVER_SHOW, "server show", ("nova-api", "neutron-server"), _SHOWN, _TOKEN_TO_NEUTRON),
            _op(FLAVOR_LIST, "flavor list", ("nova-api",), _READ),
            _op(HYPERVISOR_LIST, "hypervisor list", ("nova-api",), _READ),
            _op(SERVER_BOOT, "server boot", _BOOT_NEEDS, uncached=_HANDED_ON),
            _op(SERVER_EVACUATE, "evacuation", _BOOT_NEEDS, uncached=_HANDED_ON),
            # The compute tears the server down, saves it through the conductor, frees its Placement
            # allocation and its ports; it needs no image. Without the compute (or the conductor or
            # the bus its reports need): _LOCAL_DELETES.
            _op(SERVER_DELETE, "server delete", ("nova-api", "nova-compute"),
                {"nova-api": ("placement-api",), "nova-compute": ("glance-api",)},
                fallbacks=_LOCAL_DELETES),
            _op(SERVER_RESIZE, "server resize",
                ("nova-api", "nova-conductor", "nova-scheduler", "placement-api", "nova-compute"),
                {"nova-compute": ("glance-api",)}),
            _op(SERVER_CONSOLE, "console output", ("nova-api", "nova-compute"), _TO_COMPUTE),
            _op(IMAGE_LIST, "image list", ("glance-api",)),
            _op(IMAGE_UPLOAD, "image upload", ("glance-api",)),
            _op(PLACEMENT_QUERY, "Placement query", ("placement-api",)),
        )
    }
)  # fmt: skip
"""The user operations impact analysis answers for, by name."""

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
        **{op.name: op.label for op in OPERATIONS.values()},
    }
)

# Nova's exception names (a fault's ``exception``) and words in its message, mapped to a boot's phase.
_FAULT_PHASES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Nova's API refuses a zone with no enabled compute ("The requested availability zone is not available").
    (
        re.compile(r"NoValidHost|No valid host|AllocationUpdateFailed|Placement|zone is not available", re.I),
        "scheduling",
    ),
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
    paths: Mapping[str, Operation] = field(default_factory=lambda: MappingProxyType({}))
    caches: frozenset[tuple[str, str]] = frozenset()
    balanced: frozenset[str] = frozenset()  # the services reached through the load balancer
    balancer: str = "haproxy"

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

    def needs(self, operation: str) -> tuple[frozenset[str], frozenset[str]]:
        """What ``operation`` cannot work without, and what only slows it when lost (a cache).

        From the services it calls, along their dependencies, except the edges it does not use and the
        caches; a service reached only through a cache edge is in the second set.
        """
        path = self.paths[operation]
        return self.reach(path.calls, path.unused, path.uncached)

    def reach(
        self,
        start: Iterable[str],
        unused: Mapping[str, frozenset[str]] | None = None,
        uncached: frozenset[tuple[str, str]] = frozenset(),
        *,
        from_outside: bool = True,
    ) -> tuple[frozenset[str], frozenset[str]]:
        """``start`` and everything it needs (hard), and what it reaches only through a cache (soft).

        A service behind the load balancer (its spec names a backend) is reached through it: when the
        graph has the balancer, it is needed too; for ``start`` itself only when ``from_outside`` (a
        user's request, not the service serving on its own).
        """
        start = tuple(start)
        skip = unused or {}
        first = frozenset(() if from_outside else start)
        hard: set[str] = set()
        soft: set[str] = set()
        todo = list(start)
        while todo:
            current = todo.pop()
            if current in hard:
                continue
            hard.add(current)
            if current in self.balanced and current not in first and self.balancer in self.depends_on:
                todo.append(self.balancer)
            for need in self.depends_on.get(current, ()):
                if need in skip.get(current, frozenset()):
                    continue
                if (current, need) in self.caches and (current, need) not in uncached:
                    soft.add(need)
                else:
                    todo.append(need)
        return frozenset(hard), frozenset(soft - hard)


def openstack_topology(control_plane: Iterable[ServiceSpec]) -> Topology:
    """The graph of ``control_plane``'s services (their ``depends_on``), the compute side and a boot."""
    depends_on: dict[str, tuple[str, ...]] = {}
    balanced: set[str] = set()
    for spec in sorted(control_plane, key=lambda s: s.name):
        depends_on[spec.name] = tuple(spec.depends_on)
        if spec.backend is not None:
            balanced.add(spec.name)
    for node, needs in _COMPUTE_SIDE.items():
        depends_on.setdefault(node, needs)
    for name, op in OPERATIONS.items():
        depends_on.setdefault(name, op.calls)
    return Topology(
        depends_on=MappingProxyType(depends_on),
        labels=LABELS,
        phases=PHASES,
        operations=frozenset(OPERATIONS),
        paths=OPERATIONS,
        caches=CACHES,
        balanced=frozenset(balanced),
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
