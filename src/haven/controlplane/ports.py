"""The control plane's ports: one host's service manager, the load balancer, and the prober.

The reconciler (haven.controlplane.reconciler) drives these; haven.controlplane.drivers holds the
real ones (systemd over D-Bus, HAProxy's runtime API, HTTP/TCP probes) and simulated ones for tests.
Every failure crosses as haven.domain.errors: TemporaryError when a retry may help, NotFound or
PermanentError when not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from haven.domain.controlplane import MemberAdmin, MemberStatus, ProbeResult, ProbeSpec, UnitStatus


class Units(Protocol):
    """One host's systemd: a unit's state, and start/stop/restart jobs (queued, not awaited)."""

    async def status(self, unit: str) -> UnitStatus: ...

    async def start(self, unit: str) -> None: ...

    async def stop(self, unit: str) -> None: ...

    async def restart(self, unit: str) -> None: ...


@runtime_checkable
class Killer(Protocol):
    """A service manager that can end every process of a unit at once (systemd's KillUnit)."""

    async def kill(self, unit: str) -> None:
        """SIGKILL every process of ``unit``; nothing when none runs."""
        ...


@runtime_checkable
class CpuMeter(Protocol):
    """A service manager that knows how much CPU time a unit's processes have used (systemd's
    CPUUsageNSec): what tells a busy replica (late, working) from a hung one (no progress)."""

    async def cpu_s(self, unit: str) -> float | None:
        """The CPU time ``unit``'s processes used, in seconds; None when it is not known."""
        ...


class Balancer(Protocol):
    """The load balancer's members, keyed by (backend, server), as it reports them; and their state."""

    async def members(self) -> Mapping[tuple[str, str], MemberStatus]: ...

    async def set_member(self, backend: str, server: str, admin: MemberAdmin) -> MemberStatus:
        """Set the member's administrative state, then read it back; returns what was read."""
        ...


class Prober(Protocol):
    async def probe(self, address: str, spec: ProbeSpec, host: str = "") -> ProbeResult:
        """One probe of the replica at ``address`` (on controller ``host``); never raises: a failure is a
        failed result."""
        ...
