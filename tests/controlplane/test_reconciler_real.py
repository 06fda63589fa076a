"""The reconciler end to end on real parts: systemd 252 (PID 1 of a namespace), HAProxy, HTTP probes.

A unit is killed with SIGKILL; judged from systemd's and HAProxy's own state, sampled every 50 ms while
the reconciler runs on the real clock: the replica leaves the backend before it is restarted, is
restarted once (by haven: Restart=no), and is back in the backend, serving clients, once its probe passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable

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
)
from haven.domain.ids import HostName
from haven.store import Store

from .servers import NamespacedSystemd, RunningHAProxy, free_port, http_unit, until

pytestmark = [pytest.mark.systemd, pytest.mark.haproxy]
HOST = HostName("ctl-1")


async def test_a_killed_unit_leaves_haproxy_is_restarted_and_returns_when_its_probe_passes(
    systemd_ns: NamespacedSystemd, haproxy_factory: Callable[[str, dict[str, int]], RunningHAProxy]
) -> None:
    port = free_port()
    systemd_ns.add_unit("web.service", http_unit(port))
    lb = haproxy_factory("web", {HOST: port})
    units = SystemdUnits(systemd_ns.bus_address)
    runtime = HAProxyRuntime(lb.socket_path)
    await units.start("web.service")
    spec = ServiceSpec(
        ServiceName("web"),
        "web.service",
        1,
        probe=ProbeSpec(ProbeKind.HTTP, port, "/", timeout_s=0.5, period_s=0.2, failure_threshold=2),
        backend=Backend("web"),
        restart=RestartPolicy(backoff_initial_s=0.5),
    )
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=0.2),
        (Controller(HOST, DomainName("rack-a"), "127.0.0.1"),),
        (spec,),
    )
    prober = NetworkProber()
    with Store.open("sqlite://") as store:
        reconciler = Reconciler(config, {HOST: units}, runtime, prober, store, RealClock())
        task = asyncio.create_task(reconciler.run())
        try:
            first = await until(
                lambda: units.status("web.service"), lambda s: s.active is UnitActive.ACTIVE, 5
            )
            await asyncio.sleep(1.0)  # steady: probes pass, nothing to do
            assert store.actions_since(0) == []

            killed_at = time.monotonic()
            os.kill(systemd_ns.main_pid("web.service"), signal.SIGKILL)
            timeline: list[tuple[float, MemberAdmin, UnitActive, bool]] = []
            while True:
                member = (await runtime.members())[("web", HOST)]
                unit = await units.status("web.service")
                fresh = unit.invocation_id != first.invocation_id
                timeline.append((time.monotonic() - killed_at, member.admin, unit.active, fresh))
                if fresh and unit.active is UnitActive.ACTIVE and member.admin is MemberAdmin.READY:
                    break
                assert time.monotonic() - killed_at < 15, timeline
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await prober.close()
            await units.close()

        # From HAProxy and systemd: out of the backend before the new process existed...
        first_fresh = next(t for t in timeline if t[3])
        assert first_fresh[1] is MemberAdmin.MAINT, timeline
        assert any(t[1] is MemberAdmin.MAINT and not t[3] for t in timeline), timeline
        # ...and a client through HAProxy's frontend is served by the new process.
        assert httpx.get(f"http://127.0.0.1:{lb.frontend_port}/", timeout=3).status_code == 200
        reader = SystemdUnits(systemd_ns.bus_address)
        final = await reader.status("web.service")
        await reader.close()
        assert final.n_restarts == 0  # systemd did not restart it (Restart=no): haven did, once
        actions = [(a.kind, a.state) for a in store.actions_since(0)]
        assert actions == [
            (ActionKind.DRAIN, ActionState.DONE),
            (ActionKind.MAINT, ActionState.DONE),
            (ActionKind.RESTART, ActionState.DONE),
            (ActionKind.READY, ActionState.DONE),
        ]
        assert timeline[-1][0] < 10
