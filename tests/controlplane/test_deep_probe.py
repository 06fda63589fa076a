"""nova-api's deep probe (``nova_services``) against small real HTTP servers that answer as Keystone
(``POST /v3/auth/tokens``) and as nova-api replicas (``GET /`` at once; ``GET /v2.1/os-services`` with a
token, as slow as told: a restarted replica's first real requests are cold).

Each replica checks a token as keystonemiddleware's auth_token does (keystonemiddleware 13.0.1, the HA
lab's): from its own in-process cache (``token_cache_time``, 300 s; the lab sets no memcached), else by
asking Keystone, and when Keystone cannot be reached it answers 503 (webob's text, "The Keystone service
is temporarily unavailable."), whatever the token. So a Keystone outage fails a replica's deep probe as
soon as that replica's cache of the token ends, and a restarted replica's at once.

What the HA lab needs of the probe: a cold replica fails it while its version document (HAProxy's check)
answers; the token is fetched once for every replica's probes, not per probe; a failure that is
Keystone's (no token to be had, keystonemiddleware's 503, a refused token Keystone cannot replace) is
not the replica's: its probe falls back to the version document and says so. Judged also through the
planner: during a Keystone outage no nova-api replica is drained or restarted for it, and one haven
restarted during the outage returns to the load balancer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig, parse_controlplane
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.drivers.service_probes import TokenCache
from haven.controlplane.drivers.sim import SimBalancer, SimUnit, SimUnits
from haven.controlplane.planner import plan
from haven.controlplane.reconciler import Reconciler
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    ActionKind,
    Controller,
    ControlPlaneSettings,
    DomainName,
    MemberAdmin,
    MemberStatus,
    ProbeKind,
    ProbeResult,
    ProbeSpec,
    ReplicaHealth,
    ReplicaView,
    ServiceName,
    UnitActive,
    UnitStatus,
)
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.lab import ha
from haven.store import Store
from servers.process import free_port

# keystonemiddleware's answer when it cannot validate a token with Keystone: what the lab venv's
# keystonemiddleware 13.0.1 AuthProtocol, its Keystone's port refused, answered a request with httpx's
# Accept (*/*): webob's HTML page of HTTPServiceUnavailable('The Keystone service is temporarily
# unavailable.').
KSM_503 = (
    "<html>\n <head>\n  <title>503 Service Unavailable</title>\n </head>\n <body>\n  <h1>503 Service "
    "Unavailable</h1>\n  The server is currently unavailable. Please try again at a later time.<br /><br />"
    "\nThe Keystone service is temporarily unavailable.\n\n\n </body>\n</html>"
)
TIMES = {"issued_at": "2026-12-07T08:00:00.000000Z", "expires_at": "2026-12-07T09:00:00.000000Z"}
# Keystone's answer to a password it refuses (keystone 26, the lab's: the same for a disabled user)
UNAUTHORIZED = {
    "error": {"code": 401, "title": "Unauthorized",
              "message": "The request you have made requires authentication."}
}  # fmt: skip


@dataclass
class Keystone:
    up: bool = True
    issues: bool = True  # False: it validates tokens but issues none (a password refused, its frontend)
    hang_s: float = 0.0  # > 0: hung (accepts, answers nothing for this long), its clients wait with it
    password: str | None = None  # set: any other password gets Keystone's 401 (the probes send "secret")
    issued: int = 0
    valid: set[str] = field(default_factory=set)  # the tokens it validates
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Replica:
    """One nova-api replica: its keystonemiddleware's token cache, os-services' delay or own status."""

    keystone: Keystone
    address: str = "127.0.0.1"
    services_delay_s: float = 0.0
    services_status: int = 200  # Nova's own answer once the token is checked
    cache_s: float = 300.0  # token_cache_time
    cached: dict[str, float] = field(default_factory=dict)  # token -> when it was validated
    refuses_all: bool = False  # a replica that answers 401 to any token (its own auth broken)
    cannot_reach_keystone: bool = False  # its own [keystone_authtoken] broken: 503 while Keystone is up

    def restart(self) -> None:
        self.cached.clear()  # the cache is in-process

    def check(self, token: str | None) -> int:
        """keystonemiddleware's verdict: 0 (accepted), 401 or 503."""
        now = time.monotonic()
        if token is not None and now - self.cached.get(token, -1e9) < self.cache_s:
            return 0
        if self.keystone.hang_s:
            time.sleep(self.keystone.hang_s)  # no http_connect_timeout in the lab's [keystone_authtoken]
            return 503
        if not self.keystone.up or self.cannot_reach_keystone:
            return 503
        if token not in self.keystone.valid or self.refuses_all:
            return 401
        self.cached[token] = now
        return 0


@pytest.fixture
def serve() -> Iterator[Callable[[Replica, int], None]]:
    servers: list[ThreadingHTTPServer] = []

    def start(replica: Replica, port: int) -> None:
        keystone = replica.keystone

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # Keystone
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                time.sleep(keystone.hang_s)
                if not keystone.up or not keystone.issues:
                    self._send(503, {"error": "keystone down"})
                    return
                sent = body["auth"]["identity"]["password"]["user"]["password"]
                if keystone.password is not None and sent != keystone.password:
                    self._send(401, UNAUTHORIZED)  # a wrong password, a disabled or unknown user
                    return
                with keystone.lock:
                    keystone.issued += 1
                    token = f"tok-{keystone.issued}"
                    keystone.valid.add(token)
                self._send(201, {"token": TIMES}, {"X-Subject-Token": token})

            def do_GET(self) -> None:  # nova-api
                if self.path == "/":
                    self._send(200, {"versions": []})
                elif self.path == "/v2.1/os-services":
                    verdict = replica.check(self.headers.get("X-Auth-Token"))
                    if verdict == 503:
                        self._send(503, KSM_503, {"Content-Type": "text/html"})
                    elif verdict == 401:
                        self._send(401, {"error": "unauthorized"})
                    elif replica.services_status != 200:
                        self._send(replica.services_status, {"computeFault": {"message": "down"}})
                    else:
                        time.sleep(replica.services_delay_s)
                        self._send(200, {"services": [{"binary": "nova-conductor"}]})
                else:
                    self._send(404, {})

        server = ThreadingHTTPServer((replica.address, port), Handler)
        servers.append(server)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake(serve: Callable[[Replica, int], None]) -> tuple[Replica, int]:
    replica, port = Replica(Keystone()), free_port()
    serve(replica, port)
    return replica, port


def _spec(port: int, timeout_s: float = 1.0, address: str = "127.0.0.1") -> ProbeSpec:
    return ProbeSpec(
        ProbeKind.NOVA_SERVICES, port, timeout_s=timeout_s, user="admin", project="admin",
        password_env="PW", auth_url=f"http://{address}:{port}/v3", failure_threshold=2,
        startup_grace_s=60.0,
    )  # fmt: skip


def _prober(renew_s: float = 600.0, clock: Callable[[], float] = time.time) -> NetworkProber:
    return NetworkProber(wall_clock=clock, environ={"PW": "secret"}, tokens=TokenCache(renew_s=renew_s))


async def test_a_cold_replica_fails_the_deep_probe_while_its_version_document_answers(
    fake: tuple[Replica, int],
) -> None:
    replica, port = fake
    prober = _prober()
    try:
        replica.services_delay_s = 1.5  # a restarted nova-api's first real request
        cold = await prober.probe("127.0.0.1", _spec(port))
        shallow = await prober.probe("127.0.0.1", ProbeSpec(ProbeKind.HTTP, port, "/", timeout_s=1.0))
        replica.services_delay_s = 0.0
        warm = await prober.probe("127.0.0.1", _spec(port))
    finally:
        await prober.close()
    assert not cold.ok and "no answer within" in cold.detail
    assert shallow.ok  # what HAProxy's check (GET /) and the lab's former probe saw
    assert warm.ok and warm.detail == "os-services: 1 services"


async def test_every_replicas_probe_shares_one_token_fetched_once(fake: tuple[Replica, int]) -> None:
    replica, port = fake
    prober = _prober()
    try:
        for _ in range(3):  # a pass probes both replicas at once, pass after pass
            results = await asyncio.gather(*(prober.probe("127.0.0.1", _spec(port)) for _ in range(2)))
            assert all(r.ok for r in results), results
    finally:
        await prober.close()
    assert replica.keystone.issued == 1


async def test_keystone_down_is_not_the_replicas_failure_before_or_after_its_token_cache_ends(
    fake: tuple[Replica, int],
) -> None:
    replica, port = fake
    prober = _prober(renew_s=0.0)  # every probe wants a new token
    try:
        assert (await prober.probe("127.0.0.1", _spec(port))).ok
        replica.keystone.up = False
        cached = await prober.probe("127.0.0.1", _spec(port))  # renewal fails; the replica's cache has it
        replica.restart()  # or its 300 s are over: keystonemiddleware must ask Keystone, and cannot
        expired = await prober.probe("127.0.0.1", _spec(port))
        fresh = _prober()  # haven started during the outage: no token yet
        try:
            none = await fresh.probe("127.0.0.1", _spec(port))
        finally:
            await fresh.close()
    finally:
        await prober.close()
    assert cached.ok and cached.detail == "os-services: 1 services"
    assert expired.ok and "version document only" in expired.detail, expired.detail
    assert "503" in expired.detail and "Keystone" in expired.detail
    assert none.ok and "version document only" in none.detail and "503" in none.detail


async def test_a_503_that_is_not_keystonemiddlewares_fails_the_replica(fake: tuple[Replica, int]) -> None:
    replica, port = fake
    prober = _prober()
    try:
        replica.services_status = 503  # Nova's own (its database, a cell), Keystone up
        result = await prober.probe("127.0.0.1", _spec(port))
    finally:
        await prober.close()
    assert not result.ok and "503" in result.detail, result.detail


async def test_a_refused_token_is_replaced_at_once_unless_keystone_cannot(fake: tuple[Replica, int]) -> None:
    replica, port = fake
    prober = _prober()
    try:
        assert (await prober.probe("127.0.0.1", _spec(port))).ok
        replica.keystone.valid.clear()  # revoked (or expired early)
        replica.restart()
        renewed = await prober.probe("127.0.0.1", _spec(port))  # 401, a new token, os-services again
        issued = replica.keystone.issued
        replica.keystone.valid.clear()
        replica.restart()
        replica.keystone.issues = False  # 401 to the kept token, and Keystone issues no other
        unrenewable = await prober.probe("127.0.0.1", _spec(port))
        replica.keystone.issues = True
        replica.refuses_all = True
        refusing = await prober.probe("127.0.0.1", _spec(port))
    finally:
        await prober.close()
    assert renewed.ok and renewed.detail == "os-services: 1 services" and issued == 2
    assert unrenewable.ok and "version document only" in unrenewable.detail, unrenewable.detail
    assert "401, then no token from Keystone: POST /v3/auth/tokens: 503" in unrenewable.detail
    assert not refusing.ok and "401" in refusing.detail, refusing.detail


async def test_keystonemiddlewares_503_with_keystone_up_is_the_replicas_failure(
    fake: tuple[Replica, int],
) -> None:
    """keystonemiddleware answers the same 503 when the replica's own service credentials, auth_url or
    network to Keystone are wrong: with Keystone issuing tokens, the replica cannot serve and fails."""
    replica, port = fake
    prober = _prober()
    try:
        replica.cannot_reach_keystone = True
        result = await prober.probe("127.0.0.1", _spec(port))
    finally:
        await prober.close()
    assert not result.ok and "the replica's own validation fails" in result.detail, result.detail


async def test_a_hung_keystone_is_not_the_replicas_failure_but_a_hung_replica_is(
    fake: tuple[Replica, int],
) -> None:
    """A hung Keystone (accepting, never answering) hangs the replica's token validation too: the
    os-services call times out, Keystone gives haven no token either, so the version document judges
    the replica. A replica that times out while Keystone answers is hung or cold: it fails (the cold
    case above)."""
    replica, port = fake
    prober = _prober()
    try:
        assert (await prober.probe("127.0.0.1", _spec(port, timeout_s=0.5))).ok  # a token in hand
        replica.restart()  # its cache of that token is gone: it must ask Keystone
        replica.keystone.hang_s = 2.0
        result = await prober.probe("127.0.0.1", _spec(port, timeout_s=0.5))
    finally:
        await prober.close()
    assert result.ok and "version document only" in result.detail, result.detail
    assert "no answer within 0.5 s" in result.detail and "Keystone issues no token either" in result.detail


async def test_keystone_refusing_havens_own_password_is_said_not_taken_for_keystone_down(
    fake: tuple[Replica, int],
) -> None:
    """A 401 to haven's probe account is an operator's mistake (a wrong or rotated password, a disabled
    user): the replica is judged by its version document, and the result says the account was refused
    (the reconciler's alert). Keystone down (503) stays as it was: no such word."""
    replica, port = fake
    replica.keystone.password = "rotated"  # haven still sends "secret"
    prober = _prober(renew_s=0.0)
    try:
        refused = await prober.probe("127.0.0.1", _spec(port))
        replica.keystone.password = None  # the operator fixed it
        fixed = await prober.probe("127.0.0.1", _spec(port))
        replica.keystone.password = "rotated again"  # a token in hand, its renewal refused
        kept = await prober.probe("127.0.0.1", _spec(port))
        replica.keystone.up = False
        down = await prober.probe("127.0.0.1", _spec(port))  # Keystone's outage proves nothing either way
        replica.keystone.password, replica.keystone.up = None, True
        assert not (await prober.probe("127.0.0.1", _spec(port))).credentials_refused
        replica.keystone.up = False
        replica.restart()
        down_cold = await prober.probe("127.0.0.1", _spec(port))
    finally:
        await prober.close()
    assert refused.ok and "version document only" in refused.detail, refused.detail
    assert "refuses haven's probe account 'admin'" in refused.detail and "401" in refused.detail
    assert refused.credentials_refused
    assert fixed.ok and fixed.detail == "os-services: 1 services" and not fixed.credentials_refused
    assert kept.ok and kept.detail == "os-services: 1 services" and kept.credentials_refused
    assert down.ok and down.credentials_refused  # still: Keystone's latest word on it was the 401
    assert down_cold.ok and "version document only" in down_cold.detail and "503" in down_cold.detail
    assert not down_cold.credentials_refused


def test_the_ha_labs_nova_api_depends_on_keystone(tmp_path: Path) -> None:
    """The lab's haven.toml names nova-api's probe only: the catalogue's depends_on, Keystone among
    them, holds for it (rule 4's "dependency has no healthy replica")."""
    controllers = [ha.Controller(f"ctl-{n}", f"127.0.1.{n}", tmp_path / f"ctl-{n}", 0) for n in (1, 2)]
    ports = {api.service: 20000 + n for n, api in enumerate(ha.APIS)}
    frontends = {api.service: 21000 + n for n, api in enumerate(ha.APIS)}
    lab = ha.HaLab(tmp_path, controllers, ha.APIS, ports, frontends, {})
    section = tomllib.loads(ha.controlplane_toml(lab))["controlplane"]
    specs = {s.name: s for s in parse_controlplane(section, "the HA lab").services}
    assert ServiceName("keystone") in specs
    assert ServiceName("keystone") in specs[ServiceName("nova-api")].depends_on


# ---- through the planner: two replicas at 127.0.1.201 and .202, on one port ------------------------

NOW = 100_000.0
ADDRESSES = {HostName("ctl-1"): "127.0.1.201", HostName("ctl-2"): "127.0.1.202"}
UP = MemberStatus(MemberAdmin.READY, "up")
KEYSTONE = CATALOGUE[ServiceName("keystone")]  # its GET /v3 passes while its database is down


def _keystone_views() -> list[ReplicaView]:
    unit = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 3600)
    return [
        ReplicaView(KEYSTONE.name, h, DomainName(h), unit, (ProbeResult(True, NOW - 1),), UP)
        for h in ADDRESSES
    ]


@pytest.fixture
def pair(serve: Callable[[Replica, int], None]) -> tuple[dict[HostName, Replica], int]:
    keystone = Keystone()
    for attempt in range(5):
        port = free_port()
        replicas = {h: Replica(keystone, a) for h, a in ADDRESSES.items()}
        try:
            for replica in replicas.values():
                serve(replica, port)
            return replicas, port
        except OSError:
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


async def _probe_all(
    replicas: dict[HostName, Replica], port: int, prober: NetworkProber, rounds: int
) -> dict[HostName, tuple[ProbeResult, ...]]:
    spec = _spec(port, address=ADDRESSES[HostName("ctl-1")])
    results: dict[HostName, list[ProbeResult]] = {h: [] for h in replicas}
    for _ in range(rounds):
        for host in replicas:
            results[host].append(await prober.probe(ADDRESSES[host], spec))
    return {h: tuple(r) for h, r in results.items()}


async def test_keystone_down_and_one_replicas_cache_ended_no_replica_is_drained_or_restarted(
    pair: tuple[dict[HostName, Replica], int],
) -> None:
    replicas, port = pair
    ticks = itertools.count(NOW - 10)
    prober = _prober(clock=lambda: float(next(ticks)))
    try:
        await _probe_all(replicas, port, prober, 1)  # a token kept, each replica has it cached
        next(iter(replicas.values())).keystone.up = False
        replicas[HostName("ctl-1")].restart()  # its cache of the token ended first (each its own moment)
        probes = await _probe_all(replicas, port, prober, 3)
    finally:
        await prober.close()
    nova = dataclasses.replace(CATALOGUE[ServiceName("nova-api")], probe=_spec(port))
    unit = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 3600)
    views = [ReplicaView(nova.name, h, DomainName(h), unit, probes[h], UP) for h in replicas]
    result = plan([KEYSTONE, nova], [*_keystone_views(), *views], {}, NOW, ControlPlaneSettings())
    assert [a for a in result.actions if a.service == nova.name] == [], probes
    assert {(h, v) for s, h, v in result.health if s == nova.name} == {
        (h, ReplicaHealth.HEALTHY) for h in replicas
    }


async def test_a_replica_restarted_during_a_keystone_outage_returns_to_the_load_balancer(
    pair: tuple[dict[HostName, Replica], int],
) -> None:
    replicas, port = pair
    ticks = itertools.count(NOW - 10)
    prober = _prober(clock=lambda: float(next(ticks)))
    restarted = HostName("ctl-2")
    try:
        await _probe_all(replicas, port, prober, 1)
        next(iter(replicas.values())).keystone.up = False
        replicas[restarted].restart()  # haven restarted it (killed); a new process, an empty cache
        probes = await _probe_all(replicas, port, prober, 3)
    finally:
        await prober.close()
    nova = dataclasses.replace(CATALOGUE[ServiceName("nova-api")], probe=_spec(port))
    old = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 3600)
    new = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 20)
    out = MemberStatus(MemberAdmin.MAINT, "down")
    views = [
        ReplicaView(nova.name, HostName("ctl-1"), DomainName("ctl-1"), old, probes[HostName("ctl-1")], UP),
        ReplicaView(
            nova.name, restarted, DomainName("ctl-2"), new, probes[restarted], out,
            restarts=(NOW - 21,), held_out=True,
        ),
    ]  # fmt: skip
    result = plan([KEYSTONE, nova], [*_keystone_views(), *views], {}, NOW, ControlPlaneSettings())
    actions = [(a.kind, a.host) for a in result.actions if a.service == nova.name]
    assert actions == [(ActionKind.READY, restarted)], (actions, probes[restarted])


async def test_a_refused_probe_password_is_one_alert_and_no_action_until_keystone_accepts_it(
    pair: tuple[dict[HostName, Replica], int],
) -> None:
    """Through the reconciler (real prober, simulated systemd and HAProxy): Keystone refusing haven's
    probe account raises one ``probe_credentials`` alert naming the account and where its password comes
    from, drains and restarts nothing, and ends once Keystone accepts the password again."""
    replicas, port = pair
    keystone = next(iter(replicas.values())).keystone
    keystone.password = "rotated"
    spec = dataclasses.replace(_spec(port, address=ADDRESSES[HostName("ctl-1")]), period_s=0.1)
    nova = dataclasses.replace(CATALOGUE[ServiceName("nova-api")], probe=spec, depends_on=())
    config = ControlPlaneConfig(
        ControlPlaneSettings(),
        tuple(Controller(h, DomainName(h), address=a) for h, a in ADDRESSES.items()),
        (nova,),
    )
    hosts = {
        h: SimUnits(time.time, {nova.unit: SimUnit(UnitActive.ACTIVE, time.time() - 3600)}) for h in ADDRESSES
    }
    lb = SimBalancer({("nova_api", h): MemberAdmin.READY for h in ADDRESSES})

    def credential_alerts() -> list[Alert]:
        return [a for a in store.list_alerts() if a.kind is AlertKind.PROBE_CREDENTIALS]

    async def passes_until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 15.0
        while not done():
            assert time.monotonic() < deadline, store.list_replicas()
            await reconciler.run_pass()

    with Store.open("sqlite://") as store:
        prober = _prober(renew_s=0.0)
        reconciler = Reconciler(config, dict(hosts), lb, prober, store, RealClock())
        try:
            await passes_until(lambda: bool(credential_alerts()))
            for _ in range(5):
                await reconciler.run_pass()
            [alert] = credential_alerts()
            assert alert.host == f"admin@{spec.auth_url}"
            assert "'admin'" in alert.message and "PW" in alert.message and "nova-api" in alert.message
            assert "version document" in alert.message
            assert all("version document only" in r.probe for r in store.list_replicas()), (
                store.list_replicas()
            )
            keystone.password = None  # the operator sets the password haven has
            await passes_until(lambda: not credential_alerts())
            await passes_until(lambda: all(r.probe.startswith("os-services") for r in store.list_replicas()))
        finally:
            await reconciler.aclose()
            await prober.close()
    assert lb.changes == []  # never drained
    assert [u.units[nova.unit].restarts_by_haven for u in hosts.values()] == [0, 0]
