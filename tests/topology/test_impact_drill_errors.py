"""`haven drill controlplane-impact`'s bad input: exit 2, a clear error naming what is valid, no traceback,
and nothing started (no lab is needed: every check comes before the lab is read)."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.cli.main import main
from haven.drill.impact_run import OPERATIONS, SERVICES, chosen


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["drill", "controlplane-impact", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.out == ""  # nothing measured, no document
    return code, " ".join(captured.err.split())


def test_without_cloud_it_asks_for_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys)
    assert code == 2 and "pass --cloud lab" in err


def test_another_cloud_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--cloud", "prod")
    assert code == 2 and "runs only on the lab, not on cloud 'prod'" in err


def test_an_unknown_service_names_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--cloud", "lab", "--only", "glance-api,swift")
    assert code == 2 and "unknown service(s) swift" in err
    assert all(node in err for node in SERVICES.values())


def test_an_unknown_operation_names_the_valid_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--cloud", "lab", "--operations", "image-list,reboot")
    assert code == 2 and "unknown operation(s) reboot" in err
    assert all(op in err for op in OPERATIONS)


def test_a_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, "--cloud", "lab", "--operation-timeout", "0")
    assert code == 2 and "--operation-timeout must be positive" in err


def test_no_lab_running_is_a_clear_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run(capsys, "--cloud", "lab", "--lab-folder", str(tmp_path), "--json")
    assert code == 2 and f"no lab runs in {tmp_path}" in err and "haven lab up" in err


def test_services_are_named_by_the_model_or_by_the_lab_process() -> None:
    assert chosen(["neutron-server", "rabbitmq-server"], []) == (
        ["rabbitmq-server", "network-stub"],
        list(OPERATIONS),
    )
    assert chosen([], ["image-list", "token-issue"]) == (list(SERVICES), ["token-issue", "image-list"])
