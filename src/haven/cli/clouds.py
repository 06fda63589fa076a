"""Which cloud `haven serve` watches: the built-in simulated cloud (default) or a real one from clouds.yaml.

Called by haven.cli.serve once at start-up, before the store is touched, so a bad
cloud name or size stops haven with nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from haven.cloud.base import Cloud, LivenessSource
from haven.cloud.openstack import cloud_name, open_cloud
from haven.cloud.sim import CloudSpec, SimCloud, build_cloud
from haven.cloud.sim.builder import SimTopology
from haven.domain.clock import Clock
from haven.domain.ids import HostName
from haven.service.config import HavenConfig


@dataclass
class ChosenCloud:
    cloud: Cloud
    liveness: LivenessSource
    description: str  # for the start-up line, e.g. "simulated cloud of 30 hosts / 300 VMs"
    sim: SimCloud | None = None  # only the simulated cloud has BMCs to fence with and faults to inject
    topology: SimTopology | None = None
    close: Callable[[], None] = field(default=lambda: None)  # stops the driver's worker threads

    @property
    def reserved(self) -> frozenset[HostName]:
        return frozenset(self.topology.reserved) if self.topology is not None else frozenset()


def choose_cloud(
    config: HavenConfig, spec: CloudSpec, clock: Clock, environ: Mapping[str, str]
) -> ChosenCloud:
    """The configured cloud; the OpenStack one makes no request until the engine starts."""
    if config.cloud_driver == "openstack":
        name = cloud_name(config.openstack.name or None, environ)
        cloud = open_cloud(name, max_workers=config.openstack.max_workers)
        return ChosenCloud(cloud, cloud, f"OpenStack cloud {name!r} (clouds.yaml)", close=cloud.close)
    sim, topology = build_cloud(spec, clock)  # validates the cloud's size
    return ChosenCloud(sim, sim, f"simulated cloud of {spec.hosts} hosts / {spec.vms} VMs", sim, topology)
