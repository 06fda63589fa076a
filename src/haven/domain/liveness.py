"""Readings of a host's independent liveness channels at one instant.

Each channel is evidence, not a verdict: the detector combines them. A
reading of ``None`` for a heartbeat channel means the channel is not
configured for that host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from haven.domain.ids import HostName


class BmcPower(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"  # the BMC did not answer


class HostCondition(StrEnum):
    """The detector's verdict for one host."""

    HEALTHY = "healthy"
    SUSPECT = "suspect"  # a heartbeat was missed; not yet past the grace period
    ISOLATED = "isolated"  # management channel silent, another channel alive
    AGENT_DOWN = "agent_down"  # haven's agent silent but nova-compute still reports
    DEAD = "dead"  # every channel agrees: confirmed down
    HELD = "held"  # would be dead, but the observer gate holds its segment


@dataclass(frozen=True, slots=True)
class HostLiveness:
    host: HostName
    agent_seen: float | None  # last heartbeat on the management network
    second_seen: float | None = None  # last heartbeat on a second network, if configured
    nova_up: bool = True
    nova_updated_at: float | None = None
    bmc: BmcPower = BmcPower.ON
    failed_processes: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class ComputeServiceState:
    """A host's nova-compute as Nova's service list tells it (the liveness source for real clouds reads it).

    ``reporting``: Nova counts the service up, or it is forced down but its compute reports again
    (so haven may return the host to service); ``updated_at`` is its last report, in Unix seconds.
    """

    host: HostName
    reporting: bool
    forced_down: bool = False
    updated_at: float | None = None
