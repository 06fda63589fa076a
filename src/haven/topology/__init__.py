"""The topology (pure): which OpenStack services need which, and which user operations need them.

One model, two uses: haven.diagnosis ranks causes along it (through haven.explain), and the control
plane's impact analysis can ask it which operations a failed service breaks.
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
