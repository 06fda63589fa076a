"""What the contract suite needs from a cloud under test, beyond the Cloud protocol itself.

Each backend (the simulated cloud always, the real Nova lab when its fixture is there)
provides three compute hosts in one zone, one HA server booted on the first of them,
a way to kill and revive a host's compute, and a way to wait: the simulated cloud
moves its virtual clock, the lab polls in real time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from haven.cloud.base import Cloud
from haven.cloud.sim import SimCloud
from haven.cloud.sim.state import SimHost, SimServer
from haven.domain.clock import VirtualClock
from haven.domain.cloud import HA_ENABLED_KEY, HA_PRIORITY_KEY, Capacity, Flavor
from haven.domain.errors import CloudError
from haven.domain.ids import HostName, ServerId

HA_METADATA = {HA_ENABLED_KEY: "True", HA_PRIORITY_KEY: "7"}


class CloudUnderTest(Protocol):
    name: str
    cloud: Cloud
    hosts: Sequence[HostName]  # three compute hosts in one zone
    ha_server: ServerId  # booted with HA_METADATA on hosts[0] (it may have moved since)

    def now(self) -> float:
        """The cloud's time (epoch s): virtual on the simulated cloud, the wall clock on a real one."""
        ...

    async def kill_compute(self, host: HostName) -> None:
        """The host's nova-compute dies (the host loses power): Nova notices only later."""
        ...

    async def revive_compute(self, host: HostName) -> None:
        """The host comes back and its nova-compute starts again."""
        ...

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
        """Return once ``check()`` is true; fail naming ``what`` after ``timeout_s`` (cloud time)."""
        ...


async def accepted(call: Callable[[], Awaitable[object]]) -> bool:
    """For wait_until: whether the cloud accepts ``call`` now (a refusal means: try again later)."""
    try:
        await call()
    except CloudError:
        return False
    return True


@dataclass
class SimUnderTest:
    """The simulated cloud in virtual time: three hosts, one HA server on the first."""

    name: str
    cloud: SimCloud
    clock: VirtualClock
    hosts: Sequence[HostName]
    ha_server: ServerId

    @classmethod
    def build(cls) -> SimUnderTest:
        clock = VirtualClock()
        capacity = Capacity(vcpus=16, ram_mb=32_768, disk_gb=500)
        names = [HostName(f"compute-{i}") for i in (1, 2, 3)]
        hosts = [SimHost(n, "nova", "rack-1", capacity, heartbeat_phase=0.1 * i) for i, n in enumerate(names)]
        server = SimServer(
            ServerId("ha-server-1"),
            "ha-1",
            names[0],
            Flavor("m1.small", 1, 512, 1),
            metadata=dict(HA_METADATA),
        )
        return cls("sim", SimCloud(clock, hosts, [server]), clock, names, server.id)

    def now(self) -> float:
        return self.clock.now()

    async def kill_compute(self, host: HostName) -> None:
        self.cloud.fail_power(host)

    async def revive_compute(self, host: HostName) -> None:
        self.cloud.bmc_request_power(host, on=True)

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
        deadline = self.clock.now() + timeout_s
        while not await check():
            if self.clock.now() >= deadline:
                raise AssertionError(f"{self.name}: not within {timeout_s:g} s: {what}")
            self.clock.advance_to(self.clock.now() + 1.0)
            self.cloud.settle()


async def poll_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.5
) -> None:
    """wait_until for a real cloud: poll in real time."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        await asyncio.sleep(every_s)
