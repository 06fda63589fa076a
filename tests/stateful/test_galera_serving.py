"""[stateful.galera] in haven.toml, and Galera's loop in `haven serve` as a leader-only runnable.

The config's mistakes are named (key and fix) before anything is opened. The serve test runs a real
`haven serve` whose nodes have a my.cnf but no data (no grastate.dat): the loop must hold, start no
server, and leave one galera_hold alert in the store naming every node; the recovery itself on real
servers is test_galera_real.py's (same GaleraRecovery).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.domain.errors import ConfigError
from haven.domain.incidents import AlertKind
from haven.service.config import load_config
from haven.stateful import serving
from haven.stateful.galera_node import NodeLayout
from haven.stateful.galera_systemd import bootstrap_problems, unit_file, unit_file_exec
from haven.store import Store

HAVEN = str(Path(sys.executable).with_name("haven"))


def _config_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "haven.toml"
    path.write_text(body)
    return path


def _nodes(tmp_path: Path, names: tuple[str, ...] = ("g1", "g2", "g3")) -> str:
    out = ""
    for name in names:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "my.cnf").write_text("[mariadbd]\n")
        out += f'[[stateful.galera.nodes]]\nname = "{name}"\nfolder = "{tmp_path / name}"\n'
    return out


def test_the_section_resolves_each_nodes_files_from_its_folder(tmp_path: Path) -> None:
    body = '[stateful.galera]\ncluster = "os"\ninterval_s = 2.0\n' + _nodes(tmp_path)
    body += f'[[stateful.galera.nodes]]\nname = "g4"\nfolder = "{tmp_path}/g4"\ncnf = "/etc/g4.cnf"\n'
    galera = load_config(tmp_path, _config_file(tmp_path, body)).stateful.galera
    assert galera is not None and galera.cluster == "os" and galera.interval_s == 2.0
    g1, g4 = galera.nodes[0], galera.nodes[3]
    assert (g1.cnf, g1.data, g1.socket) == (
        tmp_path / "g1/my.cnf",
        tmp_path / "g1/data",
        tmp_path / "g1/mariadb.sock",
    )
    assert g4.cnf == Path("/etc/g4.cnf") and g4.pid_file == tmp_path / "g4/mariadb.pid"
    assert load_config(tmp_path, _config_file(tmp_path, "")).stateful.galera is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (
            '[stateful.galera]\nnodes = [{name = "g1", folder = "/x"}]\n',
            "galera.nodes: List should have at least 2",
        ),
        ('[stateful.galera]\ndriver = "k8s"\nnodes = []\n', "driver 'k8s' is not known"),
        (
            '[stateful.galera]\ninterval = 3\nnodes = [{name = "a", folder = "/x"}, '
            '{name = "b", folder = "/y"}]\n',
            "galera.interval: Extra inputs are not permitted",
        ),
        ("[stateful.mysql]\n", "mysql: Extra inputs are not permitted"),
        (
            '[stateful.galera]\nnodes = [{name = "g1", folder = "/x"}, {name = "g1", folder = "/y"}]\n',
            "node name(s) g1 given twice",
        ),
    ],
)
def test_mistakes_are_named(tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path, _config_file(tmp_path, body))
    assert "[stateful]" in error.value.message and named in error.value.message
    assert error.value.hint and "docs/stateful.md" in error.value.hint


def test_serve_holds_with_one_galera_alert_when_no_node_can_be_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    body = '[stateful.galera]\ncluster = "os"\ninterval_s = 0.2\n' + _nodes(tmp_path)
    _config_file(home, body)
    port = _free_port()
    env = {**os.environ, "HAVEN_HOME": str(home)}
    proc = subprocess.Popen(
        [HAVEN, "serve", "--bind", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    held = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not held:
            time.sleep(0.5)
            if (home / "haven.db").exists():
                with Store.open(f"sqlite:///{home / 'haven.db'}") as store:
                    held = [a for a in store.list_alerts() if a.kind is AlertKind.GALERA_HOLD]
        time.sleep(1.0)  # several more passes: still one alert
        with Store.open(f"sqlite:///{home / 'haven.db'}") as store:
            held = [a for a in store.list_alerts(active_only=False) if a.kind is AlertKind.GALERA_HOLD]
            steps = store.galera_actions_since("os")
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "galera: cluster 'os' (g1, g2, g3, driver local)" in out + err
    assert len(held) == 1 and held[0].host == "os", held
    for name in ("g1", "g2", "g3"):
        assert f"{name}: stopped, grastate.dat unreadable" in held[0].message
    assert steps == []  # nothing started
    assert not any((tmp_path / n / "mariadb.pid").exists() for n in ("g1", "g2", "g3"))


def test_serve_names_a_missing_my_cnf_and_starts_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    body = "[stateful.galera]\n" + _nodes(tmp_path)
    (tmp_path / "g2" / "my.cnf").unlink()
    _config_file(home, body)
    assert main(["--home", str(home), "serve", "--bind", f"127.0.0.1:{_free_port()}"]) == 2
    err = capsys.readouterr().err
    assert f"node g2: its my.cnf {tmp_path / 'g2/my.cnf'} does not exist" in err
    assert "Traceback" not in err and not (home / "haven.db").exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


DEBIAN_UNIT = """[Unit]
Description=MariaDB 10.11.6 database server
[Service]
Type=notify
User=mysql
ExecStartPre=/bin/sh -c "[ ! -e /usr/bin/galera_recovery ] && VAR= || \\
 VAR=`cd /usr/bin/..; /usr/bin/galera_recovery`; [ $? -eq 0 ] \\
 && systemctl set-environment _WSREP_START_POSITION=$VAR || exit 1"
ExecStart=/usr/sbin/mariadbd $MYSQLD_OPTS $_WSREP_NEW_CLUSTER $_WSREP_START_POSITION
ExecStartPost=/bin/sh -c "systemctl unset-environment _WSREP_START_POSITION"
"""


def test_a_unit_without_havens_environment_file_cannot_be_bootstrapped(tmp_path: Path) -> None:
    """Debian's mariadb.service passes $_WSREP_NEW_CLUSTER but reads it from systemd's manager
    environment, not FOLDER/wsrep.env; haven's own unit reads both; a unit passing neither lacks both."""
    env_files, exec_start = unit_file_exec(DEBIAN_UNIT)
    assert bootstrap_problems(env_files, exec_start, tmp_path / "g1") == [
        f"it reads no EnvironmentFile={tmp_path / 'g1' / 'wsrep.env'} (where haven writes _WSREP_NEW_CLUSTER)"
    ]
    plain = "[Service]\nEnvironmentFile=-/etc/default/mariadb\nExecStart=/usr/sbin/mariadbd $MYSQLD_OPTS\n"
    assert len(bootstrap_problems(*unit_file_exec(plain), tmp_path / "g1")) == 2
    layout = NodeLayout("g1", tmp_path / "g1", 1, 2, 3, 4)
    assert bootstrap_problems(*unit_file_exec(unit_file(layout, "haven's")), layout.folder) == []


def test_serve_refuses_a_systemd_unit_haven_cannot_bootstrap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """driver systemd on Debian's mariadb.service: exit 2 naming the unit, what it lacks and the fix, before
    anything opens (its properties as systemd would give them over D-Bus: parsed from the unit file)."""
    read: list[tuple[str, str | None]] = []

    def unit_exec(unit: str, bus: str | None) -> tuple[list[str], list[list[str]]]:
        read.append((unit, bus))
        return unit_file_exec(DEBIAN_UNIT)

    monkeypatch.setattr(serving, "unit_exec", unit_exec)
    home = tmp_path / "home"
    home.mkdir()
    body = '[stateful.galera]\ndriver = "systemd"\n' + _nodes(tmp_path).replace(
        "[[stateful.galera.nodes]]\n", '[[stateful.galera.nodes]]\nunit = "mariadb.service"\n'
    )
    _config_file(home, body)
    assert main(["--home", str(home), "serve", "--bind", f"127.0.0.1:{_free_port()}"]) == 2
    err = capsys.readouterr().err
    assert read == [("mariadb.service", None)]
    assert "[stateful.galera] node g1: unit mariadb.service cannot be bootstrapped by haven" in err
    assert f"EnvironmentFile={tmp_path / 'g1' / 'wsrep.env'}" in err and "daemon-reload" in err
    assert "Traceback" not in err and not (home / "haven.db").exists()
