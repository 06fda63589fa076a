"""haven.toml's [controlplane]: the catalogue's defaults, overrides, and every mistake named with its fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from haven.cli.main import main
from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import parse_controlplane
from haven.domain.controlplane import ProbeKind, ServiceName, Spread
from haven.domain.errors import ConfigError
from haven.service.config import load_config

GOOD = """
[controlplane]
gate_share = 0.6
[[controlplane.controllers]]
host = "ctl-1"
domain = "rack-a"
address = "10.0.0.11"
[[controlplane.controllers]]
host = "ctl-2"
domain = "rack-b"
[controlplane.services.keystone]
[controlplane.services.nova-api]
min_replicas = 3
unit = "devstack@n-api.service"
hosts = ["ctl-1", "ctl-2"]
spread = "none"
probe = { port = 18774, failure_threshold = 5 }
restart = { backoff_max_s = 60, crash_loop_max_restarts = 3 }
[controlplane.services.my-worker]
unit = "my-worker.service"
depends_on = ["rabbitmq"]
probe = { kind = "tcp", port = 7000 }
"""


SVC = "[controlplane.services.nova-api]\n"


def parse(text: str) -> object:
    return parse_controlplane(tomllib.loads(text).get("controlplane"), "haven.toml")


def test_the_catalogue_covers_the_control_plane() -> None:
    for name in ("keystone", "nova-api", "nova-conductor", "nova-scheduler", "placement-api", "glance-api",
                 "neutron-server", "mariadb", "rabbitmq", "memcached", "haproxy"):  # fmt: skip
        assert ServiceName(name) in CATALOGUE
    assert CATALOGUE[ServiceName("glance-api")].probe is not None
    assert CATALOGUE[ServiceName("glance-api")].probe.path == "/healthcheck"  # type: ignore[union-attr]
    assert CATALOGUE[ServiceName("mariadb")].stateful


def test_defaults_and_overrides() -> None:
    config = parse_controlplane(tomllib.loads(GOOD)["controlplane"], "haven.toml")
    assert config.enabled and config.settings.gate_share == 0.6
    assert [(c.host, c.domain, c.address) for c in config.controllers] == [
        ("ctl-1", "rack-a", "10.0.0.11"),
        ("ctl-2", "rack-b", ""),
    ]
    by_name = {s.name: s for s in config.services}
    assert by_name[ServiceName("keystone")] == CATALOGUE[ServiceName("keystone")]
    api = by_name[ServiceName("nova-api")]
    assert (api.min_replicas, api.unit, api.spread) == (3, "devstack@n-api.service", Spread.NONE)
    assert api.probe is not None and (api.probe.port, api.probe.path, api.probe.failure_threshold) == (
        18774,
        "/",
        5,
    )
    assert (api.restart.backoff_max_s, api.restart.crash_loop_max_restarts) == (60.0, 3)
    assert api.backend == CATALOGUE[ServiceName("nova-api")].backend
    worker = by_name[ServiceName("my-worker")]
    assert worker.probe is not None and worker.probe.kind is ProbeKind.TCP and worker.probe.port == 7000


def test_no_section_manages_nothing() -> None:
    assert not parse_controlplane(None, "haven.toml").enabled


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("[controlplane]\nfoo = 1", "unknown key(s) foo", "known keys"),
        ("[controlplane]\ngate_share = 2.0", "gate_share must be in (0, 1]", ""),
        (SVC + "min_replica = 3", "services.nova-api: unknown key(s) min_replica", "min_replicas"),
        (SVC + "min_replicas = 'three'", "min_replicas must be an integer, got 'three'", "min_replicas = 3"),
        (SVC + "min_replicas = 0", "min_replicas must be at least 1", ""),
        (SVC + "spread = 'rack'", "spread must be one of 'domains', 'none', got 'rack'", ""),
        (SVC + "probe = { port = 99999 }", "probe: port must be between 1 and 65535", ""),
        (SVC + "probe = { kind = 'udp' }", "kind must be one of 'http', 'tcp'", ""),
        (
            SVC + "probe = { expect_status = [2000] }",
            "expect_status must be a list of HTTP status codes",
            "expect_status = [200, 300]",
        ),
        (SVC + "restart = { backoff_factor = 0.5 }", "backoff_factor must be at least 1", ""),
        (SVC + "depends_on = ['mysql']", "depends_on names 'mysql', which is no service", "mariadb"),
        (
            "[controlplane.services.frobnicator]",
            "'frobnicator' is not in the built-in catalogue, so it needs a unit",
            'unit = "frobnicator.service"',
        ),
        ("[[controlplane.controllers]]\ndomain = 'a'", "host must be a non-empty string", ""),
        (
            "[[controlplane.controllers]]\nhost = 'c'\n[[controlplane.controllers]]\nhost = 'c'",
            "host 'c' is listed twice",
            "",
        ),
        (
            "[[controlplane.controllers]]\nhost = 'c'\n[controlplane.services.nova-api]\nhosts = ['d']",
            "hosts d are not controllers",
            "[[controlplane.controllers]]",
        ),
        ("[controlplane]\nservices = 3", "services: must be a table", "[controlplane.services.NAME]"),
    ],
)
def test_mistakes_are_named_with_their_fix(text: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert message in caught.value.message and "haven.toml [controlplane]" in caught.value.message
    assert hint in caught.value.hint


def test_haven_toml_reads_the_section_and_the_cli_names_a_mistake(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "haven.toml").write_text(GOOD)
    config = load_config(tmp_path)
    assert config.controlplane.enabled and len(config.controlplane.services) == 3
    (tmp_path / "haven.toml").write_text('[controlplane.services.nova-api]\nmin_replicas = "three"\n')
    code = main(["--home", str(tmp_path), "status"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "[controlplane] services.nova-api: min_replicas must be an integer, got 'three'" in err
    assert "hint: e.g. min_replicas = 3" in err
