"""bench/ha_lab.py's own hygiene, without an HA lab: the clients' token (``--token warm|cold``), the refusal
to inject a fault under a load that is not answering, the survivor's rate when the victim never returns,
the kill drill's HAProxy log lines (``nova_api``'s, not its Kolla anchor's) and ``--maxconn 0`` (uncapped,
judged from a real HAProxy's own counters: more sessions at once on a server than the lab's cap)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType, SimpleNamespace

import httpx
import pytest

from bench_modules import load_bench
from haven.controlplane.drivers.haproxy import HAProxyRuntime
from haven.domain.errors import TemporaryError
from haven.lab import ha
from haven.lab.process import free_port

SLOW_S = 1.5  # a stand-in replica's answer to anything but ``/``


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("ha_lab")


class _Replica(BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]]  # (path, X-Auth-Token) of every request, set per server

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("X-Auth-Token")))
        if self.path != "/":
            time.sleep(SLOW_S)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def replica() -> Iterator[tuple[ThreadingHTTPServer, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Replica,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, seen
    server.shutdown()
    server.server_close()


def _cluster(port: int) -> SimpleNamespace:
    return SimpleNamespace(active=[SimpleNamespace(address="127.0.0.1")], ports={"nova-api": port})


@pytest.mark.parametrize("mode", ["warm", "cold"])
def test_a_warm_token_is_validated_on_every_replica_first_and_a_cold_one_nowhere(
    bench: ModuleType, replica: tuple[ThreadingHTTPServer, list[tuple[str, str | None]]],
    monkeypatch: pytest.MonkeyPatch, mode: str,
) -> None:  # fmt: skip
    server, seen = replica
    tokens = iter(["t-1", "t-2"])
    monkeypatch.setattr(bench, "_token", lambda _labf, _cluster: next(tokens))  # no Keystone here
    monkeypatch.setattr(bench, "TOKEN_MODE", mode)
    token = bench._client_token(Path("/nonexistent"), _cluster(server.server_address[1]))
    assert token == "t-1"
    if mode == "warm":
        assert seen and set(seen) == {("/v2.1/servers", "t-1")}, seen
    else:
        assert seen == []


def test_the_token_option_defaults_to_warm_and_maxconn_0_is_kept_not_dropped(bench: ModuleType) -> None:
    assert bench._parser().parse_args([]).token == "warm"
    assert bench._parser().parse_args([]).maxconn is None
    assert bench._parser().parse_args(["--maxconn", "0", "--token", "cold"]).maxconn == 0
    with pytest.raises(SystemExit):
        bench._parser().parse_args(["--token", "lukewarm"])


def test_no_fault_is_injected_under_a_load_that_gets_no_answer(bench: ModuleType) -> None:
    url = f"http://127.0.0.1:{free_port()}/v2.1/servers"  # nothing listens: every request refused
    with (
        bench.ha_drills.Load(url, "t", clients=2, timeout_s=2.0) as load,
        pytest.raises(bench.NotAnswering, match=r"no answer in the 0\.5 s before the fault.*ConnectError"),
    ):
        bench._ensure_answering(load, 0.5)


def test_a_load_that_answers_is_let_through(
    bench: ModuleType, replica: tuple[ThreadingHTTPServer, list[tuple[str, str | None]]]
) -> None:
    server, _seen = replica
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    with bench.ha_drills.Load(url, "t", clients=2, timeout_s=5.0) as load:
        bench._ensure_answering(load, 0.5)
    assert load.answers > 0 and not load.errors


def test_the_survivors_rate_runs_to_the_end_of_the_load_when_the_victim_never_returns(
    bench: ModuleType,
) -> None:
    faulted, end = 100.0, 195.0
    answered = [faulted - 1.0, *(faulted + 2.0 + i * 0.5 for i in range(150))]  # 2 a second from +2 s
    never = bench._alone_window(faulted, 1.0, None, end)
    assert never == (101.0, 195.0, "end of run (victim never back)")
    assert bench._rate(answered, never[0], never[1]) == pytest.approx(150 / 94, abs=0.05)
    back = bench._alone_window(faulted, 1.0, 11.0, end)
    assert back == (101.0, 111.0, "back")
    assert bench._rate(answered, back[0], back[1]) == pytest.approx(1.8, abs=0.05)  # 18 answers in 10 s
    assert bench._alone_window(faulted, None, None, end) is None  # never out: no "alone"


def test_the_kill_drills_log_keeps_nova_api_lines_and_not_its_kolla_anchors(
    bench: ModuleType, tmp_path: Path
) -> None:
    log = tmp_path / "haproxy.log"
    log.write_text("")
    tail = bench._LogTail(log)
    log.write_text(
        "Server nova_api/ctl-1 is DOWN, reason: Layer4 connection problem\n"
        "Server nova_api_kolla/ctl-1 is DOWN, reason: Layer4 connection problem\n"
        "backend nova_api has no server available!\n"
        "backend nova_api_kolla has no server available!\n"
        "127.0.0.1:4242 [07/Dec/2026:19:00:00.000] nova_api nova_api/ctl-2 0/0/0/12/12 200 371 - - ----\n"
        "127.0.0.1:4243 [07/Dec/2026:19:00:00.000] nova_api_kolla nova_api_kolla/ctl-2 0/0/0/12/12 200\n"
        "Server placement_api/ctl-1 is UP\n"
    )
    tail.read()
    lines = [line for _t, line in tail.lines("nova_api")]
    assert len(lines) == 3 and not any("kolla" in line for line in lines), lines


@pytest.fixture
def proxied(
    tmp_path: Path, replica: tuple[ThreadingHTTPServer, list[tuple[str, str | None]]]
) -> Iterator[ha.HaLab]:
    """The HA lab's own haproxy.cfg (haven.lab.ha.write_config: ``maxconn`` per server) for nova-api on one
    controller, the stand-in replica behind it."""
    if os.geteuid() != 0 or not Path(ha.HAPROXY).exists():
        pytest.skip("needs root and Debian's HAProxy (scripts/install-system-deps.sh)")
    server, _seen = replica
    api = next(a for a in ha.APIS if a.service == "nova-api")
    controller = ha.Controller("ctl-1", "127.0.0.1", tmp_path / "ctl-1", 0)
    port = server.server_address[1]
    lab = ha.HaLab(tmp_path, [controller], (api,), {api.service: port}, {api.service: free_port()})
    config = ha.write_config(lab)
    with (tmp_path / "haproxy.log").open("wb") as log:
        proxy = subprocess.Popen([ha.HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not _up(lab):
            assert proxy.poll() is None, (tmp_path / "haproxy.log").read_text()
            assert time.monotonic() < deadline, "nova_api/ctl-1 not UP in 10 s"
            time.sleep(0.1)
        yield lab
    finally:
        proxy.terminate()
        proxy.wait(10)


def _up(lab: ha.HaLab) -> bool:
    try:
        return ha.servers_state(lab).get(("nova_api", "ctl-1")) == ("ready", "up")
    except TemporaryError:  # its socket not there yet
        return False


def _most_at_once(bench: ModuleType, lab: ha.HaLab, clients: int) -> int:
    """The most sessions the server had at once (HAProxy's ``smax``) after ``clients`` slow requests sent
    together through the frontend (the rest wait in the backend's queue)."""
    runtime = HAProxyRuntime(lab.haproxy_socket)
    asyncio.run(runtime.command("clear counters"))
    url = f"{lab.frontend_url('nova-api')}/v2.1/servers"
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(lambda _: httpx.get(url, timeout=30, trust_env=False).status_code,
                                 range(clients)))  # fmt: skip
    assert statuses == [200] * clients
    rows = asyncio.run(runtime.command("show stat")).splitlines()
    header = rows[0].lstrip("# ").split(",")
    row = next(
        r for r in (dict(zip(header, line.split(","), strict=False)) for line in rows[1:] if line)
        if (r["pxname"], r["svname"]) == ("nova_api", "ctl-1")
    )  # fmt: skip
    return int(row["smax"])


def test_maxconn_0_uncaps_the_servers_and_a_cap_comes_back(bench: ModuleType, proxied: ha.HaLab) -> None:
    clients = 2 * ha.SERVER_MAXCONN
    assert _most_at_once(bench, proxied, clients) == ha.SERVER_MAXCONN  # haproxy.cfg's cap
    bench._set_maxconn(proxied, 0)
    limits = bench.server_limits(asyncio.run(HAProxyRuntime(proxied.haproxy_socket).command("show stat")))
    assert limits[("nova_api", "ctl-1")] is None
    assert _most_at_once(bench, proxied, clients) == clients  # all at once
    bench._set_maxconn(proxied, ha.SERVER_MAXCONN)
    assert _most_at_once(bench, proxied, clients) == ha.SERVER_MAXCONN
