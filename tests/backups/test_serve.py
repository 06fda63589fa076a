"""`haven serve` with ``[backups]`` on the simulated cloud: the runner runs while it leads (backups are
issued to the cloud within the first pass, never more than the cap in flight), its gauges are on
/metrics, and serve still stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from servers.process import free_port

HAVEN = str(Path(sys.executable).with_name("haven"))
CONFIG = """
[cloud]
hosts = 4
vms = 6
[backups]
max_concurrent = 2
jitter_s = 0.0
[backups.default]
schedule = "hourly"
keep = 2
"""


@pytest.mark.slow  # haven serve's start-up takes seconds on a busy machine
def test_serve_runs_the_backup_runner_on_the_simulated_cloud(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "haven.toml").write_text(CONFIG)
    env = {**os.environ, "HAVEN_HOME": str(home)}
    port = free_port()
    proc = subprocess.Popen(
        [HAVEN, "serve", "--bind", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = ""
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "haven_backups_in_flight 2.0" not in metrics:
            time.sleep(0.3)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    metrics = answer.read().decode()
            except OSError:
                continue
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    listed = subprocess.run(
        [HAVEN, "backups", "list", "--json"], env=env, capture_output=True, text=True, check=True
    )
    backups = json.loads(listed.stdout)["backups"]
    assert proc.returncode == 0, err
    assert "scheduled backups: at most 2 in flight" in err and "stopped cleanly" in err
    assert len(backups) == 2  # the cap: 6 servers due, 2 in flight, the others wait (uploads take 120 s)
    assert all(b["state"] == "creating" and str(b["image_id"]) for b in backups)
    assert 'haven_backup_servers{condition="all",policy="hourly"} 6.0' in metrics
    assert "haven_backups_in_flight 2.0" in metrics
