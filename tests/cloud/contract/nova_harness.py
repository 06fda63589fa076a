"""The real Nova lab as a cloud under test for the contract suite (marker ``nova``).

Imported by conftest only when tests/servers/nova.py (the session's lab) exists. The
driver opens the lab's clouds.yaml entry ``lab`` exactly as ``haven serve --cloud lab``
would; one HA server is booted once per session on the first compute.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

from cloud.contract.harness import HA_METADATA, poll_until
from haven.cloud.openstack import OpenStackCloud, open_cloud
from haven.domain.ids import HostName, ServerId
from servers.nova import NovaLab

BOOT_TIMEOUT_S = 120


@dataclass
class NovaUnderTest:
    name: str
    cloud: OpenStackCloud
    lab: NovaLab
    hosts: Sequence[HostName]
    ha_server: ServerId

    def now(self) -> float:
        return time.time()

    async def kill_compute(self, host: HostName) -> None:
        await asyncio.to_thread(self.lab.power_off, host)  # the BMC's power-off kills its nova-compute

    async def revive_compute(self, host: HostName) -> None:
        await asyncio.to_thread(self.lab.power_on, host)

    async def wait_until(self, check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
        await poll_until(check, timeout_s, f"{self.name}: {what}")


@pytest.fixture(scope="session")
def nova_contract(nova_lab: NovaLab) -> Iterator[NovaUnderTest]:
    cloud = open_cloud("lab", max_workers=4, clouds_yaml=nova_lab.clouds_yaml)
    hosts = [HostName(h) for h in sorted(nova_lab.hosts)]
    sdk = nova_lab.connect()
    flavor = sdk.compute.find_flavor(nova_lab.flavor, ignore_missing=False)
    server = sdk.compute.create_server(
        name="contract-ha",
        image_id=nova_lab.image_id,
        flavor_id=flavor.id,
        networks="none",
        metadata=dict(HA_METADATA),
        availability_zone=f"nova:{hosts[0]}",  # an admin may name the host this way
    )
    server = sdk.compute.wait_for_server(server, wait=BOOT_TIMEOUT_S, interval=0.5)
    try:
        yield NovaUnderTest("nova", cloud, nova_lab, hosts, ServerId(server.id))
    finally:
        sdk.compute.delete_server(server, ignore_missing=True)
        sdk.compute.wait_for_delete(server, wait=60)
        cloud.close()
