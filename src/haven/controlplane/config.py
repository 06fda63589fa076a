"""haven.toml's ``[controlplane]``: the controllers, the managed services, and how each differs from
the catalogue.

Called by haven.service.config (which reads the file) as it does haven.fencing.config; pure. Every
mistake raises ConfigError naming the key and how to fix it.

    [controlplane]
    gate_share = 0.5                 # more than this share of a service failing its probes holds it
    max_restarts_at_once = 1         # per service
    pass_interval_s = 1.0
    gate_window_s = 60.0             # a replica restarted this recently, not serving yet, counts as
                                     # failing for gate_share (0 to 3600; 0: only those failing now)
    rise_wait_s = 15.0               # the last member in a backend is kept this long for a replica back
                                     # by haven's probe, not yet up in HAProxy's check (0 to 600)
    driver = "systemd"               # "podman", "docker" or "sim"; default: "sim" on the simulated cloud,
                                     # else "systemd"
    haproxy_socket = "/run/haproxy/admin.sock"   # HAProxy's stats socket (level admin); "" for none
    [controlplane.kubernetes]        # driver "kubernetes": a controller is a node, a unit a Deployment
    api = "https://10.0.0.1:6443"
    namespace = "openstack"
    token_env = "HAVEN_KUBE_TOKEN"   # a service account's token, read from the environment
    ca = "/etc/haven/kube-ca.crt"
    [[controlplane.controllers]]
    host = "ctl-1"
    domain = "rack-a"                # its failure domain
    address = "10.0.0.11"            # where its replicas are probed; default: host
    bus = "unix:path=/run/dbus/system_bus_socket"   # its systemd's D-Bus; default: this machine's
    engine = "unix:///run/podman/podman.sock"       # its container engine (driver podman or docker)
    [controlplane.services.keystone]             # a table per managed service; {} keeps the catalogue's
    [controlplane.services.nova-api]
    min_replicas = 3
    unit = "devstack@n-api.service"
    hosts = ["ctl-1", "ctl-2", "ctl-3"]          # default: every controller
    domains = ["rack-a", "rack-b"]               # default: any
    spread = "domains"                           # or "none"
    backend = "nova_api"                         # HAProxy backend; "" for none
    depends_on = ["mariadb", "rabbitmq"]
    stateful = false
    quorum = false                               # serves only with a majority of its members up
    drain_s = 2.0
    probe = { kind = "http", port = 8774, path = "/", expect_status = [200], timeout_s = 2.0,
              period_s = 2.0, failure_threshold = 3, startup_grace_s = 60.0,
              busy_grace_s = 30.0, busy_cpu_share = 0.02 }   # or probe = "none"
    restart = { backoff_initial_s = 1.0, backoff_factor = 2.0, backoff_max_s = 300.0,
                crash_loop_max_restarts = 5, crash_loop_window_s = 600.0 }

A service that is not in the catalogue (haven.controlplane.catalogue.CATALOGUE) needs ``unit``. With a
container driver a unit is a container name (``{host}`` in it becomes the controller's host name), and a
catalogue service without ``unit`` is the container Kolla-Ansible names it (nova-api: ``nova_api``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from haven.controlplane.catalogue import CATALOGUE
from haven.domain.controlplane import (
    Backend,
    Controller,
    ControlPlaneSettings,
    DomainName,
    ProbeKind,
    ProbeSpec,
    RestartPolicy,
    ServiceName,
    ServiceSpec,
    Spread,
)
from haven.domain.errors import ConfigError
from haven.domain.ids import HostName

T = TypeVar("T")
_KINDS = {str: "a string", bool: "true or false", int: "an integer", float: "a number"}
_SECTION_KEYS = {
    "gate_share", "max_restarts_at_once", "pass_interval_s", "gate_window_s", "rise_wait_s", "controllers",
    "services", "driver", "haproxy_socket", "kubernetes",
}  # fmt: skip
DRIVERS = ("systemd", "podman", "docker", "kubernetes", "sim")
CONTAINER_DRIVERS = ("podman", "docker")
_SERVICE_KEYS = {
    "unit", "min_replicas", "hosts", "domains", "spread", "backend", "depends_on", "stateful", "drain_s",
    "probe", "restart", "quorum",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class KubernetesAccess:
    """``[controlplane.kubernetes]``: the API server, the services' namespace, where the token is."""

    api: str
    namespace: str = "openstack"
    token_env: str = ""  # the environment variable holding a service account's bearer token
    ca: str = ""  # the cluster's CA bundle; "" verifies with the system's


# OpenStack-Helm's Deployment of each catalogue service (driver "kubernetes", no ``unit`` given).
_HELM_DEPLOYMENTS = {"keystone": "keystone-api", "nova-api": "nova-api-osapi"}


@dataclass(frozen=True, slots=True)
class ControlPlaneConfig:
    settings: ControlPlaneSettings = field(default_factory=ControlPlaneSettings)
    controllers: tuple[Controller, ...] = ()
    services: tuple[ServiceSpec, ...] = ()
    driver: str = ""  # one of DRIVERS, or "" (sim on the simulated cloud, systemd on a real one)
    haproxy_socket: str = ""  # HAProxy's stats socket; "" for no load balancer
    kubernetes: KubernetesAccess | None = None  # driver "kubernetes": the API server

    @property
    def enabled(self) -> bool:
        return bool(self.controllers and self.services)


def parse_controlplane(section: object, where: str) -> ControlPlaneConfig:
    """``section`` is the raw ``[controlplane]`` table (None when absent: nothing is managed)."""
    if section is None:
        return ControlPlaneConfig()
    where = f"{where} [controlplane]"
    table = _mapping(section, where, "write it as a [controlplane] section")
    _only(table, _SECTION_KEYS, where)
    raw = {k: v for k, v in table.items() if k in _SETTINGS}
    # The windows' numbers are range-checked below (a negative one named with its range); anything
    # else is _scalars' to refuse (its type named).
    windows: dict[str, Any] = {k: _seconds(raw.pop(k)) for k in _WINDOWS if _is_number(raw.get(k))}
    settings = dataclasses.replace(_scalars(ControlPlaneSettings(), raw, where), **windows)
    if not 0 < settings.gate_share <= 1:
        raise ConfigError(f"{where}: gate_share must be in (0, 1], got {settings.gate_share!r}")
    if settings.max_restarts_at_once < 1 or settings.pass_interval_s <= 0:
        raise ConfigError(f"{where}: max_restarts_at_once must be >= 1 and pass_interval_s > 0")
    for key, (low, high) in _WINDOWS.items():
        value = getattr(settings, key)
        if not low <= value <= high:  # NaN too
            raise ConfigError(
                f"{where}: {key} must be between {low:g} and {high:g} seconds, got {value!r}",
                f"e.g. {key} = {getattr(ControlPlaneSettings(), key)!r} (the default)",
            )
    controllers = _controllers(table.get("controllers", []), f"{where} controllers")
    raw_services = _mapping(
        table.get("services", {}), f"{where} services", "use [controlplane.services.NAME]"
    )
    services = tuple(_service(name, body, f"{where} services.{name}") for name, body in raw_services.items())
    known = {s.name for s in services}
    hosts = {c.host for c in controllers}
    for spec in services:
        _cross_check(spec, known, hosts, f"{where} services.{spec.name}")
    driver = table.get("driver", "")
    if driver not in ("", *DRIVERS):
        raise ConfigError(
            f"{where}: driver must be one of {', '.join(map(repr, DRIVERS))}, got {driver!r}",
            'driver = "systemd" drives each controller\'s systemd over D-Bus; "podman" or "docker" its '
            'container engine\'s API; "kubernetes" the pods of Deployments; "sim" a simulated one',
        )
    if driver in CONTAINER_DRIVERS:
        services = tuple(
            s if "unit" in raw_services[s.name] else dataclasses.replace(s, unit=s.name.replace("-", "_"))
            for s in services
        )
    kubernetes = _kubernetes(table.get("kubernetes"), f"{where} kubernetes", driver == "kubernetes")
    if driver == "kubernetes":
        services = tuple(
            s
            if "unit" in raw_services[s.name]
            else dataclasses.replace(s, unit=_HELM_DEPLOYMENTS.get(s.name, s.name))
            for s in services
        )
    socket_path = table.get("haproxy_socket", "")
    if not isinstance(socket_path, str):
        raise ConfigError(
            f"{where}: haproxy_socket must be a path, got {socket_path!r}",
            'e.g. haproxy_socket = "/run/haproxy/admin.sock" (a stats socket with level admin)',
        )
    return ControlPlaneConfig(settings, controllers, services, driver, socket_path, kubernetes)


def _kubernetes(value: object, where: str, needed: bool) -> KubernetesAccess | None:
    example = '[controlplane.kubernetes] api = "https://10.0.0.1:6443", token_env = "HAVEN_KUBE_TOKEN"'
    if value is None:
        if needed:
            raise ConfigError(f'{where}: driver "kubernetes" needs the API server', example)
        return None
    table = _mapping(value, where, example)
    access = _scalars(KubernetesAccess(""), table, where)
    if not access.api.startswith(("https://", "http://")):
        raise ConfigError(f"{where}: api must be the API server's URL, got {access.api!r}", example)
    return access


_SETTINGS = {"gate_share", "max_restarts_at_once", "pass_interval_s", "gate_window_s", "rise_wait_s"}
# The planner's windows (seconds) and their allowed ranges: gate_window_s 0 counts only the replicas
# failing now (the gate of a burst); rise_wait_s 0 never keeps the last member for a returning one.
_WINDOWS = {"gate_window_s": (0.0, 3600.0), "rise_wait_s": (0.0, 600.0)}


def _controllers(value: object, where: str) -> tuple[Controller, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: must be a list of tables", "write [[controlplane.controllers]] entries")
    seen: set[str] = set()
    out: list[Controller] = []
    for i, entry in enumerate(value):
        here = f"{where}[{i}]"
        table = _mapping(entry, here, 'each entry is a table: host = "ctl-1", domain = "rack-a"')
        _only(table, {"host", "domain", "address", "bus", "engine"}, here)
        host, domain, address = table.get("host"), table.get("domain", ""), table.get("address", "")
        bus = table.get("bus", "")
        if not isinstance(bus, str):
            raise ConfigError(
                f"{here}: bus must be a D-Bus address, got {bus!r}",
                'e.g. bus = "unix:path=/run/dbus/system_bus_socket"',
            )
        engine = table.get("engine", "")
        if not isinstance(engine, str):
            raise ConfigError(
                f"{here}: engine must be the container engine's address, got {engine!r}",
                'e.g. engine = "unix:///run/podman/podman.sock"',
            )
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{here}: host must be a non-empty string", 'e.g. host = "ctl-1"')
        if not isinstance(domain, str):
            raise ConfigError(f"{here}: domain must be a string, got {domain!r}", 'e.g. domain = "rack-a"')
        if not isinstance(address, str):
            raise ConfigError(
                f"{here}: address must be a string, got {address!r}", 'e.g. address = "10.0.0.11"'
            )
        if host in seen:
            raise ConfigError(f"{here}: host {host!r} is listed twice", "list each controller once")
        seen.add(host)
        out.append(Controller(HostName(host), DomainName(domain or host), address, bus, engine))
    return tuple(out)


def _service(name: str, body: object, where: str) -> ServiceSpec:
    table = _mapping(body, where, "write it as a table, {} to keep the catalogue's defaults")
    _only(table, _SERVICE_KEYS, where)
    base = CATALOGUE.get(ServiceName(name))
    if base is None:
        if "unit" not in table:
            raise ConfigError(
                f"{where}: {name!r} is not in the built-in catalogue, so it needs a unit",
                f'add unit = "{name}.service", or use one of: {", ".join(sorted(CATALOGUE))}',
            )
        base = ServiceSpec(ServiceName(name), "")
    plain = {
        k: v
        for k, v in table.items()
        if k in {"unit", "min_replicas", "stateful", "quorum", "drain_s", "spread"}
    }
    spec = _scalars(base, plain, where)
    changes: dict[str, Any] = {}
    for key in ("hosts", "domains", "depends_on"):
        if key in table:
            changes[key] = _strings(table[key], f"{where}: {key}")
    if "backend" in table:
        backend = table["backend"]
        if not isinstance(backend, str):
            raise ConfigError(
                f"{where}: backend must be a string, got {backend!r}", 'e.g. backend = "nova_api"'
            )
        changes["backend"] = Backend(backend) if backend else None
    if "probe" in table:
        changes["probe"] = _probe(table["probe"], spec.probe, f"{where} probe")
    if "restart" in table:
        restart = _mapping(table["restart"], f"{where} restart", "write restart = { backoff_max_s = 60.0 }")
        changes["restart"] = _scalars(spec.restart, restart, f"{where} restart")
        _check_restart(changes["restart"], f"{where} restart")
    spec = dataclasses.replace(spec, **changes)
    if not spec.unit:
        raise ConfigError(f"{where}: unit must be a non-empty string", 'e.g. unit = "nova-api.service"')
    if spec.min_replicas < 1:
        raise ConfigError(f"{where}: min_replicas must be at least 1, got {spec.min_replicas}")
    return spec


def _probe(value: object, base: ProbeSpec | None, where: str) -> ProbeSpec | None:
    if value == "none":
        return None
    table = _mapping(value, where, 'write probe = { kind = "http", port = 8774, path = "/" } or "none"')
    keys = {f.name for f in dataclasses.fields(ProbeSpec)}
    _only(table, keys, where)
    if "kind" in table:
        _scalars(ProbeSpec(ProbeKind.TCP, 0), {"kind": table["kind"]}, where)  # a bad kind named first
    if base is None or ("kind" in table and table["kind"] != base.kind.value):
        needs_port = table.get("kind") != ProbeKind.NOVA_RPC.value
        if "kind" not in table or (needs_port and "port" not in table):
            raise ConfigError(
                f"{where}: a new probe needs kind and port", 'e.g. { kind = "tcp", port = 3306 }'
            )
        base = ProbeSpec(ProbeKind.TCP, 0 if needs_port else 1)
    rest = {k: v for k, v in table.items() if k != "expect_status"}
    probe = _scalars(base, rest, where)
    if "expect_status" in table:
        status = table["expect_status"]
        if not isinstance(status, list) or not status or not all(_is_status(s) for s in status):
            raise ConfigError(
                f"{where}: expect_status must be a list of HTTP status codes, got {status!r}",
                "e.g. expect_status = [200, 300]",
            )
        probe = dataclasses.replace(probe, expect_status=tuple(status))
    _check_kind(probe, where)
    if not 0 < probe.port < 65536:
        raise ConfigError(f"{where}: port must be between 1 and 65535, got {probe.port}")
    if probe.timeout_s <= 0 or probe.period_s <= 0 or probe.failure_threshold < 1:
        raise ConfigError(f"{where}: timeout_s and period_s must be > 0 and failure_threshold >= 1")
    if probe.busy_grace_s < 0 or not 0 < probe.busy_cpu_share <= 1:
        raise ConfigError(
            f"{where}: busy_grace_s must be >= 0 (0: a late replica is restarted as a hung one) and "
            f"busy_cpu_share between 0 and 1, got {probe.busy_grace_s!r} and {probe.busy_cpu_share!r}",
            "e.g. busy_grace_s = 30.0, busy_cpu_share = 0.02",
        )
    return probe


# What each kind needs besides a port, and an example of it.
_NEEDS: dict[ProbeKind, tuple[tuple[str, ...], str]] = {
    ProbeKind.KEYSTONE: (
        ("user", "password_env"),
        'user = "haven", password_env = "HAVEN_PROBE_PASSWORD", project = "service"',
    ),
    ProbeKind.NOVA_SERVICES: (
        ("user", "password_env", "auth_url"),
        'auth_url = "http://keystone.example:5000/v3", user = "haven", password_env = "HAVEN_PROBE_PASSWORD"',
    ),
    ProbeKind.SQL: (("user", "password_env"), 'user = "haven", password_env = "HAVEN_DB_PASSWORD"'),
    ProbeKind.AMQP: (("user", "password_env"), 'user = "haven", password_env = "HAVEN_MQ_PASSWORD"'),
    ProbeKind.NOVA_RPC: (
        ("topic", "transport_url_env"),
        'topic = "conductor", transport_url_env = "HAVEN_NOVA_TRANSPORT_URL"',
    ),
}


def _check_kind(probe: ProbeSpec, where: str) -> None:
    needed, example = _NEEDS.get(probe.kind, ((), ""))
    missing = [key for key in needed if not getattr(probe, key)]
    if missing:
        raise ConfigError(
            f"{where}: a {probe.kind.value} probe needs {', '.join(missing)}", f"e.g. {{ {example} }}"
        )
    if probe.kind is ProbeKind.NOVA_RPC and probe.topic not in ("conductor", "scheduler", "compute"):
        raise ConfigError(
            f"{where}: topic must be Nova's RPC topic of the service, got {probe.topic!r}",
            'topic = "conductor" for nova-conductor, "scheduler" for nova-scheduler',
        )


def _seconds(value: float) -> float:
    """A TOML number as seconds; an integer too large for a float is infinite (refused by its range)."""
    try:
        return float(value)
    except OverflowError:
        return float("inf")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


def _check_restart(policy: RestartPolicy, where: str) -> None:
    if policy.backoff_factor < 1:
        raise ConfigError(f"{where}: backoff_factor must be at least 1, got {policy.backoff_factor}")
    if policy.backoff_max_s < policy.backoff_initial_s:
        raise ConfigError(f"{where}: backoff_max_s must not be below backoff_initial_s")
    if policy.crash_loop_max_restarts < 1 or policy.crash_loop_window_s <= 0:
        raise ConfigError(f"{where}: crash_loop_max_restarts must be >= 1 and crash_loop_window_s > 0")


def _cross_check(spec: ServiceSpec, known: set[ServiceName], hosts: set[HostName], where: str) -> None:
    for dependency in spec.depends_on:
        if dependency not in known and dependency not in CATALOGUE:
            raise ConfigError(
                f"{where}: depends_on names {dependency!r}, which is no service",
                f"use one of: {', '.join(sorted(known | set(CATALOGUE)))}",
            )
    unknown = sorted(set(spec.hosts) - hosts)
    if unknown and hosts:
        raise ConfigError(
            f"{where}: hosts {', '.join(unknown)} are not controllers",
            "add them as [[controlplane.controllers]] entries, or remove them from hosts",
        )


# ---- typed fields ----------------------------------------------------------------------------------


def _scalars(defaults: T, table: Mapping[str, Any], where: str) -> T:
    """``defaults`` with the keys of ``table`` replaced, each checked against the default's type."""
    names = {f.name for f in dataclasses.fields(defaults)}  # type: ignore[arg-type]
    _only(table, names, where)
    values: dict[str, Any] = {}
    for key, value in table.items():
        expected = type(getattr(defaults, key))
        if issubclass(expected, StrEnum):
            choices = [m.value for m in expected]
            if value not in choices:
                raise ConfigError(
                    f"{where}: {key} must be one of {', '.join(map(repr, choices))}, got {value!r}"
                )
            values[key] = expected(value)
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
            kind = _KINDS.get(expected, expected.__name__)
            raise ConfigError(
                f"{where}: {key} must be {kind}, got {value!r}", f"e.g. {key} = {_example(expected)}"
            )
        if expected in (int, float) and value < 0:
            raise ConfigError(f"{where}: {key} must not be negative, got {value!r}")
        values[key] = value
    return dataclasses.replace(defaults, **values)  # type: ignore[type-var]


def _example(kind: type) -> str:
    return {str: '"text"', bool: "true", int: "3", float: "2.0"}.get(kind, "...")


def _strings(value: object, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of names, got {value!r}", 'e.g. ["ctl-1", "ctl-2"]')
    return tuple(value)


def _mapping(value: object, where: str, hint: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table, got {value!r}", hint)
    return dict(value)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}", f"known keys: {', '.join(sorted(allowed))}"
        )


__all__ = ["ControlPlaneConfig", "KubernetesAccess", "Spread", "parse_controlplane"]
