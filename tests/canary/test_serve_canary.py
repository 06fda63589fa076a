"""`haven serve` with ``[canary]`` on the simulated cloud runs canary rounds while it leads: runs land in the
store (read back with `haven canary`), their phases on /metrics; serve stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from servers.process import free_port

HAVEN = str(Path(sys.executable).with_name("haven"))


def haven(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HAVEN_HOME": str(home)}
    return subprocess.run([HAVEN, *argv], env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.slow
def test_serve_runs_canaries_while_leading(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "haven.toml").write_text(
        '[cloud]\nhosts = 4\nvms = 0\n[canary]\ninterval_s = 1.0\npoll_s = 0.2\nzones = ["az1"]\n'
    )
    port = free_port()
    env = {**os.environ, "HAVEN_HOME": str(home)}
    proc = subprocess.Popen([HAVEN, "serve", "--bind", f"127.0.0.1:{port}"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    runs: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(runs) < 2:
            time.sleep(1.0)
            if (home / "haven.db").exists():
                listed = haven(home, "canary", "--json")
                if listed.returncode == 0:
                    runs = [r for r in json.loads(listed.stdout) if r["state"] == "done"]
        assert len(runs) >= 2, "serve ran fewer than two canary rounds in 60 s"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "canary boots" in err and "stopped cleanly" in err
    assert {r["outcome"] for r in runs} == {"ok"} and {r["zone"] for r in runs} == {"az1"}
    assert 'haven_canary_success{zone="az1"} 1.0' in metrics
