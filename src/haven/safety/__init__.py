"""The safety policy (pure): whether a host may be fenced, its VMs moved, its service disabled,
or a service's replicas restarted."""

from haven.safety.policy import (
    SPEAKING,
    Action,
    Answer,
    Decision,
    SafetyView,
    Source,
    authorize,
    cloud_gate_reason,
    fence_budget,
    process_gate_reason,
    replica_gate_reason,
    segment_gate_reason,
    unconfirmed_gate_reason,
)

__all__ = [
    "SPEAKING",
    "Action",
    "Answer",
    "Decision",
    "SafetyView",
    "Source",
    "authorize",
    "cloud_gate_reason",
    "fence_budget",
    "process_gate_reason",
    "replica_gate_reason",
    "segment_gate_reason",
    "unconfirmed_gate_reason",
]
