"""The Fencer protocol, implemented by the simulated BMCs (Redfish and IPMI later)."""

from __future__ import annotations

from typing import Protocol

from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower


class Fencer(Protocol):
    async def power_off(self, host: HostName) -> None:
        """Request power off; the result is only known by polling ``power_status``."""
        ...

    async def power_on(self, host: HostName) -> None: ...

    async def power_status(self, host: HostName) -> BmcPower: ...
