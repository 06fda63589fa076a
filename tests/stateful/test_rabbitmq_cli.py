"""`haven drill rabbitmq-*`: bad input is named, with exit 2 and no cluster formed (no server started);
the report's queue lines.

The drills themselves form a real cluster (30-45 s on this machine under load): they were run by hand
(docs/stateful.md); the loop they drive is tested on the module cluster of test_rabbitmq_real.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from haven.cli.main import main
from haven.cli.rabbitmq import _print
from haven.stateful.rabbitmq_cluster import missing_binaries
from haven.stateful.rabbitmq_drills import RabbitDrillReport
from haven.stateful.rabbitmq_queues import QueueRead, QueueStat, judge

from .lab_records import write_lab_state


def test_a_rabbitmq_drill_refuses_a_cloud_other_than_the_lab(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "rabbitmq-partition", "--cloud", "prod"]) == 2
    err = capsys.readouterr().err
    assert "runs on its own temporary cluster or on the HA lab's (--cloud lab), not on --cloud prod" in err
    assert "without --cloud, or with --cloud lab" in err and "Traceback" not in err


@pytest.mark.skipif(bool(missing_binaries()), reason="needs rabbitmq-server")
def test_on_the_lab_a_plain_lab_is_named_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["drill", "rabbitmq-node-loss", "--cloud", "lab", "--lab-folder", str(tmp_path)]
    assert main(argv) == 2
    assert f"no lab runs in {tmp_path}" in capsys.readouterr().err
    write_lab_state(tmp_path, [os.getpid()], {"controllers": [], "stateful": {"galera": {}}})
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "has no rabbitmq cluster in its records" in err and "haven lab up --ha" in err
    assert "Traceback" not in err


def test_an_unknown_rabbitmq_node_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["drill", "rabbitmq-node-loss", "--rabbitmq-node", "rabbit-9"])
    assert exit_.value.code == 2
    assert "invalid choice: 'rabbit-9'" in capsys.readouterr().err


def test_the_drill_command_lists_the_rabbitmq_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["drill", "--help"])
    out = capsys.readouterr().out
    assert "rabbitmq-node-loss" in out and "rabbitmq-partition" in out and "--rabbitmq-node" in out


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (
            ["rabbitmq-node-loss", "--rabbitmq-split-all"],
            "--rabbitmq-split-all is an option of rabbitmq-partition",
        ),
        (
            ["rabbitmq-node-loss", "--rabbitmq-cut-from", "rabbit-1"],
            "--rabbitmq-cut-from is an option of rabbitmq-partition",
        ),
        (
            ["rabbitmq-partition", "--rabbitmq-split-all", "--rabbitmq-cut-from", "rabbit-1"],
            "--rabbitmq-split-all and --rabbitmq-cut-from cannot be given together",
        ),
    ],
)
def test_partition_options_that_would_be_ignored_are_refused(
    argv: list[str], named: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_cluster(folder: object) -> None:
        raise AssertionError("no cluster is formed for a refused command")

    monkeypatch.setattr("haven.cli.rabbitmq.LoopbackRabbitCluster.create", no_cluster)
    assert main(["drill", *argv]) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err


def test_the_drills_report_shows_the_queues_totals_and_the_fullest() -> None:
    read = QueueRead(1200, 340, 25, (QueueStat("/", "conductor", "rabbit-2@localhost", 300, 25, 0),))
    health, _ = judge(read, 0.0)
    report = RabbitDrillReport("rabbitmq-node-loss", "rabbit-3@localhost", "recovered")
    report.queues = {"read_from": "rabbit-1@localhost", **health.as_json()}
    out = Console(record=True, width=200)
    _print(report, out)
    text = out.export_text()
    assert "queues (read from rabbit-1@localhost): 1,200, 340 ready, 25 unacknowledged" in text
    assert "/:conductor on rabbit-2@localhost: 300 ready, 25 unacknowledged, 0 consumers" in text
    report.queues = {"error": "erl_call to rabbit-1@localhost: no answer in 30 s"}
    _print(report, out)
    assert "queues: not read (erl_call to rabbit-1@localhost: no answer in 30 s)" in out.export_text()
