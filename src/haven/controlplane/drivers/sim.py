"""Simulated drivers: units, a load balancer and probes in memory, on the reconciler's (virtual) clock.

For the reconciler's tests and drills: the world is plain data a test sets (a unit fails, a replica
hangs, a host is unreachable) and reads back as ground truth (how often each unit was restarted, each
member's state). A restarted or started unit becomes active at once and serves after ``start_s``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from haven.domain.controlplane import (
    MemberAdmin,
    MemberStatus,
    ProbeResult,
    ProbeSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.errors import NotFound, TemporaryError

_ids = itertools.count(1)


@dataclass(slots=True)
class SimUnit:
    active: UnitActive = UnitActive.ACTIVE
    active_since: float = 0.0
    invocation: int = field(default_factory=lambda: next(_ids))
    n_restarts: int = 0
    restarts_by_haven: int = 0
    starts_by_haven: int = 0
    hung: bool = False  # active, port open, answers nothing
    crashes_on_start: bool = False  # fails again at once after every start (a crash loop)


class SimUnits:
    """One host's systemd. ``reachable`` False: every call fails as an unreachable bus would."""

    def __init__(self, clock: Callable[[], float], units: Mapping[str, SimUnit] | None = None) -> None:
        self._now = clock
        self.units: dict[str, SimUnit] = dict(units or {})
        self.reachable = True
        self.clock_offset_s = 0.0  # this host's clock minus haven's: shifts the times it reports

    def _unit(self, name: str) -> SimUnit:
        if not self.reachable:
            raise TemporaryError("simulated host unreachable")
        unit = self.units.get(name)
        if unit is None:
            raise NotFound(f"no unit {name}")
        return unit

    async def status(self, unit: str) -> UnitStatus:
        if not self.reachable:
            raise TemporaryError("simulated host unreachable")
        u = self.units.get(unit)
        if u is None:
            return UnitStatus(UnitActive.INACTIVE, "dead", loaded=False)
        since = u.active_since + self.clock_offset_s if u.active is UnitActive.ACTIVE else None
        return UnitStatus(u.active, u.active.value, u.n_restarts, str(u.invocation), since)

    def _run(self, u: SimUnit) -> None:
        u.invocation = next(_ids)
        u.hung = False
        u.active = UnitActive.FAILED if u.crashes_on_start else UnitActive.ACTIVE
        u.active_since = self._now()

    async def start(self, unit: str) -> None:
        u = self._unit(unit)
        if u.active is not UnitActive.ACTIVE:
            u.starts_by_haven += 1
            self._run(u)

    async def stop(self, unit: str) -> None:
        self._unit(unit).active = UnitActive.INACTIVE

    async def restart(self, unit: str) -> None:
        u = self._unit(unit)
        u.restarts_by_haven += 1
        self._run(u)


class SimBalancer:
    def __init__(self, members: Mapping[tuple[str, str], MemberAdmin] | None = None) -> None:
        self.admin: dict[tuple[str, str], MemberAdmin] = dict(members or {})
        self.changes: list[tuple[str, str, MemberAdmin]] = []  # every set, in order (ground truth)

    async def members(self) -> Mapping[tuple[str, str], MemberStatus]:
        # HAProxy's own check: up unless in maintenance (the simulated servers always answer it).
        return {key: MemberStatus(admin, _operational(admin)) for key, admin in self.admin.items()}

    async def set_member(self, backend: str, server: str, admin: MemberAdmin) -> MemberStatus:
        if (backend, server) not in self.admin:
            raise NotFound(f"no server {backend}/{server}")
        self.admin[(backend, server)] = admin
        self.changes.append((backend, server, admin))
        return MemberStatus(admin, _operational(admin))


def _operational(admin: MemberAdmin) -> str:
    return "down" if admin is MemberAdmin.MAINT else "up"


class SimProber:
    """Probes read the simulated units: active, not hung and started ``start_s`` ago passes."""

    def __init__(
        self, clock: Callable[[], float], hosts: Mapping[str, SimUnits], start_s: float = 2.0
    ) -> None:
        self._now = clock
        self._hosts = hosts  # address -> that host's units
        self._start_s = start_s
        self.port_units: dict[int, str] = {}  # probe port -> unit name

    async def probe(self, address: str, spec: ProbeSpec, host: str = "") -> ProbeResult:
        units = self._hosts.get(address)
        unit = (
            None
            if units is None or not units.reachable
            else units.units.get(self.port_units.get(spec.port, ""))
        )
        now = self._now()
        if unit is None or unit.active is not UnitActive.ACTIVE:
            return ProbeResult(False, now, "connection refused")
        if unit.hung:
            return ProbeResult(False, now, f"no answer within {spec.timeout_s:g} s")
        if now - unit.active_since < self._start_s:
            return ProbeResult(False, now, "503 starting")
        return ProbeResult(True, now, "200")
