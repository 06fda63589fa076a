"""`haven drill galera-*`: bad input is named, with exit 2 and no cluster formed (no server started).

The drills themselves form a real cluster (~30 s each): they are run by hand and by bench/galera.py,
which shares their code and judge (haven.stateful.drills); the loop they drive is tested on the module
cluster of test_galera_real.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.stateful.galera_node import MARIADBD, PROVIDER

from .lab_records import write_lab_state

needs_galera = pytest.mark.skipif(
    not (MARIADBD.exists() and PROVIDER.exists()), reason="needs mariadb-server and galera-4"
)


def test_a_galera_drill_refuses_a_cloud_other_than_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "galera-full-outage", "--cloud", "prod"]) == 2
    err = capsys.readouterr().err
    assert "runs on its own temporary cluster or on the HA lab's (--cloud lab), not on --cloud prod" in err
    assert "without --cloud, or with --cloud lab" in err and "Traceback" not in err


@needs_galera
def test_on_the_lab_a_folder_with_no_running_lab_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", "galera-node-loss", "--cloud", "lab", "--lab-folder", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no lab runs in {tmp_path}" in err and "haven lab up" in err and "Traceback" not in err


@needs_galera
@pytest.mark.parametrize(
    ("ha", "says"),
    [
        ({}, "is not an HA lab: it runs no Galera or RabbitMQ cluster"),
        ({"controllers": []}, "has no galera cluster in its records (an older lab)"),
        ({"stateful": {"galera": {"folder": "/x"}}}, "the lab state's Galera part is not readable"),
    ],
)
def test_on_the_lab_a_lab_without_the_cluster_is_named_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ha: dict[str, object], says: str
) -> None:
    write_lab_state(tmp_path, [os.getpid()], ha)  # a running lab: one of its processes is alive
    argv = ["drill", "galera-full-outage", "--cloud", "lab", "--lab-folder", str(tmp_path), "--json"]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert says in captured.err and "haven lab up --ha" in captured.err, captured.err
    assert captured.out == "" and "Traceback" not in captured.err


def test_an_unknown_galera_node_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["drill", "galera-node-loss", "--galera-node", "g9"])
    assert exit_.value.code == 2
    assert "invalid choice: 'g9'" in capsys.readouterr().err


def test_the_drill_command_lists_the_galera_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["drill", "--help"])
    out = capsys.readouterr().out
    assert "galera-node-loss" in out and "galera-full-outage" in out and "--galera-node" in out
