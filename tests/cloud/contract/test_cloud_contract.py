"""One contract for every Cloud: what the engine relies on, checked on the simulated cloud and on real Nova.

The simulated cloud must behave as Nova does (so drills on it mean something); where
this suite passes on one and fails on the other, the simulator drifted from reality.
"""

from __future__ import annotations

import pytest

from cloud.contract.harness import HA_METADATA, CloudUnderTest, accepted
from haven.domain.cloud import TaskState, VmState
from haven.domain.errors import Conflict, NotFound, PermanentError, TemporaryError
from haven.domain.ids import HostName, ServerId

# openstacksdk (the driver on real Nova) warns about its own internals on every request.
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
MISSING_SERVER = ServerId("00000000-0000-4000-8000-000000000000")
REASON = "haven: host failure, contract test"
# The lab's Nova notices a dead compute in ~10 s and a restarted one in a few seconds.
NOVA_TIMEOUT_S = 120.0


async def test_hosts_list_their_compute_service_state_and_capacity(cut: CloudUnderTest) -> None:
    hosts = {h.name: h for h in await cut.cloud.list_hosts()}
    assert set(cut.hosts) <= set(hosts)
    for name in cut.hosts:
        host = hosts[name]
        assert host.service_enabled and host.service_up and not host.forced_down
        assert host.capacity.vcpus > 0 and host.capacity.ram_mb > 0
        assert host.zone
        assert await cut.cloud.get_host(name) == host
    with pytest.raises(NotFound):
        await cut.cloud.get_host(HostName("no-such-host"))


async def test_servers_on_a_host_carry_flavor_metadata_and_state(cut: CloudUnderTest) -> None:
    server = await cut.cloud.get_server(cut.ha_server)
    on_host = {s.id: s for s in await cut.cloud.list_servers(server.host)}
    listed = on_host[cut.ha_server]
    assert listed == server
    assert dict(listed.metadata).items() >= HA_METADATA.items()
    assert listed.ha_enabled and listed.priority == 7
    assert listed.is_running and listed.vm_state is VmState.ACTIVE
    assert listed.flavor.vcpus >= 1 and listed.flavor.ram_mb > 0
    others = [h for h in cut.hosts if h != server.host]
    for other in others:
        assert cut.ha_server not in {s.id for s in await cut.cloud.list_servers(other)}
    assert cut.ha_server in {s.id for s in await cut.cloud.list_servers()}


async def test_an_unknown_server_is_not_found(cut: CloudUnderTest) -> None:
    with pytest.raises(NotFound):
        await cut.cloud.get_server(MISSING_SERVER)
    with pytest.raises(NotFound):
        await cut.cloud.evacuate(MISSING_SERVER, cut.hosts[1])


async def test_evacuating_off_a_live_host_is_refused_with_novas_reason(cut: CloudUnderTest) -> None:
    server = await cut.cloud.get_server(cut.ha_server)
    target = next(h for h in cut.hosts if h != server.host)
    with pytest.raises(PermanentError) as caught:
        await cut.cloud.evacuate(cut.ha_server, target)
    assert isinstance(caught.value, Conflict | PermanentError) and not isinstance(
        caught.value, TemporaryError
    )
    assert "in use" in str(caught.value)  # Nova: "Compute service of <host> is still in use."
    assert (await cut.cloud.get_server(cut.ha_server)).host == server.host  # nothing moved


async def test_a_server_is_stopped_started_and_hard_rebooted_and_each_action_is_listed(
    cut: CloudUnderTest,
) -> None:
    cloud, sid = cut.cloud, cut.ha_server
    # Nova keeps whole seconds (up to 1 s early) and its clock offset is known within about ±0.5 s: an
    # action asked just after `now` can read up to 1.5 s before it (a clean CI run lost the stop).
    since = cut.now() - 2.0

    async def settled(vm_state: VmState, running: bool) -> bool:
        s = await cloud.get_server(sid)
        return s.task_state is TaskState.NONE and s.vm_state is vm_state and s.is_running is running

    await cloud.stop_server(sid)
    await cut.wait_until(lambda: settled(VmState.STOPPED, False), NOVA_TIMEOUT_S, "server stopped")
    with pytest.raises(Conflict):
        await cloud.stop_server(sid)  # Nova: cannot 'stop' while in vm_state stopped
    await cloud.start_server(sid)
    await cut.wait_until(lambda: settled(VmState.ACTIVE, True), NOVA_TIMEOUT_S, "server started")
    await cloud.reboot_server(sid)
    await cut.wait_until(lambda: settled(VmState.ACTIVE, True), NOVA_TIMEOUT_S, "server hard rebooted")
    actions = [a.action for a in sorted(await cloud.server_actions(sid, since), key=lambda a: a.at)]
    assert [a for a in actions if a in {"stop", "start", "reboot"}] == ["stop", "start", "reboot"]


@pytest.mark.slow
async def test_a_dead_host_is_forced_down_disabled_evacuated_and_returned_to_service(
    cut: CloudUnderTest,
) -> None:
    cloud = cut.cloud
    server = await cloud.get_server(cut.ha_server)
    dead = server.host
    target = next(h for h in cut.hosts if h != dead)
    await cut.kill_compute(dead)

    # Force down first, then disable: disabling a service Nova still counts as up would call the dead compute.
    await cloud.force_down(dead, True)
    await cloud.disable_service(dead, REASON)
    host = await cloud.get_host(dead)
    assert (host.forced_down, host.service_up, host.service_enabled) == (True, False, False)
    assert host.disabled_reason == REASON

    await cloud.evacuate(cut.ha_server, target)

    async def active_on_target() -> bool:
        s = await cloud.get_server(cut.ha_server)
        return s.host == target and s.is_running and s.task_state is TaskState.NONE

    await cut.wait_until(active_on_target, NOVA_TIMEOUT_S, f"server ACTIVE on {target}")
    moved = await cloud.get_server(cut.ha_server)
    assert (moved.vm_state, moved.host) == (VmState.ACTIVE, target)
    assert cut.ha_server not in {s.id for s in await cloud.list_servers(dead)}

    await cut.revive_compute(dead)
    # Nova refuses to unset forced-down until the compute restarted and cleaned up its evacuations.
    await cut.wait_until(
        lambda: accepted(lambda: cloud.force_down(dead, False)), NOVA_TIMEOUT_S, "unset forced down"
    )
    await cloud.enable_service(dead)

    async def back_in_service() -> bool:
        h = await cloud.get_host(dead)
        return h.service_up and h.service_enabled and not h.forced_down

    await cut.wait_until(back_in_service, NOVA_TIMEOUT_S, f"{dead} up and enabled")
    assert (await cloud.get_host(dead)).disabled_reason == ""
