"""The lab's parts that need no OpenStack: its state file, exact stopping, the Neutron stand-in, the CLI."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from haven.cli.main import main
from haven.domain.errors import ConfigError
from haven.lab import lab
from haven.lab.process import LabProcess, free_port, port_open
from haven.lab.state import LabState, ProcessRecord, alive, load_state, record, stop_processes


def test_down_stops_exactly_the_recorded_processes(tmp_path: Path) -> None:
    mine = LabProcess(
        "sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "a.log"
    ).start()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        assert mine.pid is not None
        state = LabState(
            folder=str(tmp_path), computes=[], urls={}, processes=[record("sleeper", mine.pid, mine.log)]
        )
        # A record whose start time does not match is a reused pid: never signalled.
        reused = ProcessRecord("reused", stranger.pid, 1, "x")
        state.processes.append(reused)
        state.save()
        assert lab.down(tmp_path) == ["sleeper"]
        assert mine.process is not None and mine.process.wait(5) is not None
        assert stranger.poll() is None and not alive(reused)
        assert load_state(tmp_path) is None  # stopped: status finds no lab
    finally:
        stranger.kill()
        stranger.wait()
        mine.stop(grace_s=1)


def test_a_garbled_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a lab state file"):
        load_state(tmp_path)


def test_stop_processes_ignores_the_dead(tmp_path: Path) -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    entry = record("gone", done.pid, tmp_path / "x")
    done.wait()
    assert stop_processes([entry], grace_s=1) == []


def test_the_network_stand_in_answers_nova_s_lists_with_empty_ones(tmp_path: Path) -> None:
    port = free_port()
    stub = LabProcess(
        "net", [sys.executable, "-m", "haven.lab.netstub", str(port)], tmp_path / "net.log"
    ).start()
    try:
        stub.wait_until(lambda: port_open(port), 10, "listening")
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v2.0/ports", params={"device_id": "x"}).json() == {"ports": []}
        assert httpx.get(f"{base}/v2.0/security-groups").json() == {"security_groups": []}
        assert httpx.get(f"{base}/v2.0/ports/abc").status_code == 404
        assert httpx.delete(f"{base}/v2.0/ports/abc").status_code == 204
        assert httpx.get(f"{base}/").json()["versions"][0]["id"] == "v2.0"
        time.sleep(0.1)
        assert "GET /v2.0/ports" in stub.log.read_text()
    finally:
        stub.stop()


def test_cli_status_of_a_folder_without_lab(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lab", "status", "--folder", str(tmp_path)]) == 3
    assert "no lab in" in capsys.readouterr().out


def test_cli_up_refuses_zero_computes_and_a_foreign_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lab, "ensure_tool_env", lambda tool, progress=None: tmp_path)
    assert main(["lab", "up", "--computes", "0", "--folder", str(tmp_path)]) == 1
    assert "--computes must be at least 1" in capsys.readouterr().err
    (tmp_path / "precious.txt").write_text("mine")
    assert main(["lab", "up", "--folder", str(tmp_path)]) == 1
    assert "holds no lab" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").exists()


def test_cli_up_refuses_on_clusters_without_ha_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(lab, "up", lambda *a, **k: started.append(a))
    assert main(["lab", "up", "--on-clusters", "--folder", str(tmp_path)]) == 2
    assert "--on-clusters is for the HA lab" in capsys.readouterr().err
    assert started == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("given", "says", "code"),
    [
        (["--plain-backends"], "--plain-backends is for the HA lab", 2),
        (["--ha", "--on-clusters", "--plain-backends"], "contradict each other", 2),
    ],
)
def test_cli_up_refuses_backend_choices_that_do_not_fit_before_starting_anything(
    given: list[str],
    says: str,
    code: int,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[object] = []
    monkeypatch.setattr(lab, "up", lambda *a, **k: started.append(a))
    assert main(["lab", "up", *given, "--folder", str(tmp_path)]) == code
    assert says in capsys.readouterr().err
    assert started == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("given", "moved"), [(["--ha"], True), (["--ha", "--plain-backends"], False)])
def test_cli_up_ha_moves_openstack_onto_the_clusters_unless_told_plain(
    given: list[str], moved: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HA lab's OpenStack runs on its Galera and RabbitMQ clusters by default (issue 12)."""
    from types import SimpleNamespace

    from haven.lab import ha_openstack

    state = SimpleNamespace(
        up_in_s=1.0, computes=["c1"], files={"clouds.yaml": "c", "haven.toml": "h"}, ha=None
    )
    monkeypatch.setattr(lab, "up", lambda *a, **k: state)
    moves: list[Path] = []

    def use_clusters(folder: Path, say: object) -> SimpleNamespace:
        moves.append(folder)
        return SimpleNamespace(haproxy_port=3306)

    monkeypatch.setattr(ha_openstack, "use_clusters", use_clusters)
    assert main(["lab", "up", *given, "--folder", str(tmp_path)]) == 0
    assert moves == ([tmp_path.absolute()] if moved else [])
