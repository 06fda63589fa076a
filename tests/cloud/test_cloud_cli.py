"""`--cloud NAME` and `[cloud] driver = "openstack"`: the mistakes are named, and `haven serve` watches
the named cloud (here RecordedNova behind a clouds.yaml entry) instead of the simulated one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.recorded_nova import Answer, RecordedNova, serving
from haven.cli.main import main
from haven.lab.process import free_port

# openstacksdk warns about its own internals (statsd, influxdb, service_type) on every connect and request.
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
HAVEN = str(Path(sys.executable).with_name("haven"))


@pytest.fixture
def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAVEN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OS_CLOUD", raising=False)
    path = tmp_path / "clouds.yaml"
    path.write_text("clouds:\n  lab:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def test_an_unknown_cloud_name_stops_serve_with_the_fix(
    capsys: pytest.CaptureFixture[str], clouds_yaml: Path
) -> None:
    code, err = run(capsys, "serve", "--cloud", "nowhere", "--bind", f"127.0.0.1:{free_port()}")
    assert code == 2
    assert "cannot use OpenStack cloud 'nowhere'" in err and "clouds.yaml" in err
    assert "Traceback" not in err
    assert not (clouds_yaml.parent / "home" / "haven.db").exists()  # nothing touched


def test_the_openstack_driver_without_a_name_asks_for_one(
    capsys: pytest.CaptureFixture[str], clouds_yaml: Path, tmp_path: Path
) -> None:
    config = tmp_path / "haven.toml"
    config.write_text('[cloud]\ndriver = "openstack"\n')
    code, err = run(capsys, "--config", str(config), "serve")
    assert code == 2 and "pass --cloud NAME or set OS_CLOUD" in err


def test_simulated_keys_are_refused_for_the_openstack_driver(
    capsys: pytest.CaptureFixture[str], clouds_yaml: Path, tmp_path: Path
) -> None:
    config = tmp_path / "haven.toml"
    config.write_text('[cloud]\ndriver = "openstack"\nname = "lab"\nhosts = 3\n')
    code, err = run(capsys, "--config", str(config), "serve")
    assert code == 2 and "unknown key(s) hosts" in err and "driver openstack" in err


def test_inject_and_drill_need_the_simulated_cloud(
    capsys: pytest.CaptureFixture[str], clouds_yaml: Path
) -> None:
    code, err = run(capsys, "serve", "--cloud", "lab", "--inject", "host-power-loss")
    assert code == 2 and "--inject works only on the simulated cloud" in err
    code, err = run(capsys, "drill", "vm-crash", "--cloud", "lab")
    assert code == 2 and "scenario 'vm-crash' runs only on the simulated cloud" in err


SERVICES = [
    {
        "id": f"svc-{i}",
        "binary": "nova-compute",
        "host": f"compute-{i}",
        "zone": "az1",
        "status": "enabled",
        "state": "up",
        "forced_down": False,
        "disabled_reason": None,
        "updated_at": "2026-11-21T10:00:00.000000",
    }
    for i in (1, 2, 3)
]
HYPERVISORS = [
    {
        "hypervisor_hostname": f"compute-{i}",
        "service": {"host": f"compute-{i}", "id": f"svc-{i}"},
        "vcpus": 8,
        "vcpus_used": 0,
        "memory_mb": 16384,
        "memory_mb_used": 512,
        "local_gb": 100,
        "local_gb_used": 0,
    }
    for i in (1, 2, 3)
]


@pytest.fixture
def nova() -> Iterator[RecordedNova]:
    for server in serving():
        server.serve_versions()
        server.answer("GET", "/v2.1/os-services", Answer(200, {"services": SERVICES}))
        server.answer("GET", "/v2.1/os-hypervisors/detail", Answer(200, {"hypervisors": HYPERVISORS}))
        server.answer("GET", "/v2.1/os-aggregates", Answer(200, {"aggregates": []}))
        server.answer("GET", "/placement/resource_providers", Answer(200, {"resource_providers": []}))
        yield server


@pytest.mark.parametrize("bootstrap", [None, "per-zone"])
def test_serve_watches_the_named_cloud(tmp_path: Path, nova: RecordedNova, bootstrap: str | None) -> None:
    """On a real cloud the first start creates no segment unless [segments] bootstrap says so
    (Masakari starts empty: its users create their own segments with these hosts)."""
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  recorded:\n    auth_type: admin_token\n"
        f"    auth:\n      endpoint: {nova.url}\n      token: not-logged-anywhere\n"
        f"    compute_endpoint_override: {nova.url}/v2.1\n"
        f"    placement_endpoint_override: {nova.url}/placement\n"
    )
    home = tmp_path / "home"
    if bootstrap is not None:
        home.mkdir()
        (home / "haven.toml").write_text(f'[segments]\nbootstrap = "{bootstrap}"\n')
    env = {**os.environ, "HAVEN_HOME": str(home), "OS_CLIENT_CONFIG_FILE": str(clouds)}
    env.pop("OS_CLOUD", None)
    argv = [HAVEN, "serve", "--cloud", "recorded", "--bind", f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(nova.made("GET", "/v2.1/os-services")) < 2:
            time.sleep(0.2)  # the start-up listing, then the engine's first liveness pass
        assert len(nova.made("GET", "/v2.1/os-services")) >= 2, "haven never asked Nova for its services"
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "haven serving: OpenStack cloud 'recorded' (clouds.yaml)" in err
    assert "not-logged-anywhere" not in err
    hosts = subprocess.run(
        [HAVEN, "hosts", "--json"], env=env, capture_output=True, text=True, timeout=30, check=True
    )
    listed = json.loads(hosts.stdout)
    if bootstrap is None:
        assert listed == []
    else:
        assert sorted(h["name"] for h in listed) == ["compute-1", "compute-2", "compute-3"]
        assert {h["segment"] for h in listed} == {"segment-az1"}
    api_calls = [r for r in nova.requests if r.path.startswith(("/v2.1/os-", "/placement/"))]
    assert api_calls and all(r.headers.get("x-auth-token") == "not-logged-anywhere" for r in api_calls)
