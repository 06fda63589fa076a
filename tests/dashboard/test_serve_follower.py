"""A real `haven serve` with several engines on a real etcd, read over HTTP (no browser): while
another engine leads, its dashboard says it is a follower and links the leader; its open event stream
then sees it take over (the leader killed) and, as the new leader runs the backup service, the
backups panel's rounds arrive live. This is `haven serve`'s own wiring of the dashboard (the elector
handed to it, the backup service's hook set to the hub); the browser tests run the same parts in
their own process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clients.conftest import HavenServer, start_haven
from servers.etcd import EtcdServer, etcd, etcd_server  # noqa: F401
from servers.process import free_port

pytestmark = [pytest.mark.etcd, pytest.mark.slow]
STAND_IN = Path(__file__).parents[1] / "coordination" / "leader_process.py"


@pytest.fixture
def stand_in(etcd: EtcdServer) -> Iterator[tuple[subprocess.Popen[str], str]]:  # noqa: F811
    """Another engine that leads first (haven's elector in a process of its own, lease 2 s)."""
    identity = f"stand-in:1@127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, str(STAND_IN), etcd.url, identity, etcd.cluster, "2"],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("LEADER")
        yield proc, identity
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def served(
    tmp_path: Path,
    etcd: EtcdServer,  # noqa: F811
    stand_in: tuple[subprocess.Popen[str], str],
) -> Iterator[HavenServer]:
    config = (
        f'[coordination]\nurl = "{etcd.url}"\ncluster = "{etcd.cluster}"\nttl_s = 2\n'
        "[cloud]\nhosts = 4\nvms = 4\n"
        '[backups]\nmax_concurrent = 1\njitter_s = 0.0\n[backups.default]\nschedule = "hourly"\n'
    )
    yield from start_haven(tmp_path / "home", config=config)


def events(stream: httpx.Response, deadline: float) -> Iterator[tuple[str, str]]:
    """(event, data) of a server-sent-events stream until ``deadline``."""
    kind, data = "", []
    for line in stream.iter_lines():
        assert time.monotonic() < deadline, "the stream did not say it in time"
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        elif line == "" and kind:
            yield kind, "\n".join(data)
            kind, data = "", []


def test_a_follower_says_so_then_takes_over_and_its_backups_are_live(
    served: HavenServer, stand_in: tuple[subprocess.Popen[str], str]
) -> None:
    leader, identity = stand_in
    with httpx.Client(base_url=served.url, timeout=httpx.Timeout(10.0, read=20.0)) as client:
        login = client.post("/dashboard/login", data={"token": served.token})
        assert login.status_code == 303, login.text
        deadline = time.monotonic() + 15
        while f"The leader is {identity}" not in (page := client.get("/dashboard/").text):
            assert time.monotonic() < deadline, page  # its elector has not read the leader key yet
            time.sleep(0.2)
        assert 'data-role="follower"' in page and "Not the leader." in page
        assert f"The leader is {identity}" in page
        leader_url = "http://" + identity.rpartition("@")[2] + "/dashboard/"
        assert f'<a href="{leader_url}">' in page
        assert "No protected server in the backup runner's latest pass" in page  # it runs no backups

        with client.stream("GET", "/dashboard/events") as stream:
            seen = events(stream, time.monotonic() + 60)
            follower = "not live: this engine is a follower (see the note above); its engine sends no events"
            assert next(seen) == ("live", follower)
            leader.send_signal(signal.SIGKILL)  # the leader dies: its lease lapses after 2 s
            took_over = rounds = 0
            for kind, data in seen:
                if kind == "update" and 'data-role="leader"' in data:
                    took_over += 1
                elif (
                    took_over
                    and kind == "update"
                    and 'id="backups"' in data
                    and 'id="leadership"' not in data
                ):
                    rounds += 1  # a backup round's own message: the new leader's backup service, live
                    assert "one being taken since" in data  # the first round asked for a backup
                    break
            assert took_over == 1 and rounds >= 1
    log = served.log.read_text()
    assert "leadership_gained" in log  # the engine's own word: it leads now
