"""nova-api's deep probe through the reconciler on real parts (systemd 252 in a namespace, HAProxy): a
replica haven restarts during a Keystone outage returns to HAProxy's backend, judged from HAProxy's own
state and a client through its frontend.

The replica is a unit serving as a nova-api does behind keystonemiddleware: ``GET /`` answers; ``GET
/v2.1/os-services`` accepts a token it validated before (its in-process cache), else asks "Keystone"
(here: is the outage marker file absent) and answers keystonemiddleware's 503 when Keystone cannot be
reached. haven keeps the token it fetched before the outage; the restarted process has an empty cache,
so its deep probe fails for Keystone's reason, and the prober judges it by its version document.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

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

from .servers import NamespacedSystemd, RunningHAProxy, free_port, until

pytestmark = [pytest.mark.systemd, pytest.mark.haproxy]
HOST = HostName("ctl-1")

REPLICA = r"""
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, outage = int(sys.argv[1]), sys.argv[2]
cached = set()
KSM_503 = (b"<html><body><h1>503 Service Unavailable</h1>The server is currently unavailable. "
           b"Please try again at a later time.<br /><br />\nThe Keystone service is temporarily "
           b"unavailable.\n</body></html>")
class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def send(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path == "/":
            return self.send(200, b'{"versions": []}')
        token = self.headers.get("X-Auth-Token")
        if token not in cached:
            if os.path.exists(outage):
                return self.send(503, KSM_503)
            cached.add(token)
        self.send(200, b'{"services": []}')
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def keystone() -> Iterator[tuple[int, dict[str, bool]]]:
    """Issues a token while ``up``; 503 to every request once it is not."""
    state = {"up": True}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status = 201 if state["up"] else 503
            self.send_response(status)
            data = json.dumps({"token": {}}).encode()
            if status == 201:
                self.send_header("X-Subject-Token", "tok-1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def rig(
    systemd_ns: NamespacedSystemd,
    haproxy_factory: Callable[..., RunningHAProxy],
    keystone: tuple[int, dict[str, bool]],
) -> AsyncIterator[tuple[NamespacedSystemd, RunningHAProxy, SystemdUnits, Store, Path, dict[str, bool]]]:
    port = free_port()
    script, outage = systemd_ns.folder / "replica.py", systemd_ns.folder / "keystone-down"
    script.write_text(REPLICA)
    systemd_ns.add_unit(
        "nova.service",
        "[Unit]\nDefaultDependencies=no\n[Service]\n"
        f"ExecStart=/usr/bin/python3 {script} {port} {outage}\nRestart=no\n",
    )
    lb = haproxy_factory("nova", {HOST: port}, "/")
    units = SystemdUnits(systemd_ns.bus_address)
    await units.start("nova.service")
    probe = ProbeSpec(
        ProbeKind.NOVA_SERVICES, port, timeout_s=1.5, period_s=0.2, failure_threshold=2, user="admin",
        password_env="PW", auth_url=f"http://127.0.0.1:{keystone[0]}/v3",
    )  # fmt: skip
    spec = ServiceSpec(
        ServiceName("nova-api"), "nova.service", 1, probe=probe, backend=Backend("nova"),
        restart=RestartPolicy(backoff_initial_s=0.5), drain_s=0.5,
    )  # fmt: skip
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=0.2), (Controller(HOST, DomainName("a"), "127.0.0.1"),), (spec,)
    )
    prober = NetworkProber(environ={"PW": "secret"})
    runtime = HAProxyRuntime(lb.socket_path)
    await until(lambda: units.status("nova.service"), lambda s: s.active is UnitActive.ACTIVE, 5)
    await until(lambda: _answers(port), bool, 10)
    with Store.open("sqlite://") as store:
        task = asyncio.create_task(
            Reconciler(config, {HOST: units}, runtime, prober, store, RealClock()).run()
        )
        try:
            await asyncio.sleep(1.0)  # steady: deep probes pass with the token haven keeps
            assert store.actions_since(0) == []
            yield systemd_ns, lb, units, store, outage, keystone[1]
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


async def test_a_replica_restarted_during_a_keystone_outage_returns_to_haproxy(
    rig: tuple[NamespacedSystemd, RunningHAProxy, SystemdUnits, Store, Path, dict[str, bool]],
) -> None:
    systemd, lb, units, store, outage, keystone = rig
    first = await units.status("nova.service")
    keystone["up"] = False
    outage.touch()
    runtime = HAProxyRuntime(lb.socket_path)
    os.kill(systemd.main_pid("nova.service"), signal.SIGKILL)
    started, seen_out = time.monotonic(), False
    while True:
        member = (await runtime.members())[("nova", HOST)]
        unit = await units.status("nova.service")
        fresh = unit.invocation_id != first.invocation_id
        seen_out = seen_out or member.admin is MemberAdmin.MAINT
        if fresh and unit.active is UnitActive.ACTIVE and member.admin is MemberAdmin.READY:
            break
        assert time.monotonic() - started < 20, (member, unit, [a.kind for a in store.actions_since(0)])
        await asyncio.sleep(0.05)
    assert seen_out  # haven took the killed replica out, restarted it, and put the new process back
    assert [a.kind for a in store.actions_since(0)][-2:] == [ActionKind.RESTART, ActionKind.READY]
    assert httpx.get(f"http://127.0.0.1:{lb.frontend_port}/", timeout=3).status_code == 200
