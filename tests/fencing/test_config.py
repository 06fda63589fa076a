"""The [fencing] section: parsed into per-host BMCs, mistakes named by key, passwords never shown,
and a host with no fence driver is refused (never silently "fenced")."""

from __future__ import annotations

from pathlib import Path

import pytest

from haven.cli.main import main
from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.errors import ConfigError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.fencing.ipmi import IpmiFencer
from haven.fencing.redfish import RedfishFencer
from haven.fencing.registry import FencingNotConfigured, build_fencer
from haven.service.config import HavenConfig, load_config
from servers.process import free_port

SECRET = "in-file-Pa55word"
GOOD = f"""
[fencing]
default_driver = "none"
[[fencing.hosts]]
name = "compute-1"
driver = "redfish"
address = "https://10.0.0.11"
username = "admin"
password_env = "C1_BMC_PASSWORD"
system_id = "1"
verify_tls = false
[[fencing.hosts]]
name = "compute-2"
driver = "ipmi"
address = "10.0.0.12"
port = 6230
username = "admin"
password = "{SECRET}"
timeout_s = 3
"""


def load(tmp_path: Path, text: str) -> HavenConfig:
    path = tmp_path / "haven.toml"
    path.write_text(text)
    return load_config(tmp_path, path)


def test_hosts_are_read_with_their_driver_and_settings(tmp_path: Path) -> None:
    fencing = load(tmp_path, GOOD).fencing
    assert fencing.default_driver == "none"
    one, two = fencing.hosts[HostName("compute-1")], fencing.hosts[HostName("compute-2")]
    assert (one.driver, one.address, one.system_id, one.verify_tls) == (
        "redfish",
        "https://10.0.0.11",
        "1",
        False,
    )
    assert (two.driver, two.port, two.timeout_s) == ("ipmi", 6230, 3.0)
    assert SECRET not in repr(fencing) and SECRET not in str(two)


def test_without_a_fencing_section_the_simulated_cloud_fences_through_its_own_bmcs(tmp_path: Path) -> None:
    assert load(tmp_path, "").fencing.default_driver == "sim"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (('driver = "ipmi"', 'driver = "ilo"'), "driver 'ilo' is not known"),
        (('address = "10.0.0.12"\n', ""), "address is required"),
        (
            ('password_env = "C1_BMC_PASSWORD"', 'password_env = "C1"\npassword = "x"'),
            "exactly one of password",
        ),
        (('address = "https://10.0.0.11"', 'address = "https://root:hunter2@10.0.0.11"'), "must not carry"),
        (('address = "https://10.0.0.11"', 'address = "10.0.0.11"'), "not a Redfish base URL"),
        (("port = 6230", "port = 70000"), "port must be between"),
        (("port = 6230", 'port = "6230"'), "port must be an integer"),
        (("timeout_s = 3", "timeout_s = 0"), "timeout_s must be positive"),
        (("port = 6230", "verify_tls = true"), "only apply to driver redfish"),
        (('system_id = "1"', 'system = "1"'), "unknown key(s) system"),
        (('default_driver = "none"', 'default_driver = "redfish"'), "default_driver 'redfish'"),
        (('name = "compute-2"', 'name = "compute-1"'), "compute-1 is listed twice"),
    ],
)
def test_each_mistake_is_named_with_its_host_and_key(
    tmp_path: Path, change: tuple[str, str], named: str
) -> None:
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, GOOD.replace(old, new, 1))
    message = str(caught.value)
    assert named in message
    assert "hunter2" not in message and SECRET not in message


async def test_the_routing_fencer_sends_each_host_to_its_driver(tmp_path: Path) -> None:
    fencing = load(tmp_path, GOOD).fencing
    fencer = build_fencer(fencing, {"C1_BMC_PASSWORD": "from-env"})
    assert isinstance(fencer.driver_for(HostName("compute-1")), RedfishFencer)
    assert isinstance(fencer.driver_for(HostName("compute-2")), IpmiFencer)


async def test_a_missing_password_variable_stops_start_up_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="C1_BMC_PASSWORD"):
        build_fencer(load(tmp_path, GOOD).fencing, {})


async def test_a_host_without_a_fence_driver_is_refused_not_fenced(tmp_path: Path) -> None:
    fencer = build_fencer(load(tmp_path, GOOD).fencing, {"C1_BMC_PASSWORD": "x"})
    for action in (fencer.power_off, fencer.power_status, fencer.power_on):
        with pytest.raises(FencingNotConfigured, match="no fence driver is configured for compute-9"):
            await action(HostName("compute-9"))


async def test_driver_sim_routes_to_the_simulated_bmcs_and_needs_them(tmp_path: Path) -> None:
    config = load(tmp_path, "").fencing
    with pytest.raises(ConfigError, match="not the simulated one"):
        build_fencer(config, {})
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=0, zones=1), VirtualClock())
    fencer = build_fencer(config, {}, sim=SimFencer(cloud))
    assert await fencer.power_status(cloud.host_names()[0]) is BmcPower.ON


def test_serve_stops_before_touching_anything_when_a_bmc_password_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "haven.toml").write_text(
        GOOD.replace(f'password = "{SECRET}"', 'password_env = "C2_BMC_PASSWORD"')
    )
    monkeypatch.setenv("HAVEN_HOME", str(home))
    monkeypatch.delenv("C1_BMC_PASSWORD", raising=False)
    monkeypatch.setenv("C2_BMC_PASSWORD", "set")
    assert main(["serve", "--bind", f"127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "[[fencing.hosts]] compute-1: environment variable C1_BMC_PASSWORD" in err
    assert "export C1_BMC_PASSWORD" in err and "Traceback" not in err
    assert sorted(p.name for p in home.iterdir()) == ["haven.toml"]  # no token, no database
