"""The control plane's AMQP probe speaks TLS as the transport URL in ``transport_url_env`` says.

Before: the probe had no TLS at all, so a TLS-only RabbitMQ declared in ``[controlplane]`` failed its probe
for ever and haven took a healthy node for a failing one (a stateful service's failing replica is
restarted). Real TLS handshakes on loopback (tests/servers/tls.py: a private CA, a TLS front passing the
bytes on to the session's real RabbitMQ), as tests/evidence/test_broker_tls.py does for serve's look.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
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


async def test_a_certificate_that_does_not_name_the_replica_probed_is_refused(pki: Pki) -> None:
    # Review R1: the URL names rabbit-1, the replica is probed at 127.0.0.1 and its certificate names
    # rabbit-1 only. Before, the name was checked only for the URL's one host when it was the replica
    # probed: the chain alone here, the handshake completed and the password would have followed.
    for front in tls_front(pki.server("rabbit-1", ["rabbit-1.example.com"])):
        url = f"rabbit://nova:pw@rabbit-1.example.com:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        prober = NetworkProber(environ={"MQ_PW": "guest", "MQ_URL": url})
        try:
            spec = ProbeSpec(
                ProbeKind.AMQP, front.port, user="guest", password_env="MQ_PW", timeout_s=5.0,
                transport_url_env="MQ_URL",
            )  # fmt: skip
            failed = await prober.probe("127.0.0.1", spec)
        finally:
            await prober.close()
        assert not failed.ok
        assert f"TLS handshake with 127.0.0.1:{front.port} failed" in failed.detail, failed.detail
        assert "the name its certificate must carry: 127.0.0.1)" in failed.detail, failed.detail
        assert "BAD_CERTIFICATE" in last_handshake(front, 0)  # the server's side: refused, no password


def test_the_broker_name_is_always_checked_against_the_host_connected_to() -> None:
    one = "rabbit://u:p@rabbit-1:5671/?ssl=1&ssl_ca_file=/ca.pem"
    several = "rabbit://u:p@rabbit-1:5671,u:p@rabbit-2:5671/?ssl=1&ssl_ca_file=/ca.pem"
    local = "rabbit://u:p@localhost:5671,u:p@localhost:5672/?ssl=1&ssl_ca_file=/ca.pem"
    for url, address, name in (
        (one, "rabbit-1:5671", "rabbit-1"),  # oslo.messaging names the URL's one host
        (one, "10.0.0.12:5671", "10.0.0.12"),  # a replica probed by its address: that address
        (several, "rabbit-2:5671", "rabbit-2"),  # oslo gives None, kombu fills in the host connected to
        (several, None, "rabbit-1"),  # no address: the URL's first host
        (local, "localhost:5672", "127.0.0.1"),  # kombu turns localhost into 127.0.0.1 first
        (one.replace("rabbit-1", "localhost"), None, "localhost"),  # ... but oslo names one host itself
    ):
        options = tls_for(url, address)
        assert isinstance(options, dict) and options["server_hostname"] == name, (url, address)
    assert tls_for("rabbit://u:p@h:5672/", "h:5672") is False
    assert tls_for("rabbit://u:p@h:5671,u:p@i:5671/?ssl=1", "i:5671") is True  # no CA: no name, as oslo


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


def test_a_ca_haven_serve_may_not_read_is_refused_when_its_control_plane_starts(
    pki: Pki, tmp_path: Path
) -> None:
    """Review R2-R2: a CA file haven's own user cannot read passed the start-up check (taken for an
    operator's command), and then every AMQP probe failed on it: RabbitMQ held as a mass failure. A
    child process, as nobody when the tests run as root (root reads any file), starts the check."""
    folder = Path(tempfile.mkdtemp(prefix="haven-ca-"))  # pytest's own folders are 0700: nobody enters none
    folder.chmod(0o755)
    ca = folder / "ca.pem"
    ca.write_bytes(pki.ca.read_bytes())
    ca.chmod(0o600)
    url = f"rabbit://haven:pw@127.0.0.1:5671/?ssl=1&ssl_ca_file={ca}"
    section = {
        "controllers": [{"host": "ctl-1", "address": "127.0.0.1"}],
        "services": {"rabbitmq": {"probe": {
            "kind": "amqp", "port": 5671, "user": "haven", "password_env": "MQ_PW",
            "transport_url_env": "MQ_URL",
        }}},
    }  # fmt: skip
    code = (
        "import os\n"
        "from haven.controlplane.config import parse_controlplane\n"
        "from haven.controlplane.running import ControlPlane\n"
        "from haven.domain.clock import RealClock\n"
        "from haven.domain.errors import ConfigError\n"
        "from haven.evidence.transport_url import tls_problem\n"
        f"config = parse_controlplane({section!r}, 'haven.toml')\n"
        "if os.geteuid() == 0:\n"
        "    os.seteuid(65534)\n"
        f"print(repr(tls_problem({url!r})))\n"
        "try:\n"
        f"    environ = {{'MQ_PW': 'x', 'MQ_URL': {url!r}}}\n"
        "    ControlPlane(config, simulated_cloud=False, clock=RealClock(), environ=environ)\n"
        "    print('started')\n"
        "except ConfigError as exc:\n"
        "    print(' '.join(str(exc).split()))\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 0, done.stderr[-2000:]
    operator, served = done.stdout.strip().splitlines()[:2]
    assert operator == "None", done.stdout  # an operator's command as another user lets it be
    said = "rabbitmq probe: transport_url_env MQ_URL: ssl_ca_file: cannot be read by this user: Permission"
    assert said in served, done.stdout
