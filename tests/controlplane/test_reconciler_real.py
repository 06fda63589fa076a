"""The reconciler end to end on real parts: systemd 252 (PID 1 of a namespace), HAProxy, HTTP probes.

A unit is killed (SIGKILL) or hung (SIGSTOP: its port still accepts connections); judged from systemd's
and HAProxy's own state, sampled every 50 ms while the reconciler runs on the real clock: the replica
leaves the backend before it is restarted, is restarted once (by haven: Restart=no), and is back in the
backend, serving clients, once its probe passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
from haven.domain.incidents import AlertKind
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
    first = await until(lambda: units.status("web.service"), lambda s: s.active is UnitActive.ACTIVE, 5)
    # systemd calls a simple unit active once it is exec'd: the server answers a little later (a clean
    # CI run's first probes ran before it listened, and haven drained and readied it). Serving first.
    await until(lambda: _answers(port), bool, 10)
    with Store.open("sqlite://") as store:
        task = asyncio.create_task(
            Reconciler(config, {HOST: units}, runtime, prober, store, RealClock()).run()
        )
        try:
            await asyncio.sleep(1.0)  # steady: probes pass, nothing to do
            assert store.actions_since(0) == []
            yield Rig(systemd_ns, lb, units, runtime, store, first)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await prober.close()
            await units.close()


async def _answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=0.5) as client:
            await client.get(f"http://127.0.0.1:{port}/")
    except httpx.HTTPError:
        return False
    return True


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


async def test_a_crash_looping_replica_is_given_up_with_an_alert_and_replaced_in_another_domain(
    systemd_hosts: Callable[[], NamespacedSystemd],
    haproxy_factory: Callable[[str, dict[str, tuple[str, int]]], RunningHAProxy],
) -> None:
    """Two controllers (two systemd namespaces, rack-a and rack-b), one replica wanted, on ctl-1."""
    port = free_port()
    ips = {HostName("ctl-1"): "127.0.0.1", HostName("ctl-2"): "127.0.0.2"}
    systemds = {host: systemd_hosts() for host in ips}
    for host, sd in systemds.items():
        sd.add_unit("web.service", http_unit(port, bind=ips[host]))
    lb = haproxy_factory("web", {host: (ip, port) for host, ip in ips.items()})  # both members ready
    runtime = HAProxyRuntime(lb.socket_path)
    units = {host: SystemdUnits(sd.bus_address) for host, sd in systemds.items()}
    try:
        ctl1, ctl2 = units[HostName("ctl-1")], units[HostName("ctl-2")]
        await ctl1.start("web.service")
        policy = RestartPolicy(backoff_initial_s=0.2, crash_loop_max_restarts=3, crash_loop_window_s=60)
        spec = ServiceSpec(
            ServiceName("web"),
            "web.service",
            1,
            probe=ProbeSpec(ProbeKind.HTTP, port, "/", timeout_s=0.5, period_s=0.2, failure_threshold=2),
            backend=Backend("web"),
            restart=policy,
            drain_s=0.2,
        )
        controllers = tuple(Controller(h, DomainName(f"rack-{h[-1]}"), ip) for h, ip in ips.items())
        config = ControlPlaneConfig(ControlPlaneSettings(pass_interval_s=0.2), controllers, (spec,))
        prober = NetworkProber()

        async def member(host: str) -> MemberAdmin:
            return (await runtime.members())[("web", host)].admin

        with Store.open("sqlite://") as store:
            task = asyncio.create_task(Reconciler(config, units, runtime, prober, store, RealClock()).run())
            try:
                # ctl-2's member is stale (its unit is not running): haven takes it out; ctl-1 serves.
                await until(lambda: member("ctl-2"), lambda admin: admin is MemberAdmin.MAINT, 5)
                # ctl-1 serves (out of the backend a moment if its first probes ran before it listened).
                await until(lambda: member("ctl-1"), lambda admin: admin is MemberAdmin.READY, 5)

                systemds[HostName("ctl-1")].add_unit("web.service", "[Unit]\nDefaultDependencies=no\n"
                                                     "[Service]\nExecStart=/bin/false\n")  # fmt: skip
                os.kill(systemds[HostName("ctl-1")].main_pid("web.service"), signal.SIGKILL)
                await until(lambda: ctl2.status("web.service"), lambda s: s.active is UnitActive.ACTIVE, 15)
                await until(lambda: member("ctl-2"), lambda admin: admin is MemberAdmin.READY, 10)
                await asyncio.sleep(1.5)  # haven must not try ctl-1 again within the window
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await prober.close()

            # From systemd and HAProxy: ctl-1 left failed and out of the backend; ctl-2 runs and serves.
            assert (await ctl1.status("web.service")).active is UnitActive.FAILED
            assert await member("ctl-1") is MemberAdmin.MAINT
            assert httpx.get(f"http://127.0.0.1:{lb.frontend_port}/", timeout=3).status_code == 200
            restarts = [a.created_at for a in store.actions_since(0) if a.kind is ActionKind.RESTART]
            assert len(restarts) == 3, store.actions_since(0)
            gaps = [b - a for a, b in itertools.pairwise(restarts)]
            assert 0.2 <= gaps[0] < 1.0 and 0.4 <= gaps[1] < 1.5 and gaps[1] > gaps[0]  # back-off grows
            alerts = [a for a in store.list_alerts() if a.kind is AlertKind.REPLICA_CRASH_LOOP]
            assert [a.host for a in alerts] == ["web@ctl-1"] and "3 times" in alerts[0].message
            starts = [(a.host, a.state) for a in store.actions_since(0) if a.kind is ActionKind.START]
            assert starts == [("ctl-2", ActionState.DONE)]
    finally:
        for u in units.values():
            await u.close()
