"""The fencer the engine uses: routes each host to the driver its [fencing] config names.

Built once at start-up by the service layer (``build_fencer``), which passes the
environment (for ``password_env``) and, on the simulated cloud, the simulated BMCs.
A host with no fencing configured and ``default_driver = "none"`` is not fenced: every
call raises ``FencingNotConfigured`` (a PermanentError), so the fence step fails at once
with that reason, nothing is evacuated and an alert is raised, instead of a silent success.
"""

from __future__ import annotations

from collections.abc import Mapping

from haven.domain.errors import ConfigError, PermanentError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.fencing.base import Fencer
from haven.fencing.config import FencingConfig
from haven.fencing.ipmi import IpmiFencer
from haven.fencing.redfish import RedfishFencer


class FencingNotConfigured(PermanentError):
    """No fence driver is configured for the host, so it cannot be fenced (and is not evacuated)."""


class RoutingFencer:
    """A Fencer that hands each call to the driver configured for its host."""

    def __init__(self, routes: Mapping[HostName, Fencer], default: Fencer | None) -> None:
        self._routes = dict(routes)
        self._default = default

    def driver_for(self, host: HostName) -> Fencer:
        fencer = self._routes.get(host, self._default)
        if fencer is None:
            raise FencingNotConfigured(
                f"no fence driver is configured for {host}: it cannot be fenced, so its VMs are not "
                'evacuated (add a [[fencing.hosts]] entry for it, driver "redfish" or "ipmi")'
            )
        return fencer

    async def power_off(self, host: HostName) -> None:
        await self.driver_for(host).power_off(host)

    async def power_on(self, host: HostName) -> None:
        await self.driver_for(host).power_on(host)

    async def power_status(self, host: HostName) -> BmcPower:
        return await self.driver_for(host).power_status(host)


def build_fencer(
    config: FencingConfig, environ: Mapping[str, str], sim: Fencer | None = None
) -> RoutingFencer:
    """The routing fencer for ``config``; ``sim`` serves driver "sim" (the simulated cloud's BMCs).

    Raises ConfigError when a password variable is missing or "sim" is named without a simulated cloud.
    """
    by_driver = {
        driver: [bmc for bmc in config.hosts.values() if bmc.driver == driver]
        for driver in ("redfish", "ipmi")
    }
    drivers: dict[str, Fencer] = {}
    if by_driver["redfish"]:
        drivers["redfish"] = RedfishFencer(by_driver["redfish"], environ)
    if by_driver["ipmi"]:
        drivers["ipmi"] = IpmiFencer(by_driver["ipmi"], environ)
    uses_sim = config.default_driver == "sim" or any(b.driver == "sim" for b in config.hosts.values())
    if uses_sim:
        if sim is None:
            raise ConfigError(
                '[fencing] names driver "sim", but the cloud is not the simulated one',
                'configure "redfish" or "ipmi" for each host, and default_driver = "none"',
            )
        drivers["sim"] = sim
    routes = {host: drivers[bmc.driver] for host, bmc in config.hosts.items()}
    return RoutingFencer(routes, drivers.get(config.default_driver))
