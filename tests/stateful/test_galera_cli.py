"""`haven drill galera-*`: bad input is named, with exit 2 and no cluster formed (no server started).

The drills themselves form a real cluster (~30 s each): they are run by hand and by bench/galera.py,
which shares their code and judge (haven.stateful.drills); the loop they drive is tested on the module
cluster of test_galera_real.py.
"""

from __future__ import annotations

import pytest

from haven.cli.main import main


def test_a_galera_drill_refuses_a_cloud(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "galera-full-outage", "--cloud", "lab"]) == 2
    err = capsys.readouterr().err
    assert "runs on its own temporary Galera cluster, not on --cloud lab" in err
    assert "without --cloud" in err and "Traceback" not in err


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
