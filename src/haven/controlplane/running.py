"""The control plane as ``haven serve`` runs it: the reconciler with the drivers ``[controlplane]`` names.

Built by haven.cli.serve with no I/O (a bad ``[controlplane]`` stops haven before anything is opened),
then ``run`` while this engine leads, as the recovery engine's tick and the publisher do: a new term
starts a new reconciler that re-reads the world (its probe history is the leader's own).

Drivers: ``systemd`` drives each controller's systemd over D-Bus (``bus``, default this machine's system
bus), ``podman`` and ``docker`` its container engine's API (``engine``), ``kubernetes`` the pods of
Deployments on each node (``[controlplane.kubernetes]``); all drive HAProxy through its
stats socket (``haproxy_socket``) and probe over the network; ``sim`` (the default on the simulated
cloud) a simulated control plane in this process: three controllers in three
failure domains and the API services, conductor and scheduler, two replicas each, so ``haven serve`` on
the simulated cloud shows the reconciler at work (``SimControlPlane.kill``, ``hang``: a failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import CONTAINER_DRIVERS, ControlPlaneConfig
from haven.controlplane.drivers.containers import DEFAULT_ENGINES, ContainerUnits
from haven.controlplane.drivers.haproxy import HAProxyRuntime
from haven.controlplane.drivers.kubernetes import KubernetesUnits
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.drivers.sim import SimBalancer, SimProber, SimUnit, SimUnits
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.controlplane.ports import Balancer, Prober, Units
from haven.controlplane.reconciler import ActionHook, Reconciler, ReplicasHook
from haven.domain.clock import Clock
from haven.domain.controlplane import (
    Controller,
    DomainName,
    MemberAdmin,
    ReplicaHealth,
    ReplicaState,
    ServiceName,
    ServiceSpec,
    UnitActive,
)
from haven.domain.errors import ConfigError
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.domain.ids import HostName
from haven.evidence.transport_url import tls_problem
from haven.store import Store

log = logging.getLogger(__name__)

# The simulated control plane's services when [controlplane] names none: the APIs behind the load
# balancer, conductor and scheduler (the stateful ones keep their own membership and are left out).
SIM_SERVICES = tuple(
    ServiceName(s)
    for s in ("keystone", "nova-api", "placement-api", "glance-api", "nova-conductor", "nova-scheduler")
)
SIM_CONTROLLERS = tuple(
    Controller(HostName(f"ctl-{i}"), DomainName(f"rack-{chr(ord('a') + i - 1)}")) for i in (1, 2, 3)
)


@dataclass(slots=True)
class SimControlPlane:
    """The simulated world (ground truth for demos and tests): each controller's units, the balancer."""

    hosts: dict[HostName, SimUnits]
    balancer: SimBalancer
    prober: SimProber
    specs: Mapping[ServiceName, ServiceSpec]

    def unit(self, service: str, host: str) -> SimUnit:
        return self.hosts[HostName(host)].units[self.specs[ServiceName(service)].unit]

    def kill(self, service: str, host: str) -> None:
        """kill -9 of a replica: its unit fails (systemd would say so)."""
        self.unit(service, host).active = UnitActive.FAILED

    def hang(self, service: str, host: str) -> None:
        """SIGSTOP of a replica: still active, its port open, no answer."""
        self.unit(service, host).hung = True

    def lose(self, host: str) -> None:
        """A whole controller gone: its systemd unreachable, its replicas dead."""
        units = self.hosts[HostName(host)]
        units.reachable = False
        for u in units.units.values():
            u.active = UnitActive.FAILED


def sim_control_plane(
    config: ControlPlaneConfig, now: Callable[[], float]
) -> tuple[ControlPlaneConfig, SimControlPlane]:
    """The config the simulated control plane runs with (defaults filled in) and its world.

    Each service's first ``min_replicas`` controllers (one per failure domain first) run it; the others
    have it installed and stopped, so a lost replica can be started there.
    """
    controllers = config.controllers or SIM_CONTROLLERS
    services = config.services or tuple(CATALOGUE[s] for s in SIM_SERVICES)
    config = replace(config, controllers=controllers, services=services)
    started = now() - 3600.0  # serving for an hour already: past every start-up grace
    hosts = {c.host: SimUnits(now) for c in controllers}
    members: dict[tuple[str, str], MemberAdmin] = {}
    for spec in services:
        eligible = [c.host for c in controllers if not spec.hosts or c.host in spec.hosts]
        running = set(_spread(eligible, {c.host: c.domain for c in controllers}, spec.min_replicas))
        for host in eligible:
            active = UnitActive.ACTIVE if host in running else UnitActive.INACTIVE
            hosts[host].units[spec.unit] = SimUnit(active, started)
            if spec.backend is not None:
                members[(spec.backend.name, host)] = (
                    MemberAdmin.READY if host in running else MemberAdmin.MAINT
                )
    address = {c.address or c.host: hosts[c.host] for c in controllers}
    prober = SimProber(now, address)
    for spec in services:
        if spec.probe is not None:
            prober.port_units[spec.probe.port] = spec.unit
    specs = {s.name: s for s in services}
    return config, SimControlPlane(hosts, SimBalancer(members), prober, specs)


def _spread(hosts: list[HostName], domains: Mapping[HostName, str], n: int) -> list[HostName]:
    chosen: list[HostName] = []
    used: set[str] = set()
    for host in hosts:  # one per domain first
        if len(chosen) < n and domains.get(host, host) not in used:
            chosen.append(host)
            used.add(domains.get(host, host))
    chosen += [h for h in hosts if h not in chosen][: n - len(chosen)]
    return chosen


class ControlPlane:
    """What ``haven serve`` owns: the drivers, and a reconciler per term as leader."""

    def __init__(
        self,
        config: ControlPlaneConfig,
        *,
        simulated_cloud: bool,
        clock: Clock,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """ConfigError when a probe's password or transport URL variable is not in ``environ``."""
        environ = environ or {}
        self.driver = config.driver or ("sim" if simulated_cloud else "systemd")
        self.sim: SimControlPlane | None = None
        self._clock = clock
        self._closers: list[Callable[[], object]] = []
        if self.driver == "sim":
            config, self.sim = sim_control_plane(config, clock.now)
            self.units: Mapping[HostName, Units] = self.sim.hosts
            self.balancer: Balancer | None = self.sim.balancer
            self.prober: Prober = self.sim.prober
        else:
            _check_environ(config, environ)
            units = _units(config, self.driver, environ)
            self.units = units
            self._closers += [u.close for u in units.values()]
            self.balancer = HAProxyRuntime(config.haproxy_socket) if config.haproxy_socket else None
            prober = NetworkProber(time.time, environ)
            self._closers.append(prober.close)
            self.prober = prober
        self.config = config
        self.reconciler: Reconciler | None = None

    @staticmethod
    def wanted(config: ControlPlaneConfig, simulated_cloud: bool) -> bool:
        """Whether ``haven serve`` runs a control plane: configured, or the simulated one."""
        return config.enabled or (simulated_cloud and config.driver in ("", "sim"))

    def describe(self) -> str:
        n = sum(1 for s in self.config.services for _ in self.config.controllers)
        where = {"sim": "simulated", "systemd": "systemd over D-Bus", "kubernetes": "Kubernetes pods"}.get(
            self.driver, f"{self.driver} containers"
        )
        lb = "HAProxy" if self.balancer is not None and self.driver != "sim" else "no load balancer"
        if self.driver == "sim":
            lb = "a simulated load balancer"
        return (
            f"control plane: {len(self.config.services)} services on {len(self.config.controllers)} "
            f"controllers ({n} possible replicas, {where}, {lb}): `haven controlplane status` shows them"
        )

    async def run(
        self,
        store: Store,
        leader_epoch: Callable[[], int | None] | None,
        on_action: ActionHook | None,
        stop: asyncio.Event,
        *,
        on_event: EventSink | None = None,
    ) -> None:
        """One term: reconcile until ``stop`` is set (the term is over, or haven stops).

        ``on_event``: told ``controlplane_changed`` when a pass recorded replica states that differ from
        the previous pass's (haven serve: the dashboard's hub)."""
        on_replicas = self._announcer(on_event) if on_event is not None else None
        self.reconciler = Reconciler(
            self.config,
            self.units,
            self.balancer,
            self.prober,
            store,
            self._clock,
            leader_epoch=leader_epoch,
            on_action=on_action,
            on_replicas=on_replicas,
        )
        task = asyncio.create_task(self.reconciler.run())
        try:
            await stop.wait()
        finally:
            # haven no longer uses asyncio.wait_for (Python 3.11's loses a cancellation that arrives as
            # its inner call completes, gh-86296; haven.domain.waiting.within replaces it), but a
            # library the reconciler awaits may still swallow one: cancel again until it has stopped,
            # so it never acts after its term (seen on the HA lab's drills before the fix).
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _announcer(self, sink: EventSink) -> ReplicasHook:
        def on_replicas(states: Sequence[ReplicaState]) -> None:
            not_healthy = sum(1 for s in states if s.health is not ReplicaHealth.HEALTHY)
            detail = {"replicas": len(states), "not_healthy": not_healthy}
            sink(EngineEvent(EventKind.CONTROLPLANE_CHANGED, self._clock.now(), detail=detail))

        return on_replicas

    async def aclose(self) -> None:
        for close in self._closers:
            result = close()
            if asyncio.iscoroutine(result):
                await result


def _units(
    config: ControlPlaneConfig, driver: str, environ: Mapping[str, str]
) -> dict[HostName, SystemdUnits | ContainerUnits | KubernetesUnits]:
    """Each controller's units for a real driver (systemd, a container engine, Kubernetes)."""
    if driver in CONTAINER_DRIVERS:
        return {
            c.host: ContainerUnits(c.engine or DEFAULT_ENGINES[driver], c.host) for c in config.controllers
        }
    kube = config.kubernetes
    if driver == "kubernetes" and kube is not None:
        token = environ[kube.token_env] if kube.token_env else ""
        try:
            return {
                c.host: KubernetesUnits(kube.api, c.host, kube.namespace, token, kube.ca or True)
                for c in config.controllers
            }
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"[controlplane] kubernetes: ca {kube.ca!r} cannot be read: {exc}",
                "ca = the path of the cluster's CA bundle (PEM), or leave it out for the system's",
            ) from exc
    return {c.host: SystemdUnits(c.bus or None) for c in config.controllers}


def _check_environ(config: ControlPlaneConfig, environ: Mapping[str, str]) -> None:
    kube = config.kubernetes
    if (
        config.driver == "kubernetes"
        and kube is not None
        and kube.token_env
        and kube.token_env not in environ
    ):
        raise ConfigError(
            f"[controlplane] kubernetes: environment variable {kube.token_env} is not set",
            f"export {kube.token_env} (a service account's token) before `haven serve`",
        )
    for spec in config.services:
        for name in spec.probe.secrets() if spec.probe is not None else ():
            if name not in environ:
                raise ConfigError(
                    f"[controlplane] services.{spec.name} probe: environment variable {name} is not set",
                    f"export {name} before `haven serve` (probes read passwords from the environment only)",
                )
        url_env = spec.probe.transport_url_env if spec.probe is not None else ""
        problem = tls_problem(environ[url_env], reading=True) if url_env else None
        if problem:  # a CA that cannot be read would fail every probe: restarts of a healthy service
            raise ConfigError(
                f"[controlplane] services.{spec.name} probe: transport_url_env {url_env}: {problem}",
                "TLS as oslo.messaging reads it from the URL: ?ssl=1&ssl_ca_file=/etc/ssl/rabbitmq-ca.pem",
            )
