"""``haven canary run`` and ``haven canary`` on the simulated cloud, and the mistakes they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haven.cli.main import main


def test_canary_run_boots_times_and_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--home", str(tmp_path), "canary", "run", "--zone", "az1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and [p["name"] for p in report["probes"]] == ["token", "server-list"]
    (run,) = report["runs"]
    assert run["zone"] == "az1" and run["outcome"] == "ok" and run["state"] == "done"
    assert list(run["phases"]) == ["accepted", "scheduled", "image", "spawned", "active", "deleted"]
    assert main(["--home", str(tmp_path), "canary", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [run["id"]]


def test_a_real_cloud_canary_without_flavor_or_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--home", str(tmp_path), "canary", "run", "--cloud", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "flavor and image missing" in err and "Traceback" not in err
    assert not (tmp_path / "haven.db").exists()  # nothing created
