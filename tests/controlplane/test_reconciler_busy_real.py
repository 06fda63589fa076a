"""The reconciler on real systemd 252 (PID 1 of a namespace) and real HTTP probes: of two replicas that
answer no probe, the SIGSTOPped one (hung: no CPU time) is restarted at once, the spinning one (busy:
its CPU time advances) is not before its ``busy_grace_s``. Judged from systemd's own InvocationID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

import pytest

from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.controlplane.reconciler import Reconciler
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    ActionKind,
    Controller,
    ControlPlaneSettings,
    DomainName,
    ProbeKind,
    ProbeSpec,
    ReplicaHealth,
    ServiceName,
    ServiceSpec,
    UnitActive,
)
from haven.domain.ids import HostName
from haven.store import Store

from .servers import NamespacedSystemd, free_port, http_unit, until

pytestmark = pytest.mark.systemd
HOST = HostName("ctl-1")


def spinning_unit(port: int) -> str:
    """Listens (the kernel accepts connections) but never answers: it spins, as a replica in a loop."""
    code = (
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1', {port})); s.listen(128)\\nwhile True: pass"
    )
    return f'[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/usr/bin/python3 -c "{code}"\n'


def spec(name: str, port: int) -> ServiceSpec:
    probe = ProbeSpec(
        ProbeKind.HTTP, port, "/", timeout_s=0.3, period_s=0.2, failure_threshold=2, startup_grace_s=1.0,
        busy_grace_s=60.0,
    )  # fmt: skip
    return ServiceSpec(ServiceName(name), f"{name}.service", 1, probe=probe)


async def test_the_hung_replica_is_restarted_the_busy_one_is_not(systemd_ns: NamespacedSystemd) -> None:
    hung_port, busy_port = free_port(), free_port()
    systemd_ns.add_unit("hung.service", http_unit(hung_port))
    systemd_ns.add_unit("busy.service", spinning_unit(busy_port))
    units = SystemdUnits(systemd_ns.bus_address)
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=0.2),
        (Controller(HOST, DomainName("rack-a"), "127.0.0.1"),),
        (spec("hung", hung_port), spec("busy", busy_port)),
    )
    prober = NetworkProber()
    try:
        for unit in ("hung.service", "busy.service"):
            await units.start(unit)
        hung0 = await until(lambda: units.status("hung.service"), lambda s: s.active is UnitActive.ACTIVE, 5)
        busy0 = await until(lambda: units.status("busy.service"), lambda s: s.active is UnitActive.ACTIVE, 5)
        pid = systemd_ns.main_pid("hung.service")
        os.kill(pid, signal.SIGSTOP)  # port still open, nobody answers, no CPU spent
        with Store.open("sqlite://") as store:
            reconciler = Reconciler(config, {HOST: units}, None, prober, store, RealClock())
            task = asyncio.create_task(reconciler.run())
            try:
                started = time.monotonic()
                restarted = await until(
                    lambda: units.status("hung.service"),
                    lambda s: s.invocation_id != hung0.invocation_id and s.active is UnitActive.ACTIVE,
                    15,
                )
                took = time.monotonic() - started
                await asyncio.sleep(2.0)  # the busy one has failed its probes for seconds by now
                plan = reconciler.last_plan
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            actions = [(a.kind, a.service) for a in store.actions_since(0)]
        assert restarted.invocation_id != hung0.invocation_id and took < 10
        assert (ActionKind.RESTART, "hung") in actions
        assert (await units.status("busy.service")).invocation_id == busy0.invocation_id
        assert (ActionKind.RESTART, "busy") not in actions
        assert plan is not None
        assert ("busy", HOST, ReplicaHealth.UNHEALTHY) in plan.health  # its probes do fail
        assert [h.host for h in plan.holds if h.kind == "busy" and h.service == "busy"] == [HOST]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        await prober.close()
        await units.close()
