"""Bad input: one clear message naming what is wrong and how to fix it, exit 2, nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haven.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_unknown_scenario_names_the_known_ones(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, _, err = run(capsys, "drill", "meteor-strike")
    assert code == 2
    assert "unknown scenario 'meteor-strike'" in err
    assert "host-power-loss" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [("--hosts", "-3", "--hosts must be at least 1"), ("--vms", "-1", "--vms must not be negative")],
)
def test_negative_counts_are_refused(
    capsys: pytest.CaptureFixture[str], home: Path, flag: str, value: str, words: str
) -> None:
    code, out, err = run(capsys, "drill", "host-power-loss", flag, value)
    assert code == 2
    assert words in err
    assert out == ""


def test_config_that_does_not_parse(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[detection\ngrace_s = 3\n")
    code, _, err = run(capsys, "--config", str(bad), "serve")
    assert code == 2
    assert "is not valid TOML" in err and str(bad) in err
    assert not (home / "haven.db").exists(), "a bad config must not create the state"


def test_segment_with_unknown_recovery_method(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "haven.toml"
    cfg.write_text('[[segments]]\nname = "segment-az1"\nrecovery_method = "pray"\n')
    code, _, err = run(capsys, "--config", str(cfg), "serve")
    assert code == 2
    assert "unknown recovery_method 'pray'" in err
    assert "reserved_host" in err  # the hint lists the valid ones
    assert not (home / "haven.db").exists()


def test_unknown_config_key_is_named(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "haven.toml"
    cfg.write_text("[detection]\ngrace = 3\n")
    code, _, err = run(capsys, "--config", str(cfg), "serve")
    assert code == 2
    assert "unknown key(s) grace" in err and "grace_s" in err


def test_unreachable_database_hides_the_password(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, _, err = run(capsys, "--db", "postgresql+psycopg://haven:s3cret@127.0.0.1:1/haven", "serve")
    assert code == 2
    assert "s3cret" not in err
    assert "127.0.0.1:1" in err


def test_reading_state_that_does_not_exist_creates_nothing(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, _, err = run(capsys, "status")
    assert code == 2
    assert "no haven state" in err
    assert not home.exists()


def test_bad_input_leaves_an_existing_store_unchanged(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    assert main(["--db", f"sqlite:///{db}", "drill", "host-power-loss", "--json"]) == 0  # drills use memory
    assert not db.exists()
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[database]\nurl = "sqlite:///' + str(db) + '"\n[[segments]]\nname = "x"\nrecovery_method = "?"\n'
    )
    capsys.readouterr()
    assert main(["--config", str(bad), "serve"]) == 2
    assert not db.exists()


def test_unknown_notification_id(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path) -> None:
    from haven.store import Store

    db = tmp_path / "s.db"
    Store.open(f"sqlite:///{db}").close()
    code, _, err = run(capsys, "--db", f"sqlite:///{db}", "notifications", "nope")
    assert code == 2
    assert "no notification with id nope" in err


def test_drill_json_contract(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = run(capsys, "drill", "host-power-loss", "--json")
    assert code == 0
    report = json.loads(out)
    for key in (
        "scenario",
        "seed",
        "hosts",
        "vms",
        "ha_vms_affected",
        "ha_vms_recovered",
        "vms_lost",
        "vms_running_twice",
        "evacuated_unfenced",
        "false_evacuations",
        "unplaced",
        "phases",
        "detect_s",
        "fence_s",
        "recover_s",
        "held_by_gate",
        "verdict",
    ):
        assert key in report, key
    assert report["verdict"] == "recovered"
    assert [p["name"] for p in report["phases"]][:2] == ["suspected", "confirmed"]
    assert all(set(p) == {"name", "start_s", "end_s"} for p in report["phases"])


def test_grace_shorter_than_two_heartbeats_is_refused(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "haven.toml"
    cfg.write_text("[detection]\nheartbeat_interval_s = 1.0\ngrace_s = 1.0\n")
    code, _, err = run(capsys, "--config", str(cfg), "serve")
    assert code == 2
    assert "grace_s (1) is shorter than two heartbeat intervals" in err
    assert not (home / "haven.db").exists()


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("[detection]\ngate_window_s = 5.0\n", "gate_window_s (5) is shorter than grace_s plus"),
        ("[detection]\ncloud_gate_share = 1.5\n", "cloud_gate_share must be between 0 and 1"),
        ("[detection]\ngate_unconfirmed_share = 0\n", "gate_unconfirmed_share must be between 0 and 1"),
        ("[detection]\nfence_budget = -1\n", "must not be negative"),
        ("[recovery]\nmax_evacuate_attempts = 0\n", "max_evacuate_attempts must be at least 1"),
    ],
)
def test_safety_settings_that_would_defeat_the_gate_are_refused(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, toml: str, words: str
) -> None:
    cfg = tmp_path / "haven.toml"
    cfg.write_text(toml)
    code, _, err = run(capsys, "--config", str(cfg), "serve")
    assert code == 2 and words in err and "Traceback" not in err
    assert not (home / "haven.db").exists()


def test_a_foreign_sqlite_file_is_refused_and_left_untouched(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    import sqlite3

    foreign = tmp_path / "inventory.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE racks (name TEXT)")
    before = foreign.read_bytes()
    code, _, err = run(capsys, "--db", f"sqlite:///{foreign}", "status")
    assert code == 2
    assert "is not a haven database" in err
    assert foreign.read_bytes() == before


def test_a_segment_name_that_matches_nothing_is_refused(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "haven.toml"
    cfg.write_text('[[segments]]\nname = "segment-az9"\nrecovery_method = "reserved_host"\n')
    code, _, err = run(capsys, "--config", str(cfg), "serve")
    assert code == 2
    assert "segment-az9 match no segment" in err and "segment-az1" in err
    assert not (home / "haven.db").exists()
