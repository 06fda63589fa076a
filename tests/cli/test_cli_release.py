"""``haven release SEGMENT``: the operator's release of a held segment, on the store haven serve uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Alert, AlertKind, Segment, SegmentHost
from haven.store import Store


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HAVEN_HOME", str(home))
    with Store.open(f"sqlite:///{home}/haven.db") as store:
        segment = store.create_segment(Segment(SegmentId("c" * 32), "zone-a"))
        store.add_hosts([SegmentHost(HostName(f"compute-{i}"), segment.id) for i in range(4)])
    return home


def test_release_of_a_segment_that_is_not_held_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, err = run(capsys, "release", "zone-a")
    assert code == 2 and out == ""
    assert "zone-a is not held" in err and "Traceback" not in err
    code, _, err = run(capsys, "release", "zone-x")
    assert code == 2 and "zone-x" in err and "haven status" in err


def test_release_records_who_and_why_for_each_silent_host(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    with Store.open(f"sqlite:///{home}/haven.db") as store:
        store.set_host_conditions({HostName("compute-0"): "held", HostName("compute-1"): "dead"})
        store.raise_alert(
            Alert("h", AlertKind.GATE_HOLD, "3 of 4 silent", 1.0, segment_id=SegmentId("c" * 32))
        )
    code, out, err = run(
        capsys, "release", "zone-a", "--reason", "switch replaced, hosts were dead", "--json"
    )
    assert code == 0, err
    body = json.loads(out)
    assert body["hosts"] == ["compute-0", "compute-1"] and "haven release" in body["by"]
    with Store.open(f"sqlite:///{home}/haven.db") as store:
        active = store.list_alerts()
    assert sorted((a.kind.value, a.host) for a in active) == [
        ("gate_released", "compute-0"),
        ("gate_released", "compute-1"),
    ]
    assert all("switch replaced" in a.message for a in active)
