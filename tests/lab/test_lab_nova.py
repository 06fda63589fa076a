"""The lab is a real Nova fit for haven's driver: computes up, a server boots, power loss + evacuate works.

One session-scoped lab (tests/servers/nova.py). The evacuation test powers compute hosts
off through their Redfish BMCs, as haven's fencing will, and powers them on again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openstack
import pytest

from haven.lab import lab
from haven.lab.bmc import power_state
from haven.service.config import load_config
from servers.nova import NovaLab

pytestmark = [pytest.mark.nova, pytest.mark.slow]


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.5)


def unforce(cloud: Any, service: Any, host: str) -> bool:
    try:
        cloud.compute.update_service_forced_down(service, host, "nova-compute", False)
    except openstack.exceptions.HttpException:
        return False
    return True


def compute_state(cloud: Any, host: str) -> str:
    return str(
        next(s.state for s in cloud.compute.services() if s.host == host and s.binary == "nova-compute")
    )


def test_two_computes_are_up_as_hypervisors(nova_lab: NovaLab) -> None:
    cloud = nova_lab.connect()
    services = {s.host: s for s in cloud.compute.services() if s.binary == "nova-compute"}
    assert sorted(services) == ["compute-1", "compute-2"]
    assert {s.state for s in services.values()} == {"up"}
    assert sorted(h.name for h in cloud.compute.hypervisors()) == ["compute-1", "compute-2"]


def test_status_names_every_process_alive_and_the_files(nova_lab: NovaLab) -> None:
    report = lab.status(nova_lab.folder)
    assert report["running"] is True
    assert all(p["alive"] for p in report["processes"]), report["processes"]
    names = {p["name"] for p in report["processes"]}
    assert {"mariadb", "rabbitmq-server", "keystone", "placement-api", "glance-api", "nova-api",
            "nova-conductor", "nova-scheduler", "hardware"} <= names  # fmt: skip
    assert all(c["nova_compute_pid"] for c in report["computes"].values())
    assert oct(Path(report["files"]["clouds.yaml"]).stat().st_mode & 0o777) == "0o600"


def test_haven_toml_fences_each_compute_through_its_own_bmc(nova_lab: NovaLab) -> None:
    config = load_config(nova_lab.folder, nova_lab.haven_toml)
    hosts = {str(h.host): h for h in config.fencing.hosts.values()}
    assert sorted(hosts) == nova_lab.hosts
    urls = {h.address for h in hosts.values()}
    assert len(urls) == len(nova_lab.hosts)  # one BMC per host
    assert nova_lab.bmc_password not in repr(config.fencing)
    for host, bmc in nova_lab.bmcs.items():
        assert power_state(bmc, nova_lab.bmc_password) == "On", host
        assert power_state(bmc, "wrong") is None


def test_a_server_boots_and_is_evacuated_after_its_host_loses_power(nova_lab: NovaLab) -> None:
    cloud = nova_lab.connect()
    flavor = cloud.compute.find_flavor(nova_lab.flavor)
    server = cloud.compute.create_server(
        name="lab-smoke", image_id=nova_lab.image_id, flavor_id=flavor.id, networks="none"
    )
    server = cloud.compute.wait_for_server(server, wait=90, interval=0.5)
    failed = server.compute_host
    assert failed in nova_lab.hosts
    service = next(s for s in cloud.compute.services() if s.host == failed and s.binary == "nova-compute")
    try:
        nova_lab.power_off(failed)  # the BMC's power-off kills that host's nova-compute
        cloud.compute.update_service_forced_down(service, failed, "nova-compute", True)
        cloud.compute.evacuate_server(server)

        def active_elsewhere() -> bool:
            current = cloud.compute.get_server(server.id)
            assert current.status != "ERROR", current.fault
            return bool(current.status == "ACTIVE" and current.compute_host != failed)

        wait_for(active_elsewhere, 60, "the evacuated server ACTIVE on the other host")
    finally:
        nova_lab.power_on(failed)
        # Nova refuses to unset forced-down until the restarted compute has cleaned up its
        # evacuation records: retry until it accepts.
        wait_for(
            lambda: unforce(cloud, service, failed), 60, f"Nova to accept {failed} as no longer forced down"
        )
    wait_for(lambda: compute_state(cloud, failed) == "up", 60, f"{failed} up again")
    cloud.compute.delete_server(server)
    cloud.compute.wait_for_delete(server, wait=60)
    pids = json.loads((nova_lab.folder / "hardware" / "status.json").read_text())["computes"]
    assert all(pids.values())
