"""The broker look's TLS verified against the CA the transport URL names (haven.evidence.transport_url).

Review R2-R2: ``?ssl=1`` verified the broker's certificate against the system's CAs only, so a RabbitMQ
with a private CA was unreachable to every look: a lasting false DOWN of rabbitmq in haven serve, while
Nova's notifications (oslo.messaging, which reads ``ssl_ca_file`` from the URL's query) kept arriving.
Real TLS handshakes on loopback: a CA and server certificates made with ``cryptography``, a TLS server
in a thread (and, with the session's real RabbitMQ, a TLS front that passes the bytes on to it), both in
tests/servers/tls.py (shared with the control plane's AMQP probe's tests).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

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


def test_the_broker_name_is_checked_as_oslo_messaging_checks_it(pki: Pki) -> None:
    # a certificate for another name: refused when the URL has one host (oslo's ssl_server_hostname)...
    for front in tls_front(pki.server("broker-dns", ["rabbit.example.com"])):
        url = f"rabbit://nova:pw@127.0.0.1:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        with pytest.raises(BrokerUnreachable, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            look(url, timeout_s=2.0)
        assert last_handshake(front, 0) != "ok"
        # ... and the chain alone with several hosts (oslo sends no server name then): the second host
        # (nothing listens on the first) completes its handshake
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        dead = closed.getsockname()[1]
        closed.close()
        several = f"rabbit://nova:pw@127.0.0.1:{dead},nova:pw@127.0.0.1:{front.port}/?ssl=1&ssl_ca_file={pki.ca}"
        with pytest.raises(BrokerUnreachable):
            look(several, timeout_s=2.0)
        assert last_handshake(front, 1) == "ok"
    assert tls_options("rabbit://h:5671/?ssl=1", "h:5671") is True  # no file named: as before
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
