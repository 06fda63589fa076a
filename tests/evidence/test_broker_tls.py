"""The broker look's TLS verified against the CA the transport URL names (haven.evidence.transport_url).

Review R2-R2: ``?ssl=1`` verified the broker's certificate against the system's CAs only, so a RabbitMQ
with a private CA was unreachable to every look: a lasting false DOWN of rabbitmq in haven serve, while
Nova's notifications (oslo.messaging, which reads ``ssl_ca_file`` from the URL's query) kept arriving.
Real TLS handshakes on loopback: a CA and server certificates made with ``cryptography``, a TLS server
in a thread (and, with the session's real RabbitMQ, a TLS front that passes the bytes on to it), both in
tests/servers/tls.py (shared with the control plane's AMQP probe's tests).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from haven.domain.errors import ConfigError
from haven.evidence.broker import BrokerUnreachable, look
from haven.evidence.transport_url import tls_options
from haven.explain.config import parse_diagnosis
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)
from servers.tls import Pki, TlsFront, last_handshake, pki_fixture, tls_front  # noqa: F401 (pki)


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[TlsFront]:
    yield from tls_front(pki.server("broker-ip", ["127.0.0.1"]))


def test_without_its_ca_the_look_fails_verification_and_with_it_the_handshake_passes(
    pki: Pki, tls_server: TlsFront
) -> None:
    base = f"rabbit://nova:pw@127.0.0.1:{tls_server.port}/?ssl=1"
    with pytest.raises(BrokerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        look(base, timeout_s=2.0)  # the system's CAs: no private CA among them
    assert "UNKNOWN_CA" in last_handshake(tls_server, 0)
    with pytest.raises(BrokerUnreachable) as caught:  # the front speaks no AMQP: closed after the handshake
        look(f"{base}&ssl_ca_file={pki.ca}", timeout_s=2.0)
    assert "CERTIFICATE_VERIFY_FAILED" not in str(caught.value)
    assert last_handshake(tls_server, 1) == "ok"  # before: verified against the system's CAs only, refused


def _dead_port() -> int:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    return port


def _nova_connects(url: str) -> str:
    """What Nova's client makes of ``url``: oslo.messaging 18.3.1's own TLS parameters and kombu URLs
    (``_fetch_ssl_params``, ``_transform_transport_url``; the hosts in the URL's order, not shuffled), then
    kombu's connection with its failover: "connected" or its error."""
    import kombu
    import oslo_messaging
    from oslo_config import cfg
    from oslo_messaging._drivers.impl_rabbit import Connection

    parsed = oslo_messaging.TransportURL.parse(cfg.ConfigOpts(), url)
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    driver = SimpleNamespace(
        ssl=True, ssl_version="", ssl_key_file="", ssl_cert_file="", ssl_ca_file=query["ssl_ca_file"],
        ssl_server_hostname=Connection._get_ssl_server_hostname(parsed),
    )  # fmt: skip
    params = Connection._fetch_ssl_params(driver)
    urls = ";".join(Connection._transform_transport_url(driver, parsed, host) for host in parsed.hosts)
    connection = kombu.Connection(urls, ssl=params, failover_strategy="round-robin", connect_timeout=2)
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        connection.release()
    return "connected"


def test_the_broker_name_is_checked_as_nova_s_client_checks_it(pki: Pki) -> None:
    # Review R1: oslo.messaging gives server_hostname=None with several hosts and kombu 5.7 fills in the
    # host it connects to, so Nova refuses a certificate for another name with several hosts too; the look
    # checked the chain alone there: RabbitMQ "reachable" while Nova could not connect, and the password
    # sent to any server holding a certificate of that CA.
    for front in tls_front(pki.server("broker-dns", ["rabbit.example.com"])):
        one = f"rabbit://nova:pw@127.0.0.1:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        with pytest.raises(BrokerUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            look(one, timeout_s=2.0)
        assert last_handshake(front, 0) != "ok"
        # the second host answers (nothing listens on the first)
        several = f"rabbit://nova:pw@127.0.0.1:{_dead_port()},nova:pw@127.0.0.1:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        assert _nova_connects(several) != "connected"
        nova_saw = last_handshake(front, 1)
        with pytest.raises(BrokerUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|mismatch"):
            look(several, timeout_s=2.0)
        assert "BAD_CERTIFICATE" in nova_saw and last_handshake(front, 2) == nova_saw  # before: "ok"
    # a certificate that names the host connected to passes, with several hosts too
    for front in tls_front(pki.server("broker-ip", ["127.0.0.1"])):
        several = f"rabbit://nova:pw@127.0.0.1:{_dead_port()},nova:pw@127.0.0.1:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        with pytest.raises(BrokerUnreachable):  # the front speaks no AMQP: closed after the handshake
            look(several, timeout_s=2.0)
        assert last_handshake(front, 0) == "ok"
    # kombu turns localhost into 127.0.0.1 before it fills in the name: with several hosts a certificate
    # for "localhost" alone is refused by Nova, and by the look; with one host oslo names "localhost"
    for front in tls_front(pki.server("broker-localhost", ["localhost"])):
        several = f"rabbit://nova:pw@localhost:{_dead_port()},nova:pw@localhost:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        assert _nova_connects(several) != "connected"
        assert "BAD_CERTIFICATE" in last_handshake(front, 0)
        with pytest.raises(BrokerUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|mismatch"):
            look(several, timeout_s=2.0)
        assert "BAD_CERTIFICATE" in last_handshake(front, 1)
        with pytest.raises(BrokerUnreachable):
            look(f"rabbit://nova:pw@localhost:{front.port}/?ssl=1&ssl_ca_file={pki.ca}", timeout_s=2.0)
        assert last_handshake(front, 2) == "ok"
    assert tls_options("rabbit://h:5671/?ssl=1", "h:5671") is True  # no file named: no name, as oslo
    assert tls_options("rabbit://h:5671/", "h:5671") is False
    named = tls_options("rabbit://[::1]:5671/?ssl=1&ssl_ca_file=/ca.pem", "[::1]:5671")
    assert isinstance(named, dict) and named["server_hostname"] == "::1"


@pytest.mark.rabbitmq
def test_a_real_rabbitmq_behind_tls_with_a_private_ca_is_looked_at(pki: Pki, rabbitmq: RabbitMQ) -> None:
    for front in tls_front(pki.server("rabbit-front", ["127.0.0.1"]), backend=rabbitmq.port):
        user = rabbitmq.url.split("//", 1)[1].split("@", 1)[0]
        url = f"rabbit://{user}@127.0.0.1:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        seen = look(url, timeout_s=5.0)
        assert seen.blocked is None and last_handshake(front, 0) == "ok"
        with pytest.raises(BrokerUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            look(url.split("&", 1)[0], timeout_s=5.0)
        assert "UNKNOWN_CA" in last_handshake(front, 1)


def test_the_files_are_checked_when_the_configuration_is_read(pki: Pki, tmp_path: Path) -> None:
    url = "rabbit://nova:pw@rabbit.example.com:5671/?ssl=1"
    assert parse_diagnosis({"transport_url": f"{url}&ssl_ca_file={pki.ca}"}, "haven.toml").transport_url
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigError, match=f"transport_url: ssl_ca_file: no such file: {missing}"):
        parse_diagnosis({"transport_url": f"{url}&ssl_ca_file={missing}"}, "haven.toml")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="ssl_ca_file: not a usable"):
        parse_diagnosis({"transport_url": f"{url}&ssl_ca_file={garbage}"}, "haven.toml")
    with pytest.raises(ConfigError, match="without ssl=1"):
        parse_diagnosis({"transport_url": f"rabbit://h:5671/?ssl_ca_file={pki.ca}"}, "haven.toml")
    cert, key = pki.server("client", ["haven"])
    with pytest.raises(ConfigError, match="ssl_key_file without ssl_cert_file"):
        parse_diagnosis({"transport_url": f"{url}&ssl_key_file={key}"}, "haven.toml")
    both = f"{url}&ssl_ca_file={pki.ca}&ssl_cert_file={cert}&ssl_key_file={key}"
    assert parse_diagnosis({"transport_url": both}, "haven.toml").transport_url == both
    options = tls_options(both, "rabbit.example.com:5671")
    assert isinstance(options, dict)
    files = [options["certfile"], options["keyfile"], options["ca_certs"]]
    assert files == [str(cert), str(key), str(pki.ca)]


def test_a_file_behind_a_folder_this_user_cannot_enter_is_named_not_a_stack_trace(
    pki: Pki, tmp_path: Path
) -> None:
    # Python 3.11's Path.is_file raises PermissionError there: before, every command that read the
    # configuration ended in a stack trace. A child process, as nobody when the tests run as root (root
    # enters any folder), reads the configuration.
    shut = tmp_path / "shut"
    shut.mkdir()
    ca = shut / "ca.pem"
    ca.write_bytes(pki.ca.read_bytes())
    code = (
        "import os\n"
        "from haven.domain.errors import ConfigError\n"
        "from haven.explain.config import parse_diagnosis\n"
        "if os.geteuid() == 0:\n"
        "    os.seteuid(65534)\n"
        "try:\n"
        f"    parse_diagnosis({{'transport_url': 'rabbit://h:5671/?ssl=1&ssl_ca_file={ca}'}}, 'haven.toml')\n"
        "except ConfigError as exc:\n"
        "    print('ConfigError:', exc)\n"
    )
    shut.chmod(0)
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        shut.chmod(0o700)
    assert done.returncode == 0, done.stderr[-2000:]
    said = f"ConfigError: haven.toml [diagnosis]: transport_url: ssl_ca_file: cannot look for {ca}: "
    assert done.stdout.startswith(f"{said}Permission denied (a folder on its path this user"), done.stdout


def test_haven_serve_refuses_a_ca_its_user_may_not_read_the_config_alone_lets_it_be(pki: Pki) -> None:
    # Review R3-D2: the config's check lets an unreadable file pass (an operator's command, run as another
    # user); haven serve then looked at the bus as a user that cannot read the CA, every look failed before
    # its handshake, and RabbitMQ stood DOWN for ever. serve's explainer now refuses it at start. A child
    # process, as nobody when the tests run as root (root reads any file).
    home = Path(tempfile.mkdtemp(prefix="haven-home-"))  # pytest's own folders are 0700: nobody enters none
    try:
        home.chmod(0o755)
        ca = home / "ca.pem"
        ca.write_bytes(pki.ca.read_bytes())
        ca.chmod(0o600)
        url = f"rabbit://haven:pw@127.0.0.1:5671/?ssl=1&ssl_ca_file={ca}"
        (home / "haven.toml").write_text(f'[diagnosis]\ntransport_url = "{url}"\n')
        code = (
            "import os\n"
            "from pathlib import Path\n"
            "from haven.domain.errors import ConfigError\n"
            "from haven.service.config import load_config\n"
            "from haven.service.explaining import build_explaining\n"
            "if os.geteuid() == 0:\n"
            "    os.seteuid(65534)\n"
            f"config = load_config(Path({str(home)!r}))\n"  # the config's own check lets it be
            "try:\n"
            "    build_explaining(config, serving=True)\n"
            "    print('serve: started')\n"
            "except ConfigError as exc:\n"
            "    print('serve: ConfigError:', exc)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(home)
    assert done.returncode == 0, done.stderr[-2000:]
    serve = done.stdout.strip()
    assert serve.startswith("serve: ConfigError: "), serve
    assert "[diagnosis]: transport_url: ssl_ca_file: cannot be read by this user: Permission denied" in serve
