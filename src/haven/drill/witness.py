"""A witness between haven and a real cloud: the BMC's answer recorded just before each evacuate call.

Called by the real-cloud drills (haven.drill.cloud_drill), which hand the engine a
WitnessedCloud instead of the cloud itself. Every call passes through unchanged; before an
evacuate is passed on, the witness asks the source host's BMC for its power state itself
(not through haven's fence step), so "evacuated unfenced" is judged from the BMC's own
answer at that moment. The source host of a server the drill booted is known; of any other
server it is read from the cloud first.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from haven.cloud.base import Cloud, CloudProxy
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower


class PowerReader(Protocol):
    async def power_status(self, host: HostName) -> BmcPower: ...


@dataclass(frozen=True, slots=True)
class WitnessedEvacuation:
    server_id: ServerId
    source: HostName
    target: HostName | None
    bmc_before: BmcPower  # the source BMC's answer just before the call
    at: float  # epoch seconds, when the call was passed on
    accepted_at: float | None  # when Nova accepted it (None: it raised)


class WitnessedCloud(CloudProxy):
    """A Cloud that records, for each evacuate, what the source host's BMC said just before it."""

    def __init__(self, cloud: Cloud, bmcs: PowerReader, known_hosts: Mapping[ServerId, HostName]) -> None:
        super().__init__(cloud)
        self._bmcs = bmcs
        self._known = dict(known_hosts)
        self.evacuations: list[WitnessedEvacuation] = []

    async def evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        source = self._known.get(server_id)
        if source is None:
            source = (await self._cloud.get_server(server_id)).host
        bmc = await self._bmcs.power_status(source)
        at = time.time()
        try:
            await self._cloud.evacuate(server_id, target)
        except BaseException:
            self.evacuations.append(WitnessedEvacuation(server_id, source, target, bmc, at, None))
            raise
        self.evacuations.append(WitnessedEvacuation(server_id, source, target, bmc, at, time.time()))
