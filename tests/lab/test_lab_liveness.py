"""Liveness on the real lab: the agents heartbeat into the lab's etcd; the engine tells failures apart.

One session-scoped lab (tests/servers/nova.py) with an etcd and one ``haven agent`` per compute
(started by the lab's power wiring next to the host's nova-compute). Each test runs in-process
engines exactly as ``haven serve --cloud lab --config LAB/haven.toml`` builds them: the OpenStack
driver on the lab's Nova, the Redfish fencer from haven.toml, and the liveness source from
``open_real_liveness``. The host under test is ``compute-2`` (the contract suite boots its server on
``compute-1``); every test leaves it powered on, up, enabled and unheld.

- ``haven serve --cloud lab`` with the lab's haven.toml shows every agent's heartbeat at /metrics;
- power off through the BMC: confirmed dead by the agent channel + BMC, and (a second engine,
  Nova alone) by Nova's service state; both times are printed, the first must be clearly sooner;
- the agent alone killed (held down): an AGENT_DOWN alert, no notification, no fence;
- nova-compute alone killed (held down) while the BMC stays On: the PROCESS path (service
  disabled with haven's reason, no fence, no evacuation), and enabled again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from haven.cloud.openstack import OpenStackCloud, open_cloud
from haven.domain.clock import RealClock
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind, NotificationType, SegmentMode
from haven.fencing.registry import build_fencer
from haven.lab import lab
from haven.lab.bmc import power_state, set_power
from haven.lab.hardware import hold_agent_down, hold_compute_down
from haven.lab.process import free_port
from haven.service.bootstrap import segments_per_zone
from haven.service.config import CoordinationConfig, load_config
from haven.service.engine import Engine
from haven.service.liveness import RealCloudLiveness, open_real_liveness
from haven.service.runner import serve_forever
from haven.store import Store
from servers.nova import NovaLab

pytestmark = [pytest.mark.nova, pytest.mark.slow, pytest.mark.etcd]

HOST = HostName("compute-2")
HAVEN = str(Path(sys.executable).with_name("haven"))


@pytest.fixture(scope="module")
def lab_cloud(nova_lab: NovaLab) -> Iterator[OpenStackCloud]:
    cloud = open_cloud("lab", max_workers=4, clouds_yaml=nova_lab.clouds_yaml)
    yield cloud
    cloud.close()


@dataclass
class LabEngine:
    engine: Engine
    store: Store
    liveness: RealCloudLiveness
    events: list[EngineEvent] = field(default_factory=list)

    def first(self, kind: EventKind, host: str, after: float = 0.0) -> EngineEvent | None:
        return next((e for e in self.events if e.kind is kind and e.host == host and e.at >= after), None)

    async def wait_event(
        self, kind: EventKind, host: str, timeout_s: float, after: float = 0.0
    ) -> EngineEvent:
        await until(lambda: self.first(kind, host, after) is not None, timeout_s, f"{kind.value} of {host}")
        found = self.first(kind, host, after)
        assert found is not None
        return found

    def agents_alive(self) -> set[str]:
        beats = self.liveness.heartbeats()
        return {
            h for h, channels in beats.items() if "management" in channels and channels["management"].alive
        }


async def until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def lab_engine(
    nova_lab: NovaLab, cloud: OpenStackCloud, db: Path, mode: SegmentMode, agents: bool = True
) -> AsyncIterator[LabEngine]:
    """An engine on the lab as `haven serve --config LAB/haven.toml` has it (``agents`` False: Nova alone)."""
    config = load_config(nova_lab.folder, nova_lab.haven_toml)
    if not agents:
        config = dataclasses.replace(config, coordination=CoordinationConfig())
    fencer = build_fencer(config.fencing, {})
    clock = RealClock()
    with Store.open(f"sqlite:///{db}") as store:
        segments_per_zone(store, await cloud.list_hosts())
        for segment in store.list_segments():
            store.update_segment(segment.id, mode=mode)
        async with open_real_liveness(config, cloud, fencer) as liveness:
            events: list[EngineEvent] = []
            engine = Engine(cloud, liveness, fencer, store, clock, config.engine, on_event=events.append)
            engine.start()
            running = LabEngine(engine, store, liveness, events)
            if agents:  # the view has seen every host's agent beat
                await until(lambda: running.agents_alive() >= set(nova_lab.hosts), 15, "every agent's lease")
            stop = asyncio.Event()
            task = asyncio.create_task(serve_forever(engine, clock, stop))
            try:
                yield running
            finally:
                stop.set()
                await task


async def nova_service(nova_lab: NovaLab, host: str) -> dict[str, str]:
    def read() -> dict[str, str]:
        service = next(s for s in nova_lab.connect().compute.services() if s.host == host)
        return {"state": service.state, "status": service.status, "reason": service.disabled_reason or ""}

    return await asyncio.to_thread(read)


async def wait_host_serving(
    nova_lab: NovaLab, host: str, timeout_s: float = 40, running: LabEngine | None = None
) -> None:
    """Until Nova lists ``host`` up and enabled; if not, the failure names haven's notifications and
    events for it (``running``), which tell whether haven saw the process return and what it did."""
    deadline = time.monotonic() + timeout_s
    while (state := await nova_service(nova_lab, host)) != {"state": "up", "status": "enabled", "reason": ""}:
        if time.monotonic() >= deadline:
            seen = ""
            if running is not None:
                notes = [
                    (n.type.value, n.status.value, dict(n.payload))
                    for n in running.store.list_notifications(hostname=host)
                ]
                events = [(round(e.at, 1), e.kind.value, e.detail) for e in running.events if e.host == host]
                seen = f"\nhaven's notifications: {notes}\nhaven's events: {events}"
            raise AssertionError(f"{host} not back in service after {timeout_s} s: {state}{seen}")
        await asyncio.sleep(0.5)


def test_haven_serve_on_the_lab_watches_every_agents_heartbeat(nova_lab: NovaLab, tmp_path: Path) -> None:
    # Its own port: the agents report to the lab's [api] bind, and must not hand this engine what they
    # spooled for another (a drill's crash of a nova-compute, say).
    port = free_port()
    db = f"sqlite:///{tmp_path / 'haven.db'}"
    argv = [HAVEN, "--home", str(tmp_path), "--config", str(nova_lab.haven_toml), "--db", db,
            "serve", "--cloud", "lab", "--bind", f"127.0.0.1:{port}"]  # fmt: skip
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(nova_lab.clouds_yaml)}
    serve = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        wanted = [f'haven_agent_channel_up{{channel="management",host="{h}"}} 1.0' for h in nova_lab.hosts]
        # In sync with etcd too, in the same scrape (a watch re-syncing under load is not a failure).
        wanted.append("haven_agent_view_synced 1.0")
        scraped = ""
        while not all(line in scraped for line in wanted):
            assert serve.poll() is None, serve.communicate()[1]
            assert time.monotonic() < deadline, f"no agent heartbeats (or no sync) at /metrics:\n{scraped}"
            time.sleep(0.5)
            with contextlib.suppress(httpx.TransportError):
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        serve.send_signal(signal.SIGINT)
        _, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    assert "liveness from haven agents' heartbeats (etcd), Nova and BMCs" in err


async def test_a_powered_off_host_is_confirmed_dead_sooner_through_its_agent_and_bmc(
    nova_lab: NovaLab, lab_cloud: OpenStackCloud, tmp_path: Path
) -> None:
    bmc = nova_lab.bmcs[HOST]
    async with (
        lab_engine(nova_lab, lab_cloud, tmp_path / "agents.db", SegmentMode.NOTIFY) as fast,
        lab_engine(nova_lab, lab_cloud, tmp_path / "nova.db", SegmentMode.NOTIFY, agents=False) as nova,
    ):
        off_at = time.time()
        await asyncio.to_thread(set_power, bmc, nova_lab.bmc_password, "ForceOff")
        try:
            dead = await fast.wait_event(EventKind.HOST_CONFIRMED_DEAD, HOST, 15, off_at)
            by_nova = await nova.wait_event(EventKind.HOST_CONFIRMED_DEAD, HOST, 30, off_at)
        finally:
            await asyncio.to_thread(nova_lab.power_on, HOST)
        with_agent, nova_alone = dead.at - off_at, by_nova.at - off_at
        print(f"\nBMC off -> confirmed dead: {with_agent:.1f} s with the agent channel, "
              f"{nova_alone:.1f} s by Nova alone")  # fmt: skip
        assert "BMC reports power off" in dead.detail["reason"]
        assert with_agent < 7.0 and with_agent < nova_alone - 2.0
        await fast.wait_event(EventKind.HOST_HEALTHY, HOST, 20, dead.at)  # its agent beats again
    await wait_host_serving(nova_lab, HOST)


async def test_a_killed_agent_on_a_live_host_raises_agent_down_and_nothing_is_fenced(
    nova_lab: NovaLab, lab_cloud: OpenStackCloud, tmp_path: Path
) -> None:
    async with lab_engine(nova_lab, lab_cloud, tmp_path / "haven.db", SegmentMode.AUTOMATIC) as running:
        killed_at = time.time()
        await asyncio.to_thread(hold_agent_down, nova_lab.folder, HOST, True)
        try:
            down = await running.wait_event(EventKind.HOST_AGENT_DOWN, HOST, 20, killed_at)
            print(f"\nagent SIGKILLed -> AGENT_DOWN after {down.at - killed_at:.1f} s")
            alerts = [a for a in running.store.list_alerts() if a.host == HOST]
            assert [a.kind for a in alerts] == [AlertKind.AGENT_DOWN]
            assert lab.status(nova_lab.folder)["computes"][HOST]["agent_pid"] is None
        finally:
            await asyncio.to_thread(hold_agent_down, nova_lab.folder, HOST, False)
        await running.wait_event(EventKind.HOST_HEALTHY, HOST, 20, down.at)
        assert [a.kind for a in running.store.list_alerts() if a.host == HOST] == []
        assert running.store.list_notifications(hostname=HOST) == []  # nothing fenced, nothing moved
        assert power_state(nova_lab.bmcs[HOST], nova_lab.bmc_password) == "On"


async def test_nova_compute_held_down_on_a_live_host_takes_the_process_path(
    nova_lab: NovaLab, lab_cloud: OpenStackCloud, tmp_path: Path
) -> None:
    agent_log = nova_lab.folder / "agents" / HOST / "agent.log"
    other_log = nova_lab.folder / "agents" / "compute-1" / "agent.log"
    other_before = other_log.read_text().count("not running")
    async with lab_engine(nova_lab, lab_cloud, tmp_path / "haven.db", SegmentMode.AUTOMATIC) as running:
        store = running.store
        await asyncio.to_thread(hold_compute_down, nova_lab.folder, HOST, True)
        try:
            await until(lambda: nova_lab.compute_pid(HOST) is None, 5, f"{HOST}'s nova-compute to die")
            assert lab.status(nova_lab.folder)["computes"][HOST]["held_down"] == ["nova-compute"]
            disabled: dict[str, str] = {}

            async def disabled_by_haven() -> bool:
                disabled.update(await nova_service(nova_lab, HOST))
                return disabled["status"] == "disabled"

            deadline = time.monotonic() + 30
            while not await disabled_by_haven():
                assert time.monotonic() < deadline, f"{HOST} never disabled: {disabled}"
                await asyncio.sleep(0.5)
            assert "nova-compute down on compute-2" in disabled["reason"]
            types = {n.type for n in store.list_notifications(hostname=HOST)}
            assert types == {NotificationType.PROCESS}  # no host failure: nothing fenced or evacuated
            assert power_state(nova_lab.bmcs[HOST], nova_lab.bmc_password) == "On"
            # The agent watches its own nova-compute only: compute-2's reported it, compute-1's did not.
            assert "process nova-compute is not running" in agent_log.read_text()
            assert other_log.read_text().count("not running") == other_before
        finally:
            await asyncio.to_thread(hold_compute_down, nova_lab.folder, HOST, False)
        await wait_host_serving(nova_lab, HOST, 60, running)  # haven enabled it again once it reported up
        assert {n.type for n in store.list_notifications(hostname=HOST)} == {NotificationType.PROCESS}
