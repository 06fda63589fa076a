"""The built-in catalogue: OpenStack's control-plane services with their usual units, probes and needs.

Read by haven.controlplane.config, which starts from these specs and applies haven.toml's
``[controlplane.services.NAME]`` tables over them. Pure data.

The probes are the services' own health documents where they have one: oslo.middleware's
``/healthcheck`` (Glance ships it in its paste pipeline) or the API's version document (``/v3`` for
Keystone, ``/`` for Nova, Placement and Neutron); memcached's is its text protocol's ``version``.
Conductor and scheduler have no HTTP endpoint: until their RPC ping exists they are judged by their
unit's state alone. Ports are the services' defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from haven.domain.controlplane import Backend, ProbeKind, ProbeSpec, ServiceName, ServiceSpec

S = ServiceName


def _http(port: int, path: str, *status: int, grace_s: float = 60.0) -> ProbeSpec:
    return ProbeSpec(ProbeKind.HTTP, port, path, status or (200,), startup_grace_s=grace_s)


def _tcp(port: int, grace_s: float = 60.0) -> ProbeSpec:
    return ProbeSpec(ProbeKind.TCP, port, startup_grace_s=grace_s)


_DB, _MQ, _MC, _KS, _PL = S("mariadb"), S("rabbitmq"), S("memcached"), S("keystone"), S("placement-api")

_SPECS = (
    ServiceSpec(
        S("keystone"),
        "keystone.service",
        2,
        probe=_http(5000, "/v3"),
        backend=Backend("keystone"),
        depends_on=(_DB, _MC),
    ),
    ServiceSpec(
        S("nova-api"),
        "nova-api.service",
        2,
        probe=_http(8774, "/"),
        backend=Backend("nova_api"),
        depends_on=(_DB, _MQ, _KS, _PL),
    ),
    ServiceSpec(S("nova-conductor"), "nova-conductor.service", 2, depends_on=(_DB, _MQ)),
    ServiceSpec(S("nova-scheduler"), "nova-scheduler.service", 2, depends_on=(_DB, _MQ, _PL)),
    ServiceSpec(
        _PL,
        "placement-api.service",
        2,
        probe=_http(8778, "/"),
        backend=Backend("placement_api"),
        depends_on=(_DB, _KS),
    ),
    ServiceSpec(
        S("glance-api"),
        "glance-api.service",
        2,
        probe=_http(9292, "/healthcheck"),
        backend=Backend("glance_api"),
        depends_on=(_DB, _KS),
    ),
    ServiceSpec(
        S("neutron-server"),
        "neutron-server.service",
        2,
        probe=_http(9696, "/"),
        backend=Backend("neutron_server"),
        depends_on=(_DB, _MQ, _KS),
    ),
    # Galera and RabbitMQ keep their own membership (and Galera its bootstrap rules): haven restarts
    # a failed member, never places one elsewhere. A database takes longer to join than an API to start.
    # Both serve only with a majority of their members up: Galera's surviving minority goes non-Primary
    # and refuses queries; RabbitMQ under pause_minority (the usual OpenStack setting) pauses a minority.
    # A cluster run with partition_handling = ignore or autoheal sets quorum = false in haven.toml.
    ServiceSpec(
        _DB,
        "mariadb.service",
        3,
        probe=_tcp(3306, 300.0),
        backend=Backend("mariadb"),
        stateful=True,
        quorum=True,
    ),
    ServiceSpec(_MQ, "rabbitmq-server.service", 3, probe=_tcp(5672, 120.0), stateful=True, quorum=True),
    # memcached's own ``version`` (a TCP connect passes a hung one: the kernel accepts for it). A memcached
    # that speaks the binary protocol only (``-B binary``; SASL) never answers it: declare its probe
    # ``kind = "tcp"`` in haven.toml, or haven would take it for hung.
    ServiceSpec(_MC, "memcached.service", 2, probe=ProbeSpec(ProbeKind.MEMCACHED, 11211)),
    ServiceSpec(S("haproxy"), "haproxy.service", 2),
)

CATALOGUE: Mapping[ServiceName, ServiceSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})
