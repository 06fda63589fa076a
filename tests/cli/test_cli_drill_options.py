"""`haven drill` on the simulated cloud: the config's engine settings count, and sizes have limits.

Through the CLI's main, as a person runs it: a bad config or a size past the limit is one clear
message naming the flag or the file, exit 2, no traceback, and nothing built.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from haven.api.context import DrillLimits
from haven.cli.main import main
from haven.drill.limits import API_DRILL_LIMITS, CLI_DRILL_LIMITS


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


# ---- --config -----------------------------------------------------------------------------------


def test_a_drill_detects_with_the_config_files_grace(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "drill", "host-power-loss", "--json")
    assert code == 0
    default = json.loads(out)
    assert default["detect_s"] < 10  # the default grace: about 3 s
    slow = tmp_path / "slow.toml"
    slow.write_text("[detection]\ngrace_s = 10.0\n[recovery]\nmax_parallel_evacuations = 1\n")
    code, out, _ = run(capsys, "--config", str(slow), "drill", "host-power-loss", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["verdict"] == "recovered"
    # Confirmed a grace after the last heartbeat, which came up to one interval (1 s) before death.
    assert report["detect_s"] >= 9
    evacuations = report["recover_s"] - report["detect_s"]
    assert evacuations > default["recover_s"] - default["detect_s"]  # one evacuation at a time


def test_the_homes_config_counts_too(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    home.mkdir(parents=True)
    (home / "haven.toml").write_text("[detection]\ngrace_s = 10.0\n")
    code, out, _ = run(capsys, "drill", "host-power-loss", "--json")
    assert code == 0 and json.loads(out)["detect_s"] >= 9


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[detection\ngrace_s = 3\n", "is not valid TOML"),
        ("[detection]\ngrace = 3\n", "unknown key(s) grace"),
        ("[detection]\nheartbeat_interval_s = 1.0\ngrace_s = 1.0\n", "shorter than two heartbeat intervals"),
    ],
)
def test_a_bad_config_file_is_one_clear_error(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path, text: str, words: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    code, out, err = run(capsys, "--config", str(bad), "drill", "host-power-loss")
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err


def test_a_missing_config_file_is_named(
    capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path
) -> None:
    code, _, err = run(capsys, "--config", str(tmp_path / "nope.toml"), "drill", "host-power-loss")
    assert code == 2 and "cannot read config file" in err and "nope.toml" in err


# ---- sizes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (("--hosts", "100000000"), "--hosts 100000000 is more than the drill limit of 20,000 hosts"),
        (("--hosts", "20000", "--vms", "400001"), "--vms 400001 is more than the drill limit of 400,000 VMs"),
        (("--hosts", "2", "--vms", "81"), "--vms 81 is more than 40 VMs per host"),
        (
            (
                "--hosts",
                "0",
            ),
            "--hosts must be at least 1, got 0",
        ),
        (
            (
                "--hosts",
                "-5",
            ),
            "--hosts must be at least 1, got -5",
        ),
        (
            (
                "--vms",
                "-1",
            ),
            "--vms must not be negative, got -1",
        ),
    ],
)
@pytest.mark.parametrize("scenario", ["rack-loss", "leader-loss"])
def test_sizes_past_the_limits_are_refused_before_anything_is_built(
    capsys: pytest.CaptureFixture[str], home: Path, argv: tuple[str, ...], words: str, scenario: str
) -> None:
    started = time.monotonic()
    code, out, err = run(capsys, "drill", scenario, *argv)
    assert code == 2 and out == ""
    assert words in err and "Traceback" not in err
    assert time.monotonic() - started < 2  # refused by arithmetic, no cloud built, no server started


def test_the_largest_allowed_size_is_at_least_the_readmes_biggest_drill() -> None:
    assert CLI_DRILL_LIMITS.max_hosts >= 10_000 and CLI_DRILL_LIMITS.max_vms >= 200_000
    assert CLI_DRILL_LIMITS.max_vms_per_host * 10_000 >= 200_000


def test_the_api_reads_its_default_limits_from_the_same_place() -> None:
    limits = DrillLimits()
    assert (limits.max_hosts, limits.max_vms) == (API_DRILL_LIMITS.max_hosts, API_DRILL_LIMITS.max_vms)
