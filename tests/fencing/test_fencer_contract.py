"""One contract for every Fencer: the simulated BMCs, Redfish (sushy-tools) and IPMI (virtualbmc).

What the fence step relies on (src/haven/recovery/host_steps.py): ``power_off`` only asks;
only a ``power_status`` of OFF read afterwards confirms the fence; a BMC that does not
answer raises TemporaryError from ``power_off`` and reads UNKNOWN from ``power_status``
(never OFF), in bounded time; refused credentials are a PermanentError that names the
host and BMC address and never the password. Real drivers run against real emulators on
loopback; a capability the simulation lacks (credentials) is a skip, not a pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.errors import PermanentError, TemporaryError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.fencing.base import Fencer
from haven.fencing.config import BmcConfig, Secret
from haven.fencing.ipmi import IpmiFencer
from haven.fencing.redfish import RedfishFencer
from servers.ipmi import IpmiBmcs, free_udp_port
from servers.process import free_port
from servers.redfish import RedfishBmc

from .conftest import HOSTS, PASSWORD

POLL_LIMIT_S = 15.0  # real time for a real BMC to apply a change (the libvirt backends take ms)
UNREACHABLE_LIMIT_S = 12.0  # a dead BMC must fail within this (pyghmi gives up after ~5.5 s)


@dataclass
class FenceRig:
    fencer: Fencer
    host: HostName
    let_time_pass: Callable[[], Awaitable[None]]
    # A fencer for the same host with another password, or None where there are no credentials.
    with_password: Callable[[str], Fencer] | None
    unreachable: Callable[[], Fencer]
    address: str

    async def wait_for(self, power: BmcPower) -> BmcPower:
        deadline = time.monotonic() + POLL_LIMIT_S
        seen = await self.fencer.power_status(self.host)
        while seen is not power and time.monotonic() < deadline:
            await self.let_time_pass()
            seen = await self.fencer.power_status(self.host)
        return seen

    async def fresh_host(self) -> None:
        """The host powered on, whatever an earlier test left."""
        await self.fencer.power_on(self.host)
        assert await self.wait_for(BmcPower.ON) is BmcPower.ON


def _sim_rig() -> FenceRig:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=3, vms=0, zones=1, seed=3), clock)
    host = cloud.host_names()[0]

    async def advance() -> None:
        clock.advance_to(clock.now() + 0.1)

    def unreachable() -> Fencer:
        cloud.sim_host(host).bmc_reachable = False
        return SimFencer(cloud)

    return FenceRig(SimFencer(cloud), host, advance, None, unreachable, "simulated")


def _redfish_rig(bmc: RedfishBmc) -> FenceRig:
    host = HostName(HOSTS[0])

    def make(password: str, address: str = bmc.url) -> Fencer:
        config = BmcConfig(
            host, "redfish", address, bmc.username, Secret(password), system_id=bmc.systems[host]
        )
        return RedfishFencer([config], {})

    dead = f"http://127.0.0.1:{free_port()}"
    return FenceRig(make(PASSWORD), host, _real_pause, make, lambda: make(PASSWORD, dead), dead)


def _ipmi_rig(bmcs: IpmiBmcs) -> FenceRig:
    host = HostName(HOSTS[0])

    def make(password: str, port: int = bmcs.ports[host]) -> Fencer:
        config = BmcConfig(
            host, "ipmi", "127.0.0.1", bmcs.username, Secret(password), port=port, timeout_s=5.0
        )
        return IpmiFencer([config], {})

    dead = free_udp_port()
    return FenceRig(
        make(PASSWORD), host, _real_pause, make, lambda: make(PASSWORD, dead), f"127.0.0.1:{dead}"
    )


async def _real_pause() -> None:
    await asyncio.sleep(0.05)


@pytest.fixture(
    params=[
        "sim",
        pytest.param("redfish", marks=pytest.mark.bmc),
        pytest.param("ipmi", marks=pytest.mark.bmc),
    ]
)
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[FenceRig]:
    if request.param == "sim":
        made = _sim_rig()
    elif request.param == "redfish":
        made = _redfish_rig(request.getfixturevalue("redfish_bmc"))
    else:
        made = _ipmi_rig(request.getfixturevalue("ipmi_bmcs"))
    await made.fresh_host()
    yield made


async def test_a_running_host_reads_on(rig: FenceRig) -> None:
    assert await rig.fencer.power_status(rig.host) is BmcPower.ON


async def test_power_off_is_confirmed_only_by_a_later_status_read(rig: FenceRig) -> None:
    await rig.fencer.power_off(rig.host)
    assert await rig.wait_for(BmcPower.OFF) is BmcPower.OFF
    # It stays off: the emulator's state is real, not a reply echoed back.
    await rig.let_time_pass()
    assert await rig.fencer.power_status(rig.host) is BmcPower.OFF


async def test_power_on_brings_a_fenced_host_back(rig: FenceRig) -> None:
    await rig.fencer.power_off(rig.host)
    assert await rig.wait_for(BmcPower.OFF) is BmcPower.OFF
    await rig.fencer.power_on(rig.host)
    assert await rig.wait_for(BmcPower.ON) is BmcPower.ON


async def test_repeating_a_request_is_harmless(rig: FenceRig) -> None:
    # The fence step asks again after a crash or a lost answer: a host already off must not error.
    for _ in range(2):
        await rig.fencer.power_off(rig.host)
        assert await rig.wait_for(BmcPower.OFF) is BmcPower.OFF
    await rig.fencer.power_off(rig.host)
    assert await rig.fencer.power_status(rig.host) is BmcPower.OFF
    for _ in range(2):
        await rig.fencer.power_on(rig.host)
        assert await rig.wait_for(BmcPower.ON) is BmcPower.ON


async def test_a_wrong_password_is_a_permanent_error_that_never_shows_the_password(
    rig: FenceRig, caplog: pytest.LogCaptureFixture
) -> None:
    if rig.with_password is None:
        pytest.skip("the simulated BMCs have no credentials")
    wrong = "Wr0ng-" + PASSWORD
    fencer = rig.with_password(wrong)
    caplog.set_level(logging.DEBUG)
    for action in (fencer.power_off, fencer.power_status):
        with pytest.raises(PermanentError) as caught:
            await action(rig.host)
        message = str(caught.value)
        assert rig.host in message and rig.address.split("//")[-1].split(":")[0] in message
        assert "credentials" in message
        assert wrong not in message and PASSWORD not in message
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert wrong not in logged and PASSWORD not in logged
    # Nothing happened to the host.
    assert await rig.fencer.power_status(rig.host) is BmcPower.ON


async def test_an_unreachable_bmc_is_never_read_as_fenced_and_fails_in_bounded_time(rig: FenceRig) -> None:
    fencer = rig.unreachable()
    started = time.monotonic()

    async def power_off() -> BaseException | None:
        try:
            await fencer.power_off(rig.host)
        except TemporaryError as exc:
            return exc
        return None

    error, status = await asyncio.gather(power_off(), fencer.power_status(rig.host))
    elapsed = time.monotonic() - started
    assert isinstance(error, TemporaryError), "a power-off nobody answered must not look like success"
    assert rig.host in str(error) and PASSWORD not in str(error)
    assert status is BmcPower.UNKNOWN
    assert elapsed < UNREACHABLE_LIMIT_S
