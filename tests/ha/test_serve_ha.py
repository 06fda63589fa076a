"""Several `haven serve --coordination etcd://...` processes on one PostgreSQL store, as operators run them.

Real etcd, real PostgreSQL, real `haven serve` processes: one leads and acts, the other stands by
and serves reads; a notification POSTed to the follower is stored and the leader picks it up;
with etcd silent (SIGSTOP) the leader stops acting within its lease and says so, reads go on, and
once etcd answers again an engine leads again. An unreachable etcd at start is a plain error.
(Each process has its own simulated cloud, so these tests check roles, not a shared recovery:
tests/ha/test_leader_loss.py does that.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.lab.process import free_port
from servers.etcd import EtcdServer

pytestmark = [pytest.mark.postgres, pytest.mark.etcd]
HAVEN = str(Path(sys.executable).with_name("haven"))
TTL_S = 3


class Serve:
    """One `haven serve` process with its own home, port and log, on the shared store."""

    def __init__(self, folder: Path, etcd_url: str, store_url: str, cluster: str) -> None:
        self.home = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = folder / "haven.toml"
        folder.mkdir(parents=True)
        self.config.write_text(f'[coordination]\nttl_s = {TTL_S}\ncluster = "{cluster}"\n')
        self.log = folder / "serve.log"
        argv = [HAVEN, "--config", str(self.config), "--db", store_url, "serve",
                "--coordination", etcd_url, "--bind", f"127.0.0.1:{self.port}"]  # fmt: skip
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                argv, env={**os.environ, "HAVEN_HOME": str(folder)}, stdout=out, stderr=subprocess.STDOUT
            )
        self.token = ""

    def wait_ready(self) -> None:
        wait_for(lambda: self._answers(), 30, f"{self.url} never answered:\n{self.output()}")
        self.token = (self.home / "token").read_text().strip() if (self.home / "token").exists() else ""

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.output()
        try:
            return httpx.get(f"{self.url}/", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", headers={"X-Auth-Token": self.token}, timeout=5)

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, headers={"X-Auth-Token": self.token}, timeout=5)

    def leads(self) -> bool:
        status: bool = self.get("/v1/haven/status").json()["leader"]["is_leader"]
        return status

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def wait_for(condition: Callable[[], bool], timeout_s: float, message: str = "") -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(message or f"not true within {timeout_s} s")
        time.sleep(0.1)
    return time.monotonic() - start


@pytest.fixture
def pair(etcd: EtcdServer, pg_store_url: Callable[[], str], tmp_path: Path) -> Iterator[tuple[Serve, Serve]]:
    store_url = pg_store_url()
    first = Serve(tmp_path / "a", etcd.url, store_url, etcd.cluster)
    servers = [first]
    try:
        first.wait_ready()  # the first start creates the segments; the second finds them
        wait_for(first.leads, TTL_S + 5, f"the only engine did not lead:\n{first.output()}")
        second = Serve(tmp_path / "b", etcd.url, store_url, etcd.cluster)
        servers.append(second)
        second.wait_ready()
        yield first, second
    finally:
        etcd.resume()
        for server in servers:
            assert server.stop() == 0, server.output()
        assert all("stopped cleanly" in s.output() for s in servers)


def test_one_leads_the_follower_serves_reads_and_stores_notifications_for_the_leader(
    pair: tuple[Serve, Serve],
) -> None:
    leader, follower = pair
    assert leader.leads() and not follower.leads()
    status = follower.get("/v1/haven/status").json()
    assert status["leader"]["backend"] == "etcd" and status["segments"] == 3
    assert follower.get("/v1/notifications").status_code == 200

    note = {"type": "PROCESS", "hostname": "compute-00002", "generated_time": "2027-01-15T08:00:00Z",
            "payload": {"event": "STOPPED", "process_name": "nova-compute"}}  # fmt: skip
    created = follower.post("/v1/notifications", {"notification": note})
    assert created.status_code == 202, created.text
    uuid = created.json()["notification"]["notification_uuid"]

    def picked_up() -> bool:
        return follower.get(f"/v1/notifications/{uuid}").json()["notification"]["status"] != "new"

    wait_for(picked_up, 10, "the leader did not pick up the notification stored by the follower")
    assert "step_started" in leader.output() and "step_started" not in follower.output()


def test_etcd_lost_the_leader_stops_acting_reads_go_on_and_leadership_returns(
    pair: tuple[Serve, Serve], etcd: EtcdServer
) -> None:
    leader, follower = pair
    etcd.pause()  # SIGSTOP: connections stay open, nothing answers
    lost_after = wait_for(lambda: not leader.leads(), TTL_S + 2, "the leader kept leading without etcd")
    assert lost_after <= TTL_S + 1.0
    assert not follower.leads()
    for server in pair:
        assert server.get("/v1/notifications").status_code == 200
        assert server.get("/v1/haven/status").status_code == 200
    wait_for(lambda: "leadership_lost" in leader.output(), 5, leader.output())

    etcd.resume()
    wait_for(lambda: leader.leads() or follower.leads(), TTL_S * 3 + 5, "nobody leads after etcd came back")
    assert not (leader.leads() and follower.leads())


def test_an_unreachable_etcd_at_start_is_a_plain_error_naming_the_url(tmp_path: Path) -> None:
    url = f"etcd://127.0.0.1:{free_port()}"
    env = {**os.environ, "HAVEN_HOME": str(tmp_path)}
    done = subprocess.run(
        [HAVEN, "serve", "--coordination", url, "--bind", f"127.0.0.1:{free_port()}"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert url in done.stderr and "cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "haven.db").exists()  # nothing was opened


def test_a_malformed_coordination_url_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = {**os.environ, "HAVEN_HOME": str(tmp_path)}
    done = subprocess.run([HAVEN, "serve", "--coordination", "http://127.0.0.1:2379"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 2 and "etcd://" in done.stderr and "Traceback" not in done.stderr
