"""The broker look's TLS verified against the CA the transport URL names (haven.evidence.transport_url).

Review R2-R2: ``?ssl=1`` verified the broker's certificate against the system's CAs only, so a RabbitMQ
with a private CA was unreachable to every look: a lasting false DOWN of rabbitmq in haven serve, while
Nova's notifications (oslo.messaging, which reads ``ssl_ca_file`` from the URL's query) kept arriving.
Real TLS handshakes on loopback: a CA and server certificates made with ``cryptography``, a TLS server
in a thread (and, with the session's real RabbitMQ, a TLS front that passes the bytes on to it).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from haven.domain.errors import ConfigError
from haven.evidence.broker import BrokerUnreachable, look
from haven.evidence.transport_url import tls_options
from haven.explain.config import parse_diagnosis
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)


@dataclass
class Pki:
    ca: Path
    folder: Path

    def server(self, name: str, san: list[str]) -> tuple[Path, Path]:
        """A server certificate signed by the CA, for ``san`` (IP addresses or DNS names)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        ca_key = serialization.load_pem_private_key((self.folder / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate(self.ca.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for one in san:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(one)))
            except ValueError:
                names.append(x509.DNSName(one))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
        )
        cert_path, key_path = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA, as a RabbitMQ deployment's own (no system store knows it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "haven-test-rabbitmq-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (folder / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(folder / "ca.pem", folder)


@dataclass
class TlsFront:
    """A TLS server on loopback: each connection's handshake, then its bytes passed on to ``backend``'s
    port (a real RabbitMQ) or the connection closed (no backend)."""

    port: int
    handshakes: list[str] = field(default_factory=list)  # "ok" or the server side's error, each


def _serve(listener: socket.socket, context: ssl.SSLContext, front: TlsFront, backend: int | None) -> None:
    while True:
        try:
            raw, _ = listener.accept()
        except OSError:
            return  # closed: the test is over
        try:
            conn = context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            front.handshakes.append(f"{type(exc).__name__}: {exc}")
            raw.close()
            continue
        front.handshakes.append("ok")
        if backend is None:
            conn.close()
            continue
        upstream = socket.create_connection(("127.0.0.1", backend))
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for one in (source, sink):
            with contextlib.suppress(OSError):
                one.close()


def _front(cert: tuple[Path, Path], backend: int | None = None) -> Iterator[TlsFront]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    front = TlsFront(listener.getsockname()[1])
    thread = threading.Thread(target=_serve, args=(listener, context, front, backend), daemon=True)
    thread.start()
    try:
        yield front
    finally:
        listener.close()
        thread.join(5)


def last_handshake(front: TlsFront, before: int) -> str:
    """The front's words on the handshake after the ``before``-th: the client may raise on a refused
    certificate before the server's side has ended its own (it records it in its thread)."""
    deadline = time.monotonic() + 5.0
    while len(front.handshakes) <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    return front.handshakes[-1] if len(front.handshakes) > before else "none"


@pytest.fixture
def tls_server(pki: Pki) -> Iterator[TlsFront]:
    yield from _front(pki.server("broker-ip", ["127.0.0.1"]))


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
    for front in _front(pki.server("broker-dns", ["rabbit.example.com"])):
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
    for front in _front(pki.server("rabbit-front", ["127.0.0.1"]), backend=rabbitmq.port):
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
