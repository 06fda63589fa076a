"""nova-api's deep probe (``nova_services``) against a small real HTTP server that answers as Keystone
(``POST /v3/auth/tokens``) and as a nova-api replica (``GET /`` at once; ``GET /v2.1/os-services`` with
a token, as slow as told: a restarted replica's first real requests are cold).

What the HA lab's kill -9 drill needs of it: a cold replica fails the deep probe while its version
document (HAProxy's check) answers; the token is fetched once for every replica's probes, not per probe;
a Keystone outage after a token was kept, or before any, does not fail the replica's probe.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.drivers.service_probes import TokenCache
from haven.domain.controlplane import ProbeKind, ProbeSpec
from servers.process import free_port


@dataclass
class Fake:
    """What the server does: Keystone up or not, os-services' delay, the token it accepts."""

    keystone_up: bool = True
    services_delay_s: float = 0.0
    accepted: set[str] = field(default_factory=set)
    issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def fake() -> Iterator[tuple[Fake, int]]:
    state = Fake()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args: object) -> None:
            pass

        def _send(self, status: int, body: dict[str, object], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if not state.keystone_up:
                self._send(503, {"error": "keystone down"})
                return
            with state.lock:
                state.issued += 1
                token = f"tok-{state.issued}"
                state.accepted.add(token)
            times = {"issued_at": "2026-12-07T08:00:00.000000Z", "expires_at": "2026-12-07T09:00:00.000000Z"}
            self._send(201, {"token": times}, {"X-Subject-Token": token})

        def do_GET(self) -> None:
            if self.path == "/":
                self._send(200, {"versions": []})
            elif self.path == "/v2.1/os-services":
                if self.headers.get("X-Auth-Token") not in state.accepted:
                    self._send(401, {"error": "unauthorized"})
                    return
                time.sleep(state.services_delay_s)
                self._send(200, {"services": [{"binary": "nova-conductor"}]})
            else:
                self._send(404, {})

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _spec(port: int, timeout_s: float = 1.0) -> ProbeSpec:
    return ProbeSpec(
        ProbeKind.NOVA_SERVICES, port, timeout_s=timeout_s, user="admin", project="admin",
        password_env="PW", auth_url=f"http://127.0.0.1:{port}/v3",
    )  # fmt: skip


async def _prober(renew_s: float = 600.0) -> NetworkProber:
    return NetworkProber(environ={"PW": "secret"}, tokens=TokenCache(renew_s=renew_s))


async def test_a_cold_replica_fails_the_deep_probe_while_its_version_document_answers(
    fake: tuple[Fake, int],
) -> None:
    state, port = fake
    prober = await _prober()
    try:
        state.services_delay_s = 1.5  # a restarted nova-api's first real request
        cold = await prober.probe("127.0.0.1", _spec(port))
        shallow = await prober.probe("127.0.0.1", ProbeSpec(ProbeKind.HTTP, port, "/", timeout_s=1.0))
        state.services_delay_s = 0.0
        warm = await prober.probe("127.0.0.1", _spec(port))
    finally:
        await prober.close()
    assert not cold.ok and "no answer within" in cold.detail
    assert shallow.ok  # what HAProxy's check (GET /) and the lab's former probe saw
    assert warm.ok and warm.detail == "os-services: 1 services"


async def test_every_replicas_probe_shares_one_token_fetched_once(fake: tuple[Fake, int]) -> None:
    state, port = fake
    prober = await _prober()
    try:
        for _ in range(3):  # a pass probes both replicas at once, pass after pass
            results = await asyncio.gather(*(prober.probe("127.0.0.1", _spec(port)) for _ in range(2)))
            assert all(r.ok for r in results), results
    finally:
        await prober.close()
    assert state.issued == 1


async def test_keystone_down_fails_no_replica_with_a_kept_token_or_without_any(
    fake: tuple[Fake, int],
) -> None:
    state, port = fake
    prober = await _prober(renew_s=0.0)  # every probe wants a new token
    try:
        assert (await prober.probe("127.0.0.1", _spec(port))).ok
        state.keystone_up = False
        kept = await prober.probe("127.0.0.1", _spec(port))  # the renewal fails: the kept token serves
        fresh = NetworkProber(environ={"PW": "secret"})  # haven started during the outage: no token yet
        try:
            none = await fresh.probe("127.0.0.1", _spec(port))
        finally:
            await fresh.close()
    finally:
        await prober.close()
    assert kept.ok and kept.detail == "os-services: 1 services"
    assert none.ok and "version document only" in none.detail and "503" in none.detail


async def test_a_refused_token_is_renewed_for_the_next_probe(fake: tuple[Fake, int]) -> None:
    state, port = fake
    prober = await _prober()
    try:
        assert (await prober.probe("127.0.0.1", _spec(port))).ok
        state.accepted.clear()  # revoked (or expired early)
        refused = await prober.probe("127.0.0.1", _spec(port))
        again = await prober.probe("127.0.0.1", _spec(port))
    finally:
        await prober.close()
    assert not refused.ok and "401" in refused.detail
    assert again.ok and state.issued == 2
