"""The network faults' parts without a lab: the faulting proxy against a real local HTTP server and a real
TCP echo, the iptables rules' bookkeeping, and (in a network namespace of its own) a real REDIRECT.

The injections themselves run on the lab with `haven drill fault NAME --cloud lab` (not in `make test`).
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from haven.domain.errors import PermanentError
from haven.drill.fault_proxy import FaultProxy, Route
from haven.drill.faults import FAULTS
from haven.drill.faults_network import (
    Rules,
    image_data_gone,
    loss_rule,
    owned_by_group,
    proxied,
    redirect_rule,
)


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str, bytes]] = []

    def _answer(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, self.client_address[0], body))
        answer = f"{self.command} {self.path} {len(body)}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, list[tuple[str, str, str, bytes]]]]:
    seen: list[tuple[str, str, str, bytes]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], seen
    httpd.shutdown()
    httpd.server_close()


def _get(port: int, path: str, data: bytes | None = None) -> tuple[int, bytes, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", data=data, timeout=10) as answer:
            return answer.status, answer.read(), time.monotonic() - started
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), time.monotonic() - started


def test_the_proxy_delays_each_request_and_passes_it_on_whole_from_its_own_source(
    server: tuple[int, list[tuple[str, str, str, bytes]]],
) -> None:
    port, seen = server
    proxy = FaultProxy(port, delay_s=0.6, http=True)
    listening = proxy.start()
    try:
        status, body, quick = _get(port, "/direct")  # not through it: as fast as the server
        assert status == 200 and quick < 0.5
        status, body, took = _get(listening, "/v2/images", data=b"x" * 100_000)
        assert (status, body) == (200, b"POST /v2/images 100000") and took >= 0.6
        assert seen[-1][3] == b"x" * 100_000 and proxy.connections == 1
        assert proxy.delayed == 1  # the request once, not each chunk of its body
    finally:
        proxy.stop()
    with pytest.raises(OSError):  # stopped: nothing listens there any more
        socket.create_connection(("127.0.0.1", listening), timeout=2).close()


def test_the_proxy_answers_500_on_its_one_route_and_nothing_else(
    server: tuple[int, list[tuple[str, str, str, bytes]]],
) -> None:
    port, seen = server
    proxy = FaultProxy(port, http=True, fail=Route("GET", r".*/v2/images/[^/]+/file"))
    listening = proxy.start()
    try:
        status, body, _ = _get(listening, "/v2/images/abc/file")
        assert status == 500 and b"haven drill fault" in body
        assert seen == []  # the service never saw it
        for path in ("/v2/images/abc", "/v2/images/abc/file/more", "/v2/images/abc/file?x=1"):
            status, body, took = _get(listening, path)
            if path.endswith("?x=1"):  # the query is not part of the route: still the route
                assert status == 500
            else:
                assert (status, body) == (200, f"GET {path} 0".encode()) and took < 0.5
        status, _, _ = _get(listening, "/v2/images/abc/file", data=b"{}")  # another method: passes
        assert status == 200
        assert [s[:2] for s in seen] == [("GET", "/v2/images/abc"), ("GET", "/v2/images/abc/file/more"),
                                         ("POST", "/v2/images/abc/file")]  # fmt: skip
        assert proxy.failed == 2
    finally:
        proxy.stop()


def test_the_tcp_proxy_delays_every_chunk_a_client_sends() -> None:
    echo = socket.socket()
    echo.bind(("127.0.0.1", 0))
    echo.listen()

    def serve() -> None:
        conn, _ = echo.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    proxy = FaultProxy(echo.getsockname()[1], delay_s=0.3)
    try:
        with socket.create_connection(("127.0.0.1", proxy.start()), timeout=5) as client:
            for query in (b"select 1", b"select 2"):
                started = time.monotonic()
                client.sendall(query)
                assert client.recv(1024) == query.upper()
                assert time.monotonic() - started >= 0.3
        assert proxy.delayed == 2
    finally:
        proxy.stop()
        echo.close()


def test_a_proxy_is_refused_bad_settings() -> None:
    with pytest.raises(ValueError):
        FaultProxy(0)
    with pytest.raises(ValueError):
        FaultProxy(80, fail=Route("GET", "/"))  # a route needs HTTP


class _Iptables:
    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, argv: Sequence[str]) -> None:
        self.calls.append(list(argv))
        if self.fail_on and self.fail_on in argv:
            raise PermanentError(f"iptables refused {self.fail_on}")


def test_each_rule_names_this_port_and_its_heal_deletes_exactly_it() -> None:
    rule = redirect_rule(9292, 40000)
    assert rule.argv("-I") == ["iptables", "-w", "5", "-t", "nat", "-I", "OUTPUT", "-p", "tcp", "-d",
                               "127.0.0.1", "--dport", "9292", "-m", "mark", "!", "--mark", "0x68617665",
                               "-m", "comment", "--comment", "haven-drill-fault:9292", "-j", "REDIRECT",
                               "--to-ports", "40000"]  # fmt: skip
    loss = loss_rule(9292, 0.4)
    assert loss.table == "filter" and "0.4" in loss.spec and loss.spec[-1] == "DROP"
    iptables = _Iptables(fail_on="nat")  # the first deletion fails: the second is still deleted
    rules = Rules(iptables)
    iptables.fail_on = ""
    rules.add(rule)
    rules.add(loss)
    iptables.fail_on = "filter"
    with pytest.raises(PermanentError):
        rules.remove()
    assert [c[5] for c in iptables.calls] == ["-I", "-I", "-D", "-D"]
    assert iptables.calls[2][7:] == list(loss.spec) and iptables.calls[3][7:] == list(rule.spec)
    assert rules.added == []
    with pytest.raises(PermanentError):
        redirect_rule(0, 1)
    for probability in (1.0, 0.0):
        with pytest.raises(PermanentError):
            loss_rule(80, probability)


class _PortLab:
    def __init__(self, port: int, data: Path | None = None) -> None:
        self._port = port
        self._data = data

    def port(self, service: str) -> int:
        return self._port

    def image_data(self) -> Path:
        assert self._data is not None
        return self._data


def test_an_injection_that_fails_halfway_removes_its_rule_and_stops_its_proxy(
    server: tuple[int, list[tuple[str, str, str, bytes]]],
) -> None:
    port, _ = server
    made: list[FaultProxy] = []

    def proxy(upstream: int) -> FaultProxy:
        made.append(FaultProxy(upstream, http=True))
        return made[-1]

    iptables = _Iptables()
    heal = proxied("image", proxy, run=iptables)(_PortLab(port))  # type: ignore[arg-type]
    assert iptables.calls[0][11:13] == ["--dport", str(port)] and made[0].port > 0
    assert _get(made[0].port, "/")[0] == 200  # the proxy runs while the fault lasts
    heal()
    assert iptables.calls[1][5] == "-D" and iptables.calls[1][7:] == iptables.calls[0][7:]
    iptables = _Iptables(fail_on="-I")
    with pytest.raises(PermanentError):
        proxied("image", proxy, run=iptables)(_PortLab(port))  # type: ignore[arg-type]
    assert made[1]._loop is None  # stopped
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", made[1].port), timeout=2).close()


def test_the_store_fault_moves_the_data_aside_and_back(tmp_path: Path) -> None:
    data = tmp_path / "images" / "abc"
    data.parent.mkdir()
    data.write_bytes(b"qcow")
    heal = image_data_gone(_PortLab(0, data))  # type: ignore[arg-type]
    assert not data.exists() and [p.name for p in data.parent.iterdir()] == [".abc.haven-drill-fault"]
    heal()
    assert data.read_bytes() == b"qcow" and [p.name for p in data.parent.iterdir()] == ["abc"]
    with pytest.raises(PermanentError):
        image_data_gone(_PortLab(0, tmp_path / "missing"))  # type: ignore[arg-type]


def test_the_network_faults_are_in_the_catalogue() -> None:
    glance = ("glance-slow", "nova-api-glance-slow", "glance-lossy", "glance-download-500")
    assert {FAULTS[n].root for n in (*glance, "glance-store-gone")} == {"glance-api"}
    assert FAULTS["database-slow"].root == "mariadb"
    assert FAULTS["placement-candidates-500"].root == "placement-api"


_IN_NAMESPACE = """
import http.server, sys, threading, urllib.request, subprocess
from haven.drill.fault_proxy import FaultProxy
from haven.drill.faults_network import Rules, redirect_rule
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = self.client_address[0].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a): pass
httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=httpd.serve_forever, daemon=True).start()
port = httpd.server_address[1]
def get():
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
proxy = FaultProxy(port, http=True)
rules = Rules()
rules.add(redirect_rule(port, proxy.start()))
answer = get()  # the proxy's own connection upstream is not sent back to it: one connection
print("through" if proxy.connections == 1 else "direct", proxy.connections)
rules.remove()
proxy.stop()
left = subprocess.run(["iptables", "-t", "nat", "-S", "OUTPUT"], capture_output=True, text=True)
print(get(), proxy.connections, left.stdout.strip())
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("iptables") and shutil.which("ip")),
    reason="needs root, unshare, ip and iptables",
)
def test_a_real_redirect_sends_new_connections_through_the_proxy_and_its_heal_leaves_no_rule() -> None:
    """In a network namespace of its own (the host's rules untouched): the proxy carries the request while
    the rule is there (once: its own upstream connection, marked, is not redirected back to it), no longer
    once the rule is deleted, and the chain is left empty."""
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", _IN_NAMESPACE],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    through, after = done.stdout.strip().splitlines()
    assert through == "through 1"
    assert after == "127.0.0.1 1 -P OUTPUT ACCEPT"  # straight to the service, the proxy not asked


def test_a_slow_link_delays_one_process_groups_connections_and_spares_the_others(
    server: tuple[int, list[tuple[str, str, str, bytes]]],
) -> None:
    """A client in a session of its own (as each lab service runs) is delayed; this test's own is not."""
    port, _ = server
    script = (
        "import sys, time, urllib.request; t = time.monotonic(); "
        "urllib.request.urlopen('http://127.0.0.1:' + sys.argv[1] + '/other', timeout=10).read(); "
        "print(time.monotonic() - t)"
    )
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    group_of = {}

    def clients(peer: int) -> bool:
        group_of[peer] = owned_by_group(peer, other.pid)
        return group_of[peer]

    proxy = FaultProxy(port, delay_s=0.8, http=True, clients=clients)
    listening = proxy.start()
    try:
        status, _, took = _get(listening, "/mine")  # this test's process: not of that group
        assert status == 200 and took < 0.8 and list(group_of.values()) == [False]
        other.kill()
        other.wait()
        elsewhere = subprocess.run([sys.executable, "-c", script, str(listening)], capture_output=True,
                                 text=True, timeout=30, start_new_session=True)  # fmt: skip
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert float(elsewhere.stdout) < 0.8  # another session again: spared
        assert proxy.spared == 2 and proxy.delayed == 0
        proxy.clients = lambda peer: owned_by_group(peer, os.getpgid(0))  # this test's own group now
        status, _, took = _get(listening, "/mine")
        assert status == 200 and took >= 0.8 and proxy.delayed == 1
    finally:
        proxy.stop()
