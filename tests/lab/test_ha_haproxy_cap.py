"""The HA lab's haproxy.cfg keeps a lone, busy replica in its backend: HAProxy's check still gets a thread.

A replica of the HA lab is one gunicorn worker of 8 threads fed from one FIFO (gthread: the acceptor
queues each connection for the next free thread). HAProxy's check is a request like any other: with a
client request in every thread, it waits behind them, and when they take longer than ``timeout check``
three times in a row HAProxy marks the replica DOWN. For the survivor of a kill -9 that is an empty
backend: a 503 for every client (bench/ha_lab.py --drill kill at 8 clients: 1532 in one run, while the
survivor's threads all waited on Keystone to validate the clients' new token).
haven.lab.ha writes a per-server ``maxconn`` (half the threads), so the other requests wait in HAProxy's
queue and the check finds a free thread.

Here: ``haven.lab.ha.haproxy_config`` itself (one controller, nova-api's backend) in front of a stand-in
with gunicorn's gthread shape (an acceptor, 8 threads, one FIFO) whose API requests take longer than
``timeout check`` and whose ``/`` (the check's path) is instant; 16 clients. Judged from HAProxy's own
counters (``show stat``: failed checks, status) and what the clients got. Without the cap (the lab's
server line before 2026-12-07, evening) its checks fail within the 9 s: HAProxy showed it "UP 2/3", then
"UP 1/3", one failure from DOWN (measured, this test with the cap taken out).
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from haven.controlplane.drivers.haproxy import HAProxyRuntime
from haven.lab import ha
from haven.lab.process import free_port

pytestmark = pytest.mark.haproxy

THREADS = int(re.search(r"threads = (\d+)", ha._GUNICORN)[1])  # type: ignore[index]
SLOW_S = 3.0  # an API request's time: longer than the lab's ``timeout check 2s``
# Twice the threads: without a cap a whole batch of requests waits in the FIFO ahead of each check.
CLIENTS = 2 * THREADS


class GThread:
    """gunicorn's gthread worker in miniature: one acceptor, ``threads`` handlers, one FIFO between."""

    def __init__(self, threads: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.pool = ThreadPoolExecutor(threads)
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.pool.submit(self._serve, conn)

    @staticmethod
    def _serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            if data.split()[1] != b"/":
                time.sleep(SLOW_S)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.listener.close()
        self.pool.shutdown(wait=False, cancel_futures=True)


@pytest.fixture
def lone_replica(tmp_path: Path) -> Iterator[tuple[ha.HaLab, GThread]]:
    if os.geteuid() != 0 or not Path(ha.HAPROXY).exists():
        pytest.skip("needs root and Debian's HAProxy (scripts/install-system-deps.sh)")
    server = GThread(THREADS)
    api = next(a for a in ha.APIS if a.service == "nova-api")
    controller = ha.Controller("ctl-1", "127.0.0.1", tmp_path / "ctl-1", 0)
    lab = ha.HaLab(tmp_path, [controller], (api,), {api.service: server.port}, {api.service: free_port()})
    config = ha.write_config(lab)
    with (tmp_path / "haproxy.log").open("wb") as log:
        proxy = subprocess.Popen([ha.HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while _row(lab).get("status") != "UP":
            assert proxy.poll() is None, (tmp_path / "haproxy.log").read_text()
            assert time.monotonic() < deadline, f"not UP: {_row(lab)}"
            time.sleep(0.1)
        yield lab, server
    finally:
        proxy.terminate()
        proxy.wait(10)
        server.close()


def _row(lab: ha.HaLab) -> dict[str, str]:
    """HAProxy's own ``show stat`` row of nova_api/ctl-1 ({} before its socket answers)."""
    try:
        text = asyncio.run(HAProxyRuntime(lab.haproxy_socket).command("show stat -1 4 -1"))
    except Exception:
        return {}
    lines = text.splitlines()
    header = lines[0].lstrip("# ").split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return next((r for r in rows if r.get("pxname") == "nova_api" and r.get("svname") == "ctl-1"), {})


def test_a_lone_replica_with_every_thread_busy_still_answers_haproxys_check(
    lone_replica: tuple[ha.HaLab, GThread],
) -> None:
    lab, _server = lone_replica
    url = f"{lab.frontend_url('nova-api')}/v2.1/servers"
    statuses: list[int | str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30, trust_env=False) as http:
            while not stop.is_set():
                try:
                    statuses.append(http.get(url).status_code)
                except httpx.HTTPError as exc:
                    statuses.append(type(exc).__name__)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    seen: set[str] = set()
    before = int(_row(lab)["chkfail"] or 0)
    end = time.monotonic() + 9.0  # 3 checks timed out (fall 3 x (timeout check 2 s + inter 1 s)) mark DOWN
    while time.monotonic() < end:
        row = _row(lab)
        seen.add(row["status"])
        time.sleep(0.2)
    failed_checks = int(_row(lab)["chkfail"] or 0) - before
    stop.set()
    for thread in clients:
        thread.join(SLOW_S * CLIENTS)
    assert seen == {"UP"}, f"HAProxy's view of the lone replica: {seen}"
    assert failed_checks == 0, f"{failed_checks} of HAProxy's checks failed: waited behind the clients"
    assert statuses and set(statuses) == {200}, f"the clients got {sorted(set(map(str, statuses)))}"
