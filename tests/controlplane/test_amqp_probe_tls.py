"""The control plane's AMQP probe speaks TLS as the transport URL in ``transport_url_env`` says.

Before: the probe had no TLS at all, so a TLS-only RabbitMQ declared in ``[controlplane]`` failed its probe
for ever and haven took a healthy node for a failing one (a stateful service's failing replica is
restarted). Real TLS handshakes on loopback (tests/servers/tls.py: a private CA, a TLS front passing the
bytes on to the session's real RabbitMQ), as tests/evidence/test_broker_tls.py does for serve's look.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from haven.controlplane.config import parse_controlplane
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.running import ControlPlane
from haven.domain.clock import RealClock
from haven.domain.controlplane import ProbeKind, ProbeSpec
from haven.domain.errors import ConfigError
from haven.evidence.transport_url import tls_for
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)
from servers.tls import Pki, last_handshake, pki_fixture, tls_front  # noqa: F401 (pki)


@pytest.mark.rabbitmq
async def test_a_tls_rabbitmq_passes_with_the_ca_the_url_names_and_fails_clearly_without(
    pki: Pki, rabbitmq: RabbitMQ
) -> None:
    for front in tls_front(pki.server("rabbit-probe", ["127.0.0.1"]), backend=rabbitmq.port):
        url = f"rabbit://nova:pw@127.0.0.1:{front.port}/?ssl=1"
        environ = {"MQ_PW": "guest", "WITH_CA": f"{url}&ssl_ca_file={pki.ca}", "NO_CA": url}
        prober = NetworkProber(environ=environ)
        try:
            spec = ProbeSpec(
                ProbeKind.AMQP, front.port, user="guest", password_env="MQ_PW", timeout_s=5.0,
                transport_url_env="WITH_CA",
            )  # fmt: skip
            passed = await prober.probe("127.0.0.1", spec)
            assert passed.ok and passed.detail == "published and got back", passed.detail
            assert last_handshake(front, 0) == "ok"  # before: plain AMQP on the TLS port, no handshake
            failed = await prober.probe("127.0.0.1", replace(spec, transport_url_env="NO_CA"))
            assert not failed.ok
            assert f"TLS handshake with 127.0.0.1:{front.port} failed" in failed.detail, failed.detail
            assert "CERTIFICATE_VERIFY_FAILED" in failed.detail
            assert "the system CAs; the URL names no ssl_ca_file" in failed.detail
            assert "UNKNOWN_CA" in last_handshake(front, 1)
        finally:
            await prober.close()


def test_the_broker_name_is_checked_only_for_the_url_s_one_host() -> None:
    one = "rabbit://u:p@rabbit-1:5671/?ssl=1&ssl_ca_file=/ca.pem"
    several = "rabbit://u:p@rabbit-1:5671,u:p@rabbit-2:5671/?ssl=1&ssl_ca_file=/ca.pem"
    for url, address, name in (
        (one, "rabbit-1:5671", "rabbit-1"),  # the host oslo.messaging connects to and checks
        (one, "10.0.0.12:5671", None),  # a replica the URL does not name alone: the chain only
        (several, "rabbit-1:5671", None),  # oslo checks the chain only with several hosts
        (one, None, "rabbit-1"),  # serve's look: whichever host of the URL
    ):
        options = tls_for(url, address)
        assert isinstance(options, dict) and options["server_hostname"] == name, (url, address)
    assert tls_for("rabbit://u:p@h:5672/", "h:5672") is False


def test_the_url_s_tls_files_are_checked_when_the_control_plane_starts(pki: Pki, tmp_path: Path) -> None:
    section = {
        "controllers": [{"host": "ctl-1", "address": "127.0.0.1"}],
        "services": {
            "rabbitmq": {
                "probe": {
                    "kind": "amqp", "port": 5671, "user": "haven", "password_env": "MQ_PW",
                    "transport_url_env": "MQ_URL",
                }
            }
        },
    }  # fmt: skip
    config = parse_controlplane(section, "haven.toml")
    url = "rabbit://haven:pw@127.0.0.1:5671/?ssl=1"

    def start(transport_url: str) -> ControlPlane:
        environ = {"MQ_PW": "x", "MQ_URL": transport_url}
        return ControlPlane(config, simulated_cloud=False, clock=RealClock(), environ=environ)

    missing = tmp_path / "nowhere.pem"
    named = f"rabbitmq probe: transport_url_env MQ_URL: ssl_ca_file: no such file: {missing}"
    with pytest.raises(ConfigError, match=named):
        start(f"{url}&ssl_ca_file={missing}")
    with pytest.raises(ConfigError, match="without ssl=1"):
        start(f"rabbit://h:5671/?ssl_ca_file={pki.ca}")
    asyncio.run(start(f"{url}&ssl_ca_file={pki.ca}").aclose())
