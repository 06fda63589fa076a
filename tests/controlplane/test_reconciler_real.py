"""The reconciler end to end on real parts: systemd 252 (PID 1 of a namespace), HAProxy, HTTP probes.

A unit is killed (SIGKILL) or hung (SIGSTOP: its port still accepts connections); judged from systemd's
and HAProxy's own state, sampled every 50 ms while the reconciler runs on the real clock: the replica
leaves the backend before it is restarted, is restarted once (by haven: Restart=no), and is back in the
backend, serving clients, once its probe passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.haproxy import HAProxyRuntime
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.controlplane.reconciler import Reconciler
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    ActionKind,
    ActionState,
    Backend,
    Controller,
    ControlPlaneSettings,
    DomainName,
    MemberAdmin,
    ProbeKind,
    ProbeSpec,
    RestartPolicy,
    ServiceName,
    ServiceSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.ids import HostName
from haven.store import Store

from .servers import NamespacedSystemd, RunningHAProxy, free_port, http_unit, until

pytestmark = [pytest.mark.systemd, pytest.mark.haproxy]
HOST = HostName("ctl-1")
Sample = tuple[float, MemberAdmin, UnitActive, bool]  # (seconds since the fault, member, unit, new process)


@dataclass
class Rig:
    systemd: NamespacedSystemd
    lb: RunningHAProxy
    units: SystemdUnits
    runtime: HAProxyRuntime
    store: Store
    first: UnitStatus

    async def after(self, fault: Callable[[], None], limit_s: float = 15) -> list[Sample]:
        """Make the fault, then sample systemd and HAProxy until a new process serves in the backend."""
        started = time.monotonic()
        fault()
        timeline: list[Sample] = []
        while True:
            member = (await self.runtime.members())[("web", HOST)]
            unit = await self.units.status("web.service")
            fresh = unit.invocation_id != self.first.invocation_id
            timeline.append((time.monotonic() - started, member.admin, unit.active, fresh))
            if fresh and unit.active is UnitActive.ACTIVE and member.admin is MemberAdmin.READY:
                return timeline
            assert time.monotonic() - started < limit_s, timeline
            await asyncio.sleep(0.05)

    def actions(self) -> list[tuple[ActionKind, ActionState]]:
        return [(a.kind, a.state) for a in self.store.actions_since(0)]


@pytest.fixture
async def rig(
    systemd_ns: NamespacedSystemd, haproxy_factory: Callable[[str, dict[str, int]], RunningHAProxy]
) -> AsyncIterator[Rig]:
    port = free_port()
    systemd_ns.add_unit("web.service", http_unit(port))
    lb = haproxy_factory("web", {HOST: port})
    units = SystemdUnits(systemd_ns.bus_address)
    await units.start("web.service")
    spec = ServiceSpec(
        ServiceName("web"),
        "web.service",
        1,
        probe=ProbeSpec(ProbeKind.HTTP, port, "/", timeout_s=0.5, period_s=0.2, failure_threshold=2),
        backend=Backend("web"),
        restart=RestartPolicy(backoff_initial_s=0.5),
        drain_s=0.5,
    )
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=0.2),
        (Controller(HOST, DomainName("rack-a"), "127.0.0.1"),),
        (spec,),
    )
    prober = NetworkProber()
    runtime = HAProxyRuntime(lb.socket_path)
    with Store.open("sqlite://") as store:
        task = asyncio.create_task(
            Reconciler(config, {HOST: units}, runtime, prober, store, RealClock()).run()
        )
        try:
            first = await until(
                lambda: units.status("web.service"), lambda s: s.active is UnitActive.ACTIVE, 5
            )
            await asyncio.sleep(1.0)  # steady: probes pass, nothing to do
            assert store.actions_since(0) == []
            yield Rig(systemd_ns, lb, units, runtime, store, first)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await prober.close()
            await units.close()


def _judge(rig: Rig, timeline: list[Sample]) -> None:
    # From HAProxy and systemd: out of the backend before the new process existed...
    first_fresh = next(t for t in timeline if t[3])
    assert first_fresh[1] is MemberAdmin.MAINT, timeline
    assert any(t[1] is MemberAdmin.MAINT and not t[3] for t in timeline), timeline
    # ...and a client through HAProxy's frontend is served by the new process.
    assert httpx.get(f"http://127.0.0.1:{rig.lb.frontend_port}/", timeout=3).status_code == 200


async def test_a_killed_unit_leaves_haproxy_is_restarted_and_returns_when_its_probe_passes(rig: Rig) -> None:
    timeline = await rig.after(lambda: os.kill(rig.systemd.main_pid("web.service"), signal.SIGKILL))
    _judge(rig, timeline)
    final = await rig.units.status("web.service")
    assert final.n_restarts == 0  # systemd did not restart it (Restart=no): haven did, once
    assert rig.actions() == [
        (ActionKind.DRAIN, ActionState.DONE),
        (ActionKind.MAINT, ActionState.DONE),
        (ActionKind.RESTART, ActionState.DONE),
        (ActionKind.READY, ActionState.DONE),
    ]
    assert timeline[-1][0] < 10


async def test_a_hung_unit_is_found_by_its_probe_drained_restarted_and_returned(rig: Rig) -> None:
    timeline = await rig.after(lambda: os.kill(rig.systemd.main_pid("web.service"), signal.SIGSTOP))
    # systemd still says active while it hangs: only the probe (timeouts) could tell.
    assert any(t[1] is MemberAdmin.DRAIN and t[2] is UnitActive.ACTIVE and not t[3] for t in timeline), (
        timeline
    )
    _judge(rig, timeline)
    assert rig.actions() == [
        (ActionKind.DRAIN, ActionState.DONE),
        (ActionKind.MAINT, ActionState.DONE),
        (ActionKind.RESTART, ActionState.DONE),
        (ActionKind.READY, ActionState.DONE),
    ]
    assert timeline[-1][0] < 12
