"""haven.lab.ha_openstack's parts that need no lab: the URLs OpenStack is given, the config rewrite,
the RabbitMQ part of the lab state read back. The move itself runs on a real HA lab in
bench/stateful_openstack.py (a test would restart every unit of the session's HA lab: minutes)."""

from __future__ import annotations

import configparser
import subprocess
from pathlib import Path

import pytest

from haven.lab import ha_openstack, ha_stateful
from haven.lab.process import LabServiceError


def test_the_transport_url_lists_the_three_nodes_as_oslo_messaging_parses_it() -> None:
    from oslo_config import cfg
    from oslo_messaging import TransportURL

    backends = ha_openstack.Backends(3306, "s3cr%t", (5672, 5673, 5674))
    url = TransportURL.parse(cfg.ConfigOpts(), backends.transport_url)
    assert url.transport == "rabbit"
    assert [(h.hostname, h.port, h.username, h.password) for h in url.hosts] == [
        ("127.0.0.1", port, "openstack", "s3cr%t") for port in (5672, 5673, 5674)
    ]
    assert backends.db_url("nova") == "mysql+pymysql://openstack:s3cr%t@127.0.0.1:3306/nova?charset=utf8"


def test_the_rewrite_changes_only_the_database_and_bus_and_keeps_the_plain_files(tmp_path: Path) -> None:
    for folder, name, text in (
        ("nova", "nova.conf", "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:1/\n"
         "compute_driver = fake.FakeDriverWithoutFakeNodes\n[api_database]\nconnection = sqlite://\n"
         "[database]\nconnection = sqlite://\n[keystone_authtoken]\npassword = a%b\n"),
        ("placement", "placement.conf", "[placement_database]\nconnection = sqlite://\n"),
        ("keystone", "keystone.conf", "[database]\nconnection = sqlite:///k\n[token]\nprovider = fernet\n"),
        ("glance", "glance-api.conf", "[DEFAULT]\nenabled_backends = fs:file\n[database]\nconnection = x\n"),
    ):  # fmt: skip
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text(text)
    backends = ha_openstack.Backends(4000, "pw", (1, 2, 3))
    ha_openstack._rewrite_configs(tmp_path, backends)
    nova = configparser.RawConfigParser()
    nova.read(tmp_path / "nova" / "nova.conf")
    assert nova.get("DEFAULT", "transport_url") == backends.transport_url
    assert nova.get("api_database", "connection") == backends.db_url("nova_api")
    assert nova.get("database", "connection") == backends.db_url("nova")
    assert nova.get("DEFAULT", "compute_driver") == "fake.FakeDriverWithoutFakeNodes"
    assert nova.get("keystone_authtoken", "password") == "a%b"
    assert (tmp_path / "nova" / "nova.conf").stat().st_mode & 0o077 == 0
    assert "guest:guest" in (tmp_path / "nova" / "nova.conf.plain").read_text()
    keystone = configparser.RawConfigParser()
    keystone.read(tmp_path / "keystone" / "keystone.conf")
    assert keystone.get("database", "connection") == backends.db_url("keystone")
    assert keystone.get("token", "provider") == "fernet"
    placement = (tmp_path / "placement" / "placement.conf").read_text()
    assert backends.db_url("placement") in placement
    assert backends.db_url("glance") in (tmp_path / "glance" / "glance-api.conf").read_text()


def test_the_rabbitmq_part_of_the_lab_state_reads_back() -> None:
    saved = {
        "folder": "/lab/ha/rabbitmq", "epmd_port": 4400, "epmd_host": "ctl-1", "started_in_s": 9.5,
        "nodes": [
            {"name": f"rabbit-{i}@localhost", "host": f"ctl-{2 - i % 2}", "unit": f"rabbitmq-{i}.service",
             "bus": f"unix:path=/b{i}", "amqp_port": 5000 + i, "dist_port": 6000 + i}
            for i in (1, 2, 3)
        ],
    }  # fmt: skip
    rabbit = ha_stateful.rabbit_from_state(saved)
    assert ha_stateful.describe_rabbit(rabbit) == saved
    assert rabbit.node("rabbit-2").layout.folder == Path("/lab/ha/rabbitmq/n2")
    assert rabbit.node("rabbit-3").layout.home == Path("/lab/ha/rabbitmq")
    with pytest.raises(LabServiceError, match="RabbitMQ part is not readable"):
        ha_stateful.rabbit_from_state({"folder": "/x"})


def test_a_lab_without_the_ha_part_is_refused_with_the_command(tmp_path: Path) -> None:
    with pytest.raises(LabServiceError, match="haven lab up --ha"):
        ha_openstack.use_clusters(tmp_path, lambda _m: None)


@pytest.mark.parametrize("workers", [True, False])
def test_the_move_keeps_serve_env_s_probe_password_and_gives_the_clusters_transport_url(
    tmp_path: Path, workers: bool
) -> None:
    """haven serve's probes read LAB/ha/serve.env: the move must change only the transport URL (it once
    wrote the URL alone, and every nova-api deep probe then failed for want of the password)."""
    from haven.lab import ha as ha_lab

    (tmp_path / "keystone").mkdir()
    (tmp_path / "keystone" / "admin-password").write_text("adm'in\n")
    (tmp_path / "nova").mkdir()
    (tmp_path / "nova" / "nova.conf").write_text(
        "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:1/\n"
    )
    env = tmp_path / "ha" / "serve.env"
    env.parent.mkdir()
    env.write_text(ha_lab.serve_env(tmp_path, workers=workers))
    backends = ha_openstack.Backends(4000, "pw", (5672, 5673, 5674))
    # as _rewrite_configs leaves nova.conf (tested above)
    (tmp_path / "nova" / "nova.conf").write_text(f"[DEFAULT]\ntransport_url = {backends.transport_url}\n")
    ha_openstack.rewrite_serve_env(env, tmp_path)
    shown = 'echo "$HAVEN_LAB_PROBE_PASSWORD|${HAVEN_LAB_NOVA_TRANSPORT_URL-}"'
    read = subprocess.run(
        ["bash", "-c", f"set -a; . {env}; {shown}"],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"},  # only the file's
    ).stdout.strip()  # fmt: skip
    assert read == f"adm'in|{backends.transport_url if workers else ''}"
    assert env.stat().st_mode & 0o077 == 0
