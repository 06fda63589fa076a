"""`haven drill SCENARIO --cloud NAME`: the mistakes are named with their fix before anything is touched.

No cloud answers here (the lab drills themselves are in test_lab_drills.py): a lab that does not
run, a scenario only the simulated cloud has, a real cloud without --flavor/--image, and
nova-compute-crash outside the lab are refused with exit 2 and one message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.cli.main import main

CLOUDS = """clouds:
  other:
    auth: {auth_url: "http://127.0.0.1:9/v3", username: a, password: b, project_name: c,
           user_domain_name: Default, project_domain_name: Default}
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    (tmp_path / "clouds.yaml").write_text(CLOUDS)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_the_lab_must_run(capsys: pytest.CaptureFixture[str], env: Path) -> None:
    folder = env / "no-lab"
    code, err = run(capsys, "drill", "host-power-loss", "--cloud", "lab", "--lab-folder", str(folder))
    assert code == 2
    assert f"no lab runs in {folder}" in err and "`haven lab up`" in err


def test_only_real_cloud_scenarios_run_on_a_real_cloud(capsys: pytest.CaptureFixture[str], env: Path) -> None:
    code, err = run(capsys, "drill", "rack-loss", "--cloud", "other")
    assert code == 2
    assert "runs only on the simulated cloud" in err and "host-power-loss, nova-compute-crash" in err


def test_another_cloud_needs_a_flavor_and_an_image(capsys: pytest.CaptureFixture[str], env: Path) -> None:
    code, err = run(capsys, "drill", "host-power-loss", "--cloud", "other", "--image", "i")
    assert code == 2 and "name their --flavor and --image" in err


def test_nova_compute_crash_needs_the_lab(capsys: pytest.CaptureFixture[str], env: Path) -> None:
    code, err = run(
        capsys, "drill", "nova-compute-crash", "--cloud", "other", "--flavor", "f", "--image", "i"
    )
    assert code == 2
    assert "only the lab gives" in err and "--cloud lab" in err


def test_a_cloud_that_does_not_answer_fails_the_drill_with_its_reason(
    capsys: pytest.CaptureFixture[str], env: Path
) -> None:
    argv = ["drill", "host-power-loss", "--cloud", "other", "--flavor", "f", "--image", "i", "--json"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 1
    assert "haven drill: failed on cloud 'other'" in captured.err and "cannot reach the cloud" in captured.err
    assert captured.out == ""


def test_host_hang_needs_the_lab(capsys: pytest.CaptureFixture[str], env: Path) -> None:
    code, err = run(capsys, "drill", "host-hang", "--cloud", "other", "--flavor", "f", "--image", "i")
    assert code == 2
    assert "host-hang needs to freeze a host's processes" in err and "--cloud lab" in err
