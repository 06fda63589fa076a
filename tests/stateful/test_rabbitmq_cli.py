"""`haven drill rabbitmq-*`: bad input is named, with exit 2 and no cluster formed (no server started).

The drills themselves form a real cluster (30-45 s on this machine under load): they were run by hand
(docs/stateful.md); the loop they drive is tested on the module cluster of test_rabbitmq_real.py.
"""

from __future__ import annotations

import pytest

from haven.cli.main import main


def test_a_rabbitmq_drill_refuses_a_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "rabbitmq-partition", "--cloud", "lab"]) == 2
    err = capsys.readouterr().err
    assert "runs on its own temporary RabbitMQ cluster, not on --cloud lab" in err
    assert "without --cloud" in err and "Traceback" not in err


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
