"""The engine fencing through a real Redfish BMC: confirmed off means evacuate; no answer, or no
fence driver at all, means not fenced, nothing evacuated, the notification says why, an alert.

The cloud is the simulated one, in virtual time (it stands for Nova); the failed host's
BMC is sushy-tools' emulator (or a closed port) reached through the routing fencer, the
other hosts keep the simulated BMCs. The engine's waits are virtual, the BMC's answers real.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind, NotificationStatus, StepState
from haven.domain.liveness import BmcPower
from haven.fencing.base import Fencer
from haven.fencing.config import BmcConfig, Secret
from haven.fencing.redfish import RedfishFencer
from haven.fencing.registry import RoutingFencer
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store
from servers.process import free_port
from servers.redfish import RedfishBmc

from .conftest import HOSTS, PASSWORD

SPEC = CloudSpec(hosts=6, vms=30, zones=1, ha_fraction=1.0, seed=11)
EMULATED = HostName(HOSTS[1])  # the emulator's system that stands for the failed host


@dataclass
class World:
    cloud: SimCloud
    clock: VirtualClock
    store: Store
    engine: Engine
    victim: HostName

    async def recover(self) -> None:
        self.cloud.fail_power(self.victim)

        def over() -> bool:
            return bool(self.store.list_notifications()) and not self.engine.open_notifications()

        limit = self.clock.now() + 900.0
        await run_until(self.engine, self.clock, limit, done=over, wake_sources=[self.cloud.next_event_time])
        assert over(), "the recovery did not end within 900 s of virtual time"


async def _world(tmp_path: Path, victim_fencer: Callable[[HostName], Fencer] | None) -> World:
    """The failed host fenced by ``victim_fencer(name)`` (no driver at all if None), the others simulated."""
    clock = VirtualClock()
    cloud, _ = build_cloud(SPEC, clock)
    victim = cloud.host_names()[2]
    routes: dict[HostName, Fencer] = {h: SimFencer(cloud) for h in cloud.host_names() if h != victim}
    if victim_fencer is not None:
        routes[victim] = victim_fencer(victim)
    store = Store.open(f"sqlite:///{tmp_path}/haven.db")
    segments_per_zone(store, await cloud.list_hosts())
    engine = Engine(cloud, cloud, RoutingFencer(routes, default=None), store, clock)
    engine.start()
    await run_until(engine, clock, clock.now() + 5.0, wake_sources=[cloud.next_event_time])
    return World(cloud, clock, store, engine, victim)


def _redfish(address: str, system_id: str = "") -> Callable[[HostName], RedfishFencer]:
    def make(host: HostName) -> RedfishFencer:
        # Configured under the simulated host's name; the emulator's system is its "hardware".
        return RedfishFencer(
            [BmcConfig(host, "redfish", address, "admin", Secret(PASSWORD), system_id=system_id)], {}
        )

    return make


@pytest.fixture
async def emulated_system(redfish_bmc: RedfishBmc) -> AsyncIterator[RedfishFencer]:
    """A fencer for the emulator's system that stands for the failed host, powered on before and after."""
    probe = _redfish(redfish_bmc.url, EMULATED)(EMULATED)
    await probe.power_on(EMULATED)
    assert await probe.power_status(EMULATED) is BmcPower.ON
    yield probe
    await probe.power_on(EMULATED)  # the session's emulator is shared
    probe.close()


@pytest.mark.bmc
async def test_a_fence_confirmed_by_the_real_bmc_lets_the_engine_evacuate(
    tmp_path: Path, redfish_bmc: RedfishBmc, emulated_system: RedfishFencer
) -> None:
    world = await _world(tmp_path, _redfish(redfish_bmc.url, EMULATED))
    ha_vms = [s.id for s in await world.cloud.list_servers(world.victim) if s.ha_enabled]
    assert ha_vms
    await world.recover()
    (note,) = world.store.list_notifications()
    assert note.status is NotificationStatus.FINISHED
    fence = next(s for s in world.store.list_steps(note.id) if s.kind == "fence")
    assert fence.state is StepState.DONE and fence.detail["power"] == "off"
    assert await emulated_system.power_status(EMULATED) is BmcPower.OFF  # the real BMC powered it off
    assert all(world.cloud.evacuation_count(sid) == 1 for sid in ha_vms)
    assert world.store.list_alerts() == []
    world.store.close()


@pytest.mark.bmc
async def test_an_unreachable_bmc_means_not_fenced_no_evacuation_and_an_alert(tmp_path: Path) -> None:
    world = await _world(tmp_path, _redfish(f"http://127.0.0.1:{free_port()}"))
    await world.recover()
    (note,) = world.store.list_notifications()
    assert note.status is NotificationStatus.FAILED
    steps = {s.kind: s for s in world.store.list_steps(note.id)}
    assert steps["fence"].state is StepState.FAILED
    error = steps["fence"].detail["error"]
    assert "could not fence" in error and "did not answer (connection refused)" in error
    assert "NOT evacuated" in error and PASSWORD not in error
    assert all(kind != "evacuate" for kind in steps)
    assert world.cloud.evacuations == []
    alerts = world.store.list_alerts()
    assert [(a.kind, a.host) for a in alerts] == [(AlertKind.FENCE_FAILED, world.victim)]
    assert note.payload["recovery"]["failures"][0]["step"] == "fence"
    world.store.close()


async def test_a_host_with_no_fence_driver_is_not_evacuated_and_the_reason_is_given(tmp_path: Path) -> None:
    world = await _world(tmp_path, None)
    started = world.clock.now()
    await world.recover()
    (note,) = world.store.list_notifications()
    assert note.status is NotificationStatus.FAILED
    fence = next(s for s in world.store.list_steps(note.id) if s.kind == "fence")
    assert fence.state is StepState.FAILED
    assert "no fence driver is configured for" in fence.detail["error"]
    # Refused at once: no point retrying for the whole fence timeout.
    assert fence.finished_at is not None
    assert fence.finished_at - started < world.engine.settings.recovery.fence_timeout_s
    assert world.cloud.evacuations == []
    assert [a.kind for a in world.store.list_alerts()] == [AlertKind.FENCE_FAILED]
    world.store.close()
