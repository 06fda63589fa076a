"""Keystone's own deep probe (``kind = "keystone"``) with haven's probe account refused (a wrong or rotated
password in haven's environment): Keystone works, haven's configuration does not. Through the reconciler
(the real prober, a stand-in Keystone on two addresses, simulated systemd and HAProxy), nothing is drained
or restarted for it, one ``probe_credentials`` alert says so, and it ends once Keystone accepts the
password again. Ground truth: the simulated HAProxy's and systemd's own records, the store's alerts."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.drivers.sim import SimBalancer, SimUnit, SimUnits
from haven.controlplane.reconciler import Reconciler
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    Controller,
    ControlPlaneSettings,
    DomainName,
    MemberAdmin,
    ProbeKind,
    ProbeSpec,
    ServiceName,
    ServiceSpec,
    UnitActive,
)
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.store import Store
from servers.process import free_port

ADDRESSES = {HostName("ctl-1"): "127.0.1.211", HostName("ctl-2"): "127.0.1.212"}
UNAUTHORIZED = {
    "error": {"code": 401, "title": "Unauthorized",
              "message": "The request you have made requires authentication."}
}  # fmt: skip


@dataclasses.dataclass
class Keystone:
    password: str = "rotated"  # haven's environment says "secret"
    refuse_at: tuple[str, ...] = ()  # replicas that refuse every password (a stale database of their own)
    issued: int = 0


@pytest.fixture
def keystone() -> Iterator[tuple[Keystone, int]]:
    """Keystone's API on every address: POST /v3/auth/tokens, GET /v3/auth/tokens, GET / (its 300)."""
    state = Keystone()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            refuses = str(self.server.server_address[0]) in state.refuse_at
            if refuses or body["auth"]["identity"]["password"]["user"]["password"] != state.password:
                self._send(401, UNAUTHORIZED)
                return
            state.issued += 1
            self._send(201, {"token": {}}, {"X-Subject-Token": f"tok-{state.issued}"})

        def do_GET(self) -> None:
            if self.path == "/v3/auth/tokens" and self.headers.get("X-Subject-Token", "").startswith("tok-"):
                self._send(200, {"token": {}})
            elif self.path == "/":
                self._send(300, {"versions": {"values": [{"id": "v3.14", "status": "stable"}]}})
            else:
                self._send(404, {})

    servers: list[ThreadingHTTPServer] = []
    for attempt in range(5):
        port = free_port()
        try:
            for address in ADDRESSES.values():
                servers.append(ThreadingHTTPServer((address, port), Handler))
            break
        except OSError:
            for server in servers:
                server.server_close()
            servers.clear()
            if attempt == 4:
                raise
    for server in servers:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield state, port
    for server in servers:
        server.shutdown()
        server.server_close()


def _rig(
    port: int, startup_grace_s: float
) -> tuple[ServiceSpec, ControlPlaneConfig, dict[HostName, SimUnits], SimBalancer, NetworkProber]:
    """Keystone on ctl-1 and ctl-2 (the stand-in's two addresses) probed with haven's account, its units
    on simulated systemd, its members in a simulated HAProxy, and the real prober."""
    probe = ProbeSpec(
        ProbeKind.KEYSTONE, port, timeout_s=1.0, period_s=0.1, failure_threshold=2,
        startup_grace_s=startup_grace_s, user="haven", project="service", password_env="HAVEN_PROBE_PASSWORD",
    )  # fmt: skip
    spec = dataclasses.replace(CATALOGUE[ServiceName("keystone")], probe=probe, depends_on=())
    config = ControlPlaneConfig(
        ControlPlaneSettings(),
        tuple(Controller(h, DomainName(h), address=a) for h, a in ADDRESSES.items()),
        (spec,),
    )
    hosts = {
        h: SimUnits(time.time, {spec.unit: SimUnit(UnitActive.ACTIVE, time.time() - 3600)}) for h in ADDRESSES
    }
    lb = SimBalancer({("keystone", h): MemberAdmin.READY for h in ADDRESSES})
    prober = NetworkProber(environ={"HAVEN_PROBE_PASSWORD": "secret"})
    return spec, config, hosts, lb, prober


async def test_keystone_refusing_havens_probe_password_drains_and_restarts_nothing(
    keystone: tuple[Keystone, int],
) -> None:
    state, port = keystone
    spec, config, hosts, lb, prober = _rig(port, startup_grace_s=60.0)

    def credential_alerts() -> list[Alert]:
        return [a for a in store.list_alerts() if a.kind is AlertKind.PROBE_CREDENTIALS]

    with Store.open("sqlite://") as store:
        reconciler = Reconciler(config, dict(hosts), lb, prober, store, RealClock())
        try:
            deadline = time.monotonic() + 3.0  # 30 probe periods, 15 failure thresholds
            while time.monotonic() < deadline:
                await reconciler.run_pass()
            drained, restarts = (
                list(lb.changes),
                [u.units[spec.unit].restarts_by_haven for u in hosts.values()],
            )
            refused = credential_alerts()
            others = [
                (a.kind, a.host) for a in store.list_alerts() if a.kind is not AlertKind.PROBE_CREDENTIALS
            ]
            replicas = store.list_replicas()
            state.password = "secret"  # the operator gives haven the account's password
            deadline = time.monotonic() + 15.0
            while credential_alerts():
                assert time.monotonic() < deadline, store.list_alerts()
                await reconciler.run_pass()
        finally:
            await reconciler.aclose()
            await prober.close()
    assert drained == [] and restarts == [0, 0], (drained, restarts, replicas)
    assert others == [], others  # neither keystone's service_down nor a mass-failure hold
    [alert] = refused
    assert alert.host == "haven@keystone" and "'haven'" in alert.message
    assert "HAVEN_PROBE_PASSWORD" in alert.message and "keystone" in alert.message
    assert all("version document only" in r.probe and "401" in r.probe for r in replicas), replicas
    assert lb.changes == [] and [u.units[spec.unit].restarts_by_haven for u in hosts.values()] == [0, 0]


async def test_one_keystone_replica_refusing_what_the_other_accepts_is_that_replicas_failure(
    keystone: tuple[Keystone, int],
) -> None:
    """keystone@ctl-2 answers 401 to the right password while keystone@ctl-1 issues tokens: not haven's
    configuration but ctl-2's fault. It is taken out of HAProxy (the simulated balancer's own record) and
    no probe_credentials alert is raised (review of 69d434c: before, it stayed in forever and the alert
    flapped with whichever replica's probe ended last)."""
    state, port = keystone
    state.password, state.refuse_at = "secret", (ADDRESSES[HostName("ctl-2")],)
    _spec, config, hosts, lb, prober = _rig(port, startup_grace_s=0.0)
    with Store.open("sqlite://") as store:
        reconciler = Reconciler(config, dict(hosts), lb, prober, store, RealClock())
        try:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and lb.admin[("keystone", "ctl-2")] is MemberAdmin.READY:
                await reconciler.run_pass()
            alerts = [(a.kind, a.host) for a in store.list_alerts()]
        finally:
            await reconciler.aclose()
            await prober.close()
    assert lb.admin[("keystone", "ctl-2")] is not MemberAdmin.READY, (lb.changes, alerts)
    assert lb.admin[("keystone", "ctl-1")] is MemberAdmin.READY, lb.changes
    assert not [a for a in alerts if a[0] is AlertKind.PROBE_CREDENTIALS], alerts
