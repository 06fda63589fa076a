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
    # Nova's own clock when this reading was taken (its response's Date; the simulated Nova's clock).
    # ``nova_updated_at`` is on Nova's clock; with this the detector judges its age in Nova's time and
    # never compares it with the engine's clock. None: unknown, the engine's clock is used.
    nova_now: float | None = None
    # How much later than the truth ``nova_report_local`` may place Nova's report (whole-second
    # timestamps): 0 for exact clocks. The detector takes "nova-compute reported after the agent went
    # silent" only beyond it, so a powered-off host's last report is never read as a later one.
    nova_time_slack_s: float = 0.0

    def nova_report_local(self, now: float) -> float | None:
        """Nova's last report on the engine's clock: ``now`` less its age as Nova's own clock tells it."""
        return nova_time_to_local(self.nova_updated_at, self.nova_now, now)


def nova_time_to_local(nova_time: float | None, nova_now: float | None, local_now: float) -> float | None:
    """A Nova timestamp moved onto the engine's clock by its age in Nova's own time.

    Nova's and haven's clocks may disagree by any amount; only differences taken on one clock mean
    anything. Without ``nova_now`` the timestamp is returned as it is (the two clocks assumed equal).
    """
    if nova_time is None or nova_now is None:
        return nova_time
    return local_now - max(0.0, nova_now - nova_time)


@dataclass(frozen=True, slots=True)
class ComputeServiceState:
    """A host's nova-compute as Nova's service list tells it (the liveness source for real clouds reads it).

    ``reporting``: Nova counts the service up, or it is forced down but its compute reports again
    (so haven may return the host to service); ``updated_at`` is its last report, in Unix seconds
    of Nova's clock. ``nova_now`` is Nova's clock when it answered the list this state comes from
    (the response's HTTP ``Date``, whole seconds, rounded down), so ``nova_now - updated_at`` is the
    report's age in Nova's own time; None when Nova sent no ``Date`` (ages then use haven's clock).
    """

    host: HostName
    reporting: bool
    forced_down: bool = False
    updated_at: float | None = None
    nova_now: float | None = None
    nova_time_slack_s: float = 0.0  # as HostLiveness's: how much later than the truth a report may look
