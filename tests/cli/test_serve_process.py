"""`haven serve` as a real process: it recovers an injected failure, stops cleanly on Ctrl-C,
and the state it leaves is what `haven status/hosts/notifications` read."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HAVEN = str(Path(sys.executable).with_name("haven"))


def haven(home: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HAVEN_HOME": str(home)}
    return subprocess.run([HAVEN, *argv], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_serve_recovers_stops_cleanly_and_leaves_readable_state(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "HAVEN_HOME": str(home)}
    proc = subprocess.Popen(
        [HAVEN, "serve", "--inject", "host-power-loss", "--inject-after", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 40
        finished: list[dict[str, object]] = []
        while time.monotonic() < deadline and not finished:
            time.sleep(0.5)
            if (home / "haven.db").exists():
                listed = haven(home, "notifications", "--json")
                if listed.returncode == 0:
                    finished = [n for n in json.loads(listed.stdout) if n["status"] == "finished"]
        assert finished, "the injected host failure was not recovered within 40 s"
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
