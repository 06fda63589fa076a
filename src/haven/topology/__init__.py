"""The topology (pure): which OpenStack services need which, and which user operations need them.

One model, two uses: haven.diagnosis ranks causes along it (through haven.explain), and the impact
analysis (haven.topology.impact: ``haven impact``, ``GET /v1/haven/impact``) asks it which user
operations stop, degrade or keep working when services, a controller or a failure domain are lost.
"""

from haven.topology.openstack import (
    LABELS,
    PHASES,
    SERVER_BOOT,
    SERVER_EVACUATE,
    Topology,
    node_of_binary,
    openstack_topology,
    phase_of_fault,
)

__all__ = [
    "LABELS",
    "PHASES",
    "SERVER_BOOT",
    "SERVER_EVACUATE",
    "Topology",
    "node_of_binary",
    "openstack_topology",
    "phase_of_fault",
]
