"""Leadership before every effect: the Cloud and Fencer that step handlers see.

Called by the executor, which wraps the real cloud and fencer for each batch of steps with the
epoch the batch began in. Every call that changes the world first asks whether this engine still
leads that term; if not it raises NotLeading before the call, so a deposed leader's handler that
was already past its intent commit makes no further call to Nova or a BMC. Reads pass through.
"""

from __future__ import annotations

from collections.abc import Callable

from haven.cloud.base import Cloud, CloudProxy
from haven.domain.cloud import VmState
from haven.domain.errors import NotLeading
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.fencing.base import Fencer

StillLeading = Callable[[], bool]


class GuardedCloud(CloudProxy):
    """A Cloud whose changes are made only while ``still_leading()``; reads pass through."""

    def __init__(self, cloud: Cloud, still_leading: StillLeading) -> None:
        super().__init__(cloud)
        self._leading = still_leading

    def _check(self, what: str) -> None:
        if not self._leading():
            raise NotLeading(f"not leading any more: {what} not asked")

    async def force_down(self, host: HostName, down: bool) -> None:
        self._check(f"force_down {host}")
        await self._cloud.force_down(host, down)

    async def disable_service(self, host: HostName, reason: str) -> None:
        self._check(f"disable the compute service of {host}")
        await self._cloud.disable_service(host, reason)

    async def enable_service(self, host: HostName) -> None:
        self._check(f"enable the compute service of {host}")
        await self._cloud.enable_service(host)

    async def evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        self._check(f"evacuate {server_id}")
        await self._cloud.evacuate(server_id, target)

    async def reset_state(self, server_id: ServerId, state: VmState) -> None:
        self._check(f"reset the state of {server_id}")
        await self._cloud.reset_state(server_id, state)

    async def stop_server(self, server_id: ServerId) -> None:
        self._check(f"stop {server_id}")
        await self._cloud.stop_server(server_id)

    async def start_server(self, server_id: ServerId) -> None:
        self._check(f"start {server_id}")
        await self._cloud.start_server(server_id)

    async def reboot_server(self, server_id: ServerId) -> None:
        self._check(f"reboot {server_id}")
        await self._cloud.reboot_server(server_id)


class GuardedFencer:
    """A Fencer whose power requests are made only while ``still_leading()``."""

    def __init__(self, fencer: Fencer, still_leading: StillLeading) -> None:
        self._fencer, self._leading = fencer, still_leading

    async def power_off(self, host: HostName) -> None:
        if not self._leading():
            raise NotLeading(f"not leading any more: power off of {host} not asked")
        await self._fencer.power_off(host)

    async def power_on(self, host: HostName) -> None:
        if not self._leading():
            raise NotLeading(f"not leading any more: power on of {host} not asked")
        await self._fencer.power_on(host)

    async def power_status(self, host: HostName) -> BmcPower:
        return await self._fencer.power_status(host)
