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


def test_canary_run_blames_what_no_check_covers_when_novas_reads_time_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`haven canary run` gives its runner the topology's needs (haven.canary.unseen), as the fault
    drill does: Nova's server list timing out while Keystone and every endpoint answer is MariaDB's."""
    from haven.canary.sim import SimCanaryCloud
    from haven.diagnosis import EvidenceKind
    from haven.domain.errors import TemporaryError
    from haven.store import Store

    catalog = {k: f"http://127.0.0.1/{k}" for k in ("identity", "compute", "image", "placement", "network")}

    async def endpoints(self: SimCanaryCloud) -> dict[str, str]:
        return catalog

    async def answers(self: SimCanaryCloud, url: str, timeout_s: float) -> None:
        return None

    async def times_out(self: SimCanaryCloud) -> int:
        raise TemporaryError("list servers: Request to nova-api /v2.1/servers timed out", 1.0)

    monkeypatch.setattr(SimCanaryCloud, "endpoints", endpoints, raising=False)
    monkeypatch.setattr(SimCanaryCloud, "probe_endpoint", answers, raising=False)
    monkeypatch.setattr(SimCanaryCloud, "list_servers", times_out)
    main(["--home", str(tmp_path), "canary", "run", "--zone", "az1", "--json"])
    capsys.readouterr()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        kept = [e for e in store.evidence_between(0.0, 2e10) if e.scope == "unseen:server-list"]
    assert [(e.node, e.kind) for e in kept] == [("mariadb", EvidenceKind.ERROR)]
