"""haven serve refuses [stateful.galera] / [stateful.rabbitmq] (local driver) with coordination.

The local drivers read whether a node runs from this machine's /proc and start it here: a second engine
elected on another machine would see every node stopped and start them all again on its own machine.
serve stops at start-up with exit 2, the message naming the section and the coordination URL, before
anything is opened (no haven.db, no etcd contacted: nothing listens on the URL's port).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.cli.main import main

RABBIT = """[stateful.rabbitmq]
home = "{home}"
[[stateful.rabbitmq.nodes]]
name = "rabbit-1@localhost"
folder = "{home}/n1"
amqp_port = 5671
dist_port = 25671
[[stateful.rabbitmq.nodes]]
name = "rabbit-2@localhost"
folder = "{home}/n2"
amqp_port = 5672
dist_port = 25672
"""
GALERA = """[stateful.galera]
[[stateful.galera.nodes]]
name = "g1"
folder = "{home}/g1"
[[stateful.galera.nodes]]
name = "g2"
folder = "{home}/g2"
"""


@pytest.mark.parametrize(("body", "named"), [(RABBIT, "[stateful.rabbitmq]"), (GALERA, "[stateful.galera]")])
@pytest.mark.parametrize("where", ["flag", "file"])
def test_serve_refuses_local_nodes_with_coordination(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, named: str, where: str
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    url = "etcd://127.0.0.1:9"
    text = body.format(home=tmp_path)
    argv = ["--home", str(home), "serve", "--bind", "127.0.0.1:1"]
    if where == "flag":
        argv[3:3] = ["--coordination", url]
    else:
        text = f'[coordination]\nurl = "{url}"\n' + text
    (home / "haven.toml").write_text(text)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{named} (driver local) cannot run with --coordination / [coordination] url {url}" in err
    assert "an engine elected on another machine" in err.replace("\n", " ")
    assert "Traceback" not in err and not (home / "haven.db").exists()


def test_without_coordination_serve_goes_on_to_check_the_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "haven.toml").write_text(RABBIT.format(home=tmp_path))
    assert main(["--home", str(home), "serve", "--bind", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot run with --coordination" not in err and "no .erlang.cookie" in err
