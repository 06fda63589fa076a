"""SimFencer: the Fencer protocol over the simulated cloud's BMCs."""

from __future__ import annotations

from haven.cloud.sim.cloud import SimCloud
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower


class SimFencer:
    def __init__(self, cloud: SimCloud) -> None:
        self._cloud = cloud

    async def power_off(self, host: HostName) -> None:
        self._cloud.bmc_request_power(host, on=False)

    async def power_on(self, host: HostName) -> None:
        self._cloud.bmc_request_power(host, on=True)

    async def power_status(self, host: HostName) -> BmcPower:
        self._cloud.settle()
        return self._cloud.bmc_power_state(host)
