"""Which cloud `haven serve` watches: the built-in simulated cloud (default) or a real one from clouds.yaml.

Called by haven.cli.serve once at start-up, before the store is touched, so a bad
cloud name or size stops haven with nothing changed. ``open_liveness`` then gives the
engine its liveness source: the simulated cloud's own, or on a real cloud
haven.service.liveness (Nova's service state; with coordination also the agents'
heartbeats and the BMCs), whose lease watch runs while the context is open.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from haven.cloud.base import Cloud, LivenessSource
from haven.cloud.sim import CloudSpec, SimCloud, build_cloud
from haven.cloud.sim.builder import SimTopology
from haven.domain.clock import Clock
from haven.domain.ids import HostName
from haven.fencing.base import Fencer
from haven.service.config import HavenConfig

if TYPE_CHECKING:  # a real cloud's modules (openstacksdk: about 1 s) are imported only for a real cloud
    from prometheus_client import CollectorRegistry

    from haven.cloud.openstack import OpenStackCloud


@dataclass
class ChosenCloud:
    cloud: Cloud
    liveness: LivenessSource
    description: str  # for the start-up line, e.g. "simulated cloud of 30 hosts / 300 VMs"
    sim: SimCloud | None = None  # only the simulated cloud has BMCs to fence with and faults to inject
    topology: SimTopology | None = None
    close: Callable[[], None] = field(default=lambda: None)  # stops the driver's worker threads
    openstack: OpenStackCloud | None = None  # a real cloud: liveness from haven.service.liveness

    @property
    def reserved(self) -> frozenset[HostName]:
        return frozenset(self.topology.reserved) if self.topology is not None else frozenset()


def choose_cloud(
    config: HavenConfig, spec: CloudSpec, clock: Clock, environ: Mapping[str, str]
) -> ChosenCloud:
    """The configured cloud; the OpenStack one makes no request until the engine starts."""
    if config.cloud_driver == "openstack":
        from haven.cloud.openstack import cloud_name, open_cloud

        name = cloud_name(config.openstack.name or None, environ)
        cloud = open_cloud(name, max_workers=config.openstack.max_workers)
        channels = "haven agents' heartbeats (etcd), Nova and BMCs" if config.coordination.url else "Nova"
        description = f"OpenStack cloud {name!r} (clouds.yaml), liveness from {channels}"
        return ChosenCloud(cloud, cloud, description, close=cloud.close, openstack=cloud)
    sim, topology = build_cloud(spec, clock)  # validates the cloud's size
    return ChosenCloud(sim, sim, f"simulated cloud of {spec.hosts} hosts / {spec.vms} VMs", sim, topology)


@contextlib.asynccontextmanager
async def open_liveness(
    chosen: ChosenCloud, config: HavenConfig, fencer: Fencer, metrics: CollectorRegistry | None = None
) -> AsyncIterator[LivenessSource]:
    """The engine's liveness source for the chosen cloud, open (lease watch running) inside the context.

    With ``metrics`` (and coordination), each agent's last heartbeat is shown at ``/metrics`` too.
    """
    if chosen.openstack is None:
        yield chosen.liveness
        return
    from haven.service.heartbeat_metrics import HeartbeatCollector
    from haven.service.liveness import open_real_liveness

    async with open_real_liveness(config, chosen.openstack, fencer) as liveness:
        if metrics is None or liveness.view is None:
            yield liveness
            return
        collector = HeartbeatCollector(liveness)
        metrics.register(collector)
        try:
            yield liveness
        finally:
            metrics.unregister(collector)
