"""`[segments] bootstrap`: what `haven serve`'s first start creates.

Masakari starts empty: segments and hosts exist only once an operator creates them through the
API (masakari/api/openstack/ha/segments.py, hosts.py: create is the only way in), and a host
belongs to one segment, so segments haven made on its own would make a Masakari user's own
``segment host create`` a 409. haven does the same on a real cloud unless configured; the
simulated cloud, the demo and the lab keep one segment per availability zone.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from haven.cli.main import main
from haven.lab.labfiles import write_haven_toml
from haven.service.config import SEGMENT_BOOTSTRAPS, load_config

HAVEN = str(Path(sys.executable).with_name("haven"))


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "haven.toml"
    path.write_text(text)
    return path


def test_the_default_is_per_zone_on_the_simulated_cloud_and_none_on_a_real_one(tmp_path: Path) -> None:
    assert load_config(tmp_path).segment_bootstrap == "per-zone"
    assert load_config(tmp_path, cloud_name="mycloud").segment_bootstrap == "none"
    openstack = _config(tmp_path, '[cloud]\ndriver = "openstack"\nname = "mycloud"\n')
    assert load_config(tmp_path, openstack).segment_bootstrap == "none"


def test_bootstrap_is_read_beside_the_per_segment_entries(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[segments]\nbootstrap = "per-zone"\n[[segments.segment]]\nname = "segment-az1"\nmode = "notify"\n',
    )
    config = load_config(tmp_path, path, cloud_name="mycloud")
    assert config.segment_bootstrap == "per-zone"
    assert config.segment_names == {"segment-az1"}
    none = _config(tmp_path, '[segments]\nbootstrap = "none"\n')
    assert load_config(tmp_path, none).segment_bootstrap == "none"  # the simulated cloud too, if asked


def test_the_labs_config_keeps_one_segment_per_zone(tmp_path: Path) -> None:
    class Bmc:
        host, url, username, system_id = "compute-1", "http://127.0.0.1:1", "admin", "system-1"

    urls = {"haven": "http://127.0.0.1:2", "etcd": "etcd://127.0.0.1:3"}
    path = write_haven_toml(tmp_path, [Bmc()], "secret", urls, tmp_path / "token")  # type: ignore[list-item]
    assert load_config(tmp_path, path, cloud_name="lab").segment_bootstrap == "per-zone"


@pytest.mark.parametrize("value", ['"per_zone"', '"zones"', "true", "1"])
def test_an_unknown_bootstrap_is_refused_naming_the_key_and_the_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    path = _config(tmp_path, f"[segments]\nbootstrap = {value}\n")
    assert main(["--config", str(path), "serve"]) == 2
    err = capsys.readouterr().err
    assert "[segments] bootstrap must be one of 'per-zone', 'none'" in err and "Traceback" not in err
    assert not (tmp_path / "home" / "haven.db").exists()
    assert SEGMENT_BOOTSTRAPS == ("per-zone", "none")


def test_an_unknown_key_in_the_segments_table_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    path = _config(tmp_path, '[segments]\nbootstrapp = "none"\n')
    assert main(["--config", str(path), "serve"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) bootstrapp" in err and "bootstrap" in err


def test_a_segments_entry_naming_no_segment_of_an_empty_start_is_refused_with_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    path = _config(
        tmp_path,
        '[segments]\nbootstrap = "none"\n[[segments.segment]]\nname = "segment-az1"\nmode = "notify"\n',
    )
    assert main(["--config", str(path), "serve"]) == 2
    err = capsys.readouterr().err
    assert "segment-az1 match no segment" in err and "openstack segment create" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve_once(home: Path, config: Path) -> list[dict[str, object]]:
    """Start `haven serve` (simulated cloud), stop it once its API answers; the hosts it left."""
    env = {**os.environ, "HAVEN_HOME": str(home)}
    port = _free_port()
    argv = [HAVEN, "--config", str(config), "serve", "--bind", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, answered = time.monotonic() + 30, False
        while time.monotonic() < deadline and not answered:
            time.sleep(0.2)
            with contextlib.suppress(httpx.TransportError):  # segments are prepared before the API serves
                answered = httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code > 0
        assert answered, "haven serve's API never answered"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert ("no failover segment yet" in err) is ('bootstrap = "none"' in config.read_text())
    listed = subprocess.run(
        [HAVEN, "hosts", "--json"], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    hosts: list[dict[str, object]] = json.loads(listed.stdout)
    return hosts


def test_serve_on_the_simulated_cloud_starts_empty_when_told_and_per_zone_by_default(tmp_path: Path) -> None:
    empty = _serve_once(tmp_path / "empty", _config(tmp_path, '[segments]\nbootstrap = "none"\n'))
    assert empty == []
    zoned = _serve_once(tmp_path / "zoned", _config(tmp_path, "[cloud]\nhosts = 6\nvms = 6\n"))
    assert len(zoned) == 6 and {h["segment"] for h in zoned} == {"segment-az1", "segment-az2", "segment-az3"}
