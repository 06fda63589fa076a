"""Fixtures for the host agent's tests: real etcd, real libvirtd, a real `haven serve`, agents in-process.

``engine`` is a `haven serve` (simulated cloud: 30 hosts compute-00001..., 300 VMs, seed 1) shared
by the agent's tests; ``sim_server`` names one of its HA_Enabled VMs and that VM's host, computed by
building the same simulated cloud in the test (same spec and seed), so a libvirt domain given that
UUID is a VM the engine knows. ``run_agent`` starts an ``Agent`` as a task and stops it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clients.conftest import HavenServer, start_haven
from haven.agent.config import AgentConfig, Channel
from haven.agent.runner import Agent
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.clock import VirtualClock
from servers.etcd import EtcdServer, etcd, etcd_server  # noqa: F401
from servers.libvirtd import LibvirtdServer, libvirtd, libvirtd_server  # noqa: F401

NOWHERE = "http://127.0.0.1:9"  # an etcd / engine URL where nothing listens (discard port)


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    yield from start_haven(tmp_path_factory.mktemp("engine") / "home")


@dataclass(frozen=True)
class SimVm:
    uuid: str
    name: str
    host: str


async def sim_vms(count: int) -> list[SimVm]:
    """HA_Enabled VMs of `haven serve`'s default simulated cloud (the same spec and seed it uses)."""
    cloud, _ = build_cloud(CloudSpec(hosts=30, vms=300, seed=1), VirtualClock())
    found = [SimVm(str(s.id), s.name, str(s.host)) for s in await cloud.list_servers() if s.ha_enabled]
    return found[:count]


def agent_config(tmp_path: Path, engine_url: str, **changes: Any) -> AgentConfig:
    """A fast agent: no libvirt, no processes, a channel nowhere, unless ``changes`` say otherwise."""
    base: dict[str, Any] = dict(
        host="compute-00001", engine_url=engine_url, channels=(Channel("management", NOWHERE),),
        state_dir=tmp_path / "agent-state", libvirt_uri=None, processes=(), process_interval_s=0.2,
        retry_min_s=0.1, retry_max_s=0.5, keepalive_interval_s=1, keepalive_count=2,
        reconnect_interval_s=0.2,
    )  # fmt: skip
    base.update(changes)
    return AgentConfig(**base)


RunAgent = Callable[[AgentConfig], contextlib.AbstractAsyncContextManager[Agent]]


@pytest.fixture
def run_agent() -> RunAgent:
    @contextlib.asynccontextmanager
    async def running(config: AgentConfig) -> AsyncIterator[Agent]:
        agent = Agent(config)
        stop = asyncio.Event()
        task = asyncio.create_task(agent.run(stop))
        await asyncio.wait_for(agent.started.wait(), 5)
        try:
            yield agent
        finally:
            stop.set()
            await asyncio.wait_for(task, 15)

    return running


async def eventually(check: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync) until it returns something truthy; its value."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, f"no {what} within {timeout_s} s"
        await asyncio.sleep(0.05)
