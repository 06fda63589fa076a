"""`haven serve` as a real process: it recovers an injected failure, answers on its API port,
stops cleanly on Ctrl-C, and the state it leaves is what `haven status/hosts/notifications` read.
Also the local API token (`haven token`) and the --bind mistakes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from haven.cli.main import main

HAVEN = str(Path(sys.executable).with_name("haven"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def haven(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HAVEN_HOME": str(home)}
    return subprocess.run([HAVEN, *argv], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_serve_recovers_stops_cleanly_and_leaves_readable_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "HAVEN_HOME": str(home)}
    port = free_port()
    proc = subprocess.Popen(
        [HAVEN, "serve", "--inject", "host-power-loss", "--inject-after", "1", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        token = {"X-Auth-Token": _check_the_api_answers(home, url)}
        # Polled through the API: a `haven notifications` process per poll cost about 2 s of CPU each,
        # taken from the server recovering on the same two cores. The CLI reads the same rows below.
        deadline = time.monotonic() + 40
        while not [n for n in _notifications(url, token) if n["status"] == "finished"]:
            assert time.monotonic() < deadline, "the injected host failure was not recovered within 40 s"
            time.sleep(0.2)
        listed = haven(home, "notifications", "--json")
        assert listed.returncode == 0, listed.stderr
        finished = [n for n in json.loads(listed.stdout) if n["status"] == "finished"]
        assert finished
        _check_haven_resources(url, token)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err

    status = json.loads(haven(home, "status", "--json").stdout)
    assert status["segments"] == 3
    assert status["hosts_by_condition"].get("dead") == 1
    note = json.loads(haven(home, "notifications", str(finished[0]["id"]), "--json").stdout)
    kinds = [s["kind"] for s in note["steps"]]
    assert kinds[:3] == ["fence", "force_down", "plan"]
    assert all(s["state"] == "done" for s in note["steps"])
    hosts = json.loads(haven(home, "hosts", "--json").stdout)
    assert len(hosts) == 30
    table = haven(home, "hosts")
    assert table.returncode == 0 and "compute-00001" in table.stdout


def _notifications(url: str, token: dict[str, str]) -> list[dict[str, object]]:
    answer = httpx.get(f"{url}/v1/notifications", headers=token, timeout=10)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, object]] = answer.json()["notifications"]
    return found


def _check_the_api_answers(home: Path, url: str) -> str:
    """The API answers, refuses a request without the token and takes `haven token`'s; that token."""
    deadline = time.monotonic() + 20
    while True:
        try:
            versions = httpx.get(f"{url}/", timeout=2)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert versions.status_code == 200, versions.text
    assert "versions" in versions.json()
    assert httpx.get(f"{url}/v1/segments", timeout=5).status_code == 401
    token = haven(home, "token")
    assert token.returncode == 0, token.stderr
    listed = httpx.get(f"{url}/v1/segments", headers={"X-Auth-Token": token.stdout.strip()}, timeout=5)
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["segments"]) == 3
    return token.stdout.strip()


def _check_haven_resources(url: str, token: dict[str, str]) -> None:
    """The engine's events reach /metrics (open) and its status is served (with the token)."""
    scraped = httpx.get(f"{url}/metrics", timeout=5)
    assert scraped.status_code == 200, scraped.text
    found = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    finished = (("status", "finished"), ("type", "COMPUTE_HOST"))
    assert found[("haven_notifications_total", finished)] == 1
    assert found[("haven_detection_latency_seconds_count", (("since", "suspected"),))] == 1
    assert found[("haven_hosts", (("condition", "dead"),))] == 1
    status = httpx.get(f"{url}/v1/haven/status", headers=token, timeout=5).json()
    assert status["leader"]["is_leader"] is True
    assert status["notifications_by_status"] == {"finished": 1}


# ---- the local API token and --bind ----------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_token_is_created_once_owner_only_and_printed_exactly(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from haven.service.token import ensure_token

    first = ensure_token(home)
    assert len(first) >= 43 and ensure_token(home) == first
    assert stat.S_IMODE((home / "token").stat().st_mode) == 0o600
    assert main(["token"]) == 0
    assert capsys.readouterr().out == first + "\n"


def test_a_token_file_others_can_read_is_refused_with_the_fix(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home.mkdir()
    (home / "token").write_text("secret-value\n")
    (home / "token").chmod(0o644)
    assert main(["token"]) == 2
    err = capsys.readouterr().err
    assert "can be read or written by others (mode 0644)" in err and "chmod 600" in err
    assert "secret-value" not in err


def test_no_token_yet_says_to_start_serve(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token"]) == 2
    assert "haven serve" in capsys.readouterr().err


@pytest.mark.parametrize(
    "value", ["nonsense", "127.0.0.1", "127.0.0.1:http", "host:70000", ":15868", "::1:80"]
)
def test_a_malformed_bind_is_named(home: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    assert main(["serve", "--bind", value]) == 2
    err = capsys.readouterr().err
    assert f"--bind {value!r} is not HOST:PORT" in err and "Traceback" not in err
    assert not home.exists()


def test_a_busy_port_stops_serve_before_anything_starts(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = haven(home, "serve", "--bind", f"127.0.0.1:{port}")
    assert result.returncode == 2, result.stderr
    assert f"cannot serve the API on 127.0.0.1:{port}: the port is already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not home.exists()
