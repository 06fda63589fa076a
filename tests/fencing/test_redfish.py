"""Redfish beyond the shared contract: TLS verification, an unknown system, and a BMC that
applies power changes seconds after it accepted them (sushy-tools' fake driver)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.domain.errors import PermanentError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.fencing.config import BmcConfig, Secret
from haven.fencing.redfish import RedfishFencer
from servers.redfish import RedfishBmc, start_sushy

from .conftest import HOSTS, PASSWORD

pytestmark = pytest.mark.bmc
HOST = HostName(HOSTS[0])


def fencer(bmc: RedfishBmc, system_id: str = "", verify_tls: bool = True) -> RedfishFencer:
    config = BmcConfig(
        HOST, "redfish", bmc.url, bmc.username, Secret(PASSWORD), system_id=system_id, verify_tls=verify_tls
    )
    return RedfishFencer([config], {})


@pytest.fixture(scope="module")
def tls_bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedfishBmc]:
    bmc = start_sushy(tmp_path_factory.mktemp("sushy-tls"), HOSTS[:1], PASSWORD, tls=True)
    yield bmc
    bmc.process.stop()


async def test_an_untrusted_certificate_is_refused_by_default(tls_bmc: RedfishBmc) -> None:
    with pytest.raises(PermanentError) as caught:
        await fencer(tls_bmc, HOST).power_status(HOST)
    message = str(caught.value)
    assert "TLS certificate is not trusted" in message and "verify_tls = false" in message
    assert HOST in message and tls_bmc.url in message


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_verification_can_be_turned_off_explicitly_for_a_lab(tls_bmc: RedfishBmc) -> None:
    assert await fencer(tls_bmc, HOST, verify_tls=False).power_status(HOST) is BmcPower.ON


async def test_an_unknown_system_is_a_permanent_error_naming_it(redfish_bmc: RedfishBmc) -> None:
    with pytest.raises(PermanentError, match="has no system no-such-node; check system_id"):
        await fencer(redfish_bmc, "no-such-node").power_off(HOST)


@pytest.mark.slow
async def test_a_fence_is_confirmed_only_when_a_slow_bmc_finally_reports_off(tmp_path: Path) -> None:
    bmc = start_sushy(tmp_path / "sushy-fake", HOSTS[:1], PASSWORD, fake=True)
    try:
        slow = fencer(bmc)  # the fake driver has one system: the default one
        assert await slow.power_status(HOST) is BmcPower.ON
        asked = time.monotonic()
        await slow.power_off(HOST)
        # Accepted, but not done: a fencer that trusted the request would evacuate a running host here.
        assert await slow.power_status(HOST) is BmcPower.ON
        seen = BmcPower.ON
        while seen is not BmcPower.OFF and time.monotonic() - asked < 20.0:
            await asyncio.sleep(0.2)  # the BMC's own time passes (the engine would requeue instead)
            seen = await slow.power_status(HOST)
        assert seen is BmcPower.OFF
        assert time.monotonic() - asked >= 0.9  # it really took the BMC a while
    finally:
        bmc.process.stop()
