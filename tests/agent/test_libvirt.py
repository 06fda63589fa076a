"""The agent against a real libvirtd (test driver) and a real `haven serve`: a destroyed domain is restarted.

One world: a domain is defined with the UUID of one of the simulated cloud's HA_Enabled VMs, and the
agent runs as that VM's host, so the notification names a host and a server the engine knows. The
domain is destroyed from another process (virsh), as an operator or a dying QEMU would from outside
the agent and outside Nova. The engine gets the agent's notification, finds no stop asked through
its cloud (the simulated Nova still shows the VM active), and restarts the VM there: stop, start,
confirm, as its API shows. The simulated cloud does not drive libvirt, so the domain itself stays
shut off: what is proven is agent -> engine -> recovery decision and actions in the engine's cloud.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.conftest import HavenServer
from servers.libvirtd import LibvirtdServer

from .conftest import RunAgent, SimVm, agent_config, eventually, sim_vms

pytestmark = [pytest.mark.libvirt]


def domain_xml(vm: SimVm) -> str:
    return (
        f"<domain type='test'><name>{vm.name}</name><uuid>{vm.uuid}</uuid>"
        "<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )


async def start_domain(libvirtd: LibvirtdServer, vm: SimVm, folder: Path) -> None:
    xml = folder / f"{vm.name}.xml"
    xml.write_text(domain_xml(vm))
    await asyncio.to_thread(libvirtd.virsh, "define", str(xml))
    await asyncio.to_thread(libvirtd.virsh, "start", vm.name)


async def shown(engine: HavenServer, notification_uuid: str) -> dict[str, Any]:
    """One notification as the API shows it with its workflow details (microversion 1.1)."""
    headers = {"X-Auth-Token": engine.token, "OpenStack-API-Version": "instance-ha 1.1"}
    async with httpx.AsyncClient(base_url=engine.url, headers=headers) as http:
        answer = await http.get(f"/v1/notifications/{notification_uuid}")
    assert answer.status_code == 200, answer.text
    note: dict[str, Any] = answer.json()["notification"]
    return note


async def wait_until_closed(engine: HavenServer, notification_uuid: str, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while (note := await shown(engine, notification_uuid))["status"] in ("new", "running"):
        assert time.monotonic() < deadline, f"not recovered within {timeout_s} s: {note}"
        await asyncio.sleep(0.2)
    return note


async def vm_notifications(engine: HavenServer, instance_uuid: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=engine.url, headers={"X-Auth-Token": engine.token}) as http:
        found = (await http.get("/v1/notifications", params={"type": "VM"})).json()["notifications"]
    return [n for n in found if n["payload"].get("instance_uuid") == instance_uuid]


async def wait_for_vm_notification(engine: HavenServer, vm: SimVm, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while not (found := await vm_notifications(engine, vm.uuid)):
        assert time.monotonic() < deadline, f"the engine got no VM notification for {vm.uuid}"
        await asyncio.sleep(0.05)
    assert len(found) == 1, found
    return found[0]


async def test_a_domain_destroyed_by_another_process_is_restarted_by_the_engine(
    libvirtd: LibvirtdServer, engine: HavenServer, run_agent: RunAgent, tmp_path: Path
) -> None:
    vm = (await sim_vms(1))[0]
    await start_domain(libvirtd, vm, tmp_path)
    token = tmp_path / "token"
    token.write_text(engine.token)
    config = agent_config(tmp_path, engine.url, host=vm.host, libvirt_uri=libvirtd.uri, token_file=token)
    async with run_agent(config) as agent:
        await eventually(agent.libvirt.connected.is_set, what="libvirt connection")
        started = time.monotonic()
        await asyncio.to_thread(libvirtd.virsh, "destroy", vm.name)
        note = await wait_for_vm_notification(engine, vm)
        took = time.monotonic() - started
    assert note["type"] == "VM"
    assert note["hostname"] == vm.host
    # Exactly what masakari-monitors' instance monitor sends for `virsh destroy`.
    assert note["payload"] == {
        "event": "LIFECYCLE",
        "instance_uuid": vm.uuid,
        "vir_domain_event": "STOPPED_DESTROYED",
    }
    assert (agent.reporter.delivered, agent.reporter.dropped) == (1, 0)
    recovered = await wait_until_closed(engine, note["notification_uuid"], 30.0)
    restored = time.monotonic() - started
    assert recovered["status"] == "finished", recovered
    summary = recovered["haven_recovery"]["summary"]
    assert summary["action"] == "restart" and summary["restarted"] is True, summary
    assert summary["note"] == f"{vm.name} stopped unexpectedly: stop, start; running again"
    tasks = [(t["name"], t["state"]) for t in recovered["recovery_workflow_details"]]
    assert [name for name, _ in tasks][-3:] == ["stop_vm", "start_vm", "confirm_vm"], tasks
    assert {state for _, state in tasks} == {"SUCCESS"}, tasks
    print(f"virsh destroy -> notification in the engine: {took * 1000:.0f} ms; restarted in {restored:.1f} s")


async def test_the_agent_reconnects_when_libvirtd_restarts(
    libvirtd: LibvirtdServer, engine: HavenServer, run_agent: RunAgent, tmp_path: Path
) -> None:
    vm = (await sim_vms(2))[1]
    token = tmp_path / "token"
    token.write_text(engine.token)
    config = agent_config(tmp_path, engine.url, host=vm.host, libvirt_uri=libvirtd.uri, token_file=token)
    async with run_agent(config) as agent:
        watch = agent.libvirt
        await eventually(watch.connected.is_set, what="libvirt connection")
        libvirtd.kill()  # SIGKILL: the close callback fires on the agent's side
        await eventually(lambda: not watch.connected.is_set(), 5, "the agent noticing libvirtd is gone")
        await asyncio.to_thread(libvirtd.start)
        await eventually(lambda: watch.connections == 2 and watch.connected.is_set(), 10, "a reconnect")
        # The test driver's state died with libvirtd: define the domain on the new one.
        await start_domain(libvirtd, vm, tmp_path)
        await asyncio.to_thread(libvirtd.virsh, "destroy", vm.name)
        note = await wait_for_vm_notification(engine, vm)
    assert note["payload"]["vir_domain_event"] == "STOPPED_DESTROYED"
    assert note["hostname"] == vm.host
