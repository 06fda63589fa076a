"""TLS on loopback for the tests: a private CA and its server certificates (made with ``cryptography``),
and a TLS front in a thread that records each handshake and passes the bytes on to a real server's port
(the session's RabbitMQ) or closes the connection.

Used by tests/evidence/test_broker_tls.py (serve's look at the bus) and
tests/controlplane/test_amqp_probe_tls.py (the control plane's AMQP probe): ``pki_fixture`` is the
module-scoped ``pki`` fixture, imported as ``servers.rabbitmq``'s is. ``certificate`` also makes the
Redfish emulator's self-signed one (servers.redfish).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["Pki", "TlsFront", "certificate", "last_handshake", "pki_fixture", "tls_front"]


def certificate(
    folder: Path, name: str, san: Sequence[str] = (), *, signer: tuple[Path, Path] | None = None,
    ca: bool = False,
) -> tuple[Path, Path]:
    """A certificate for ``san`` (IP addresses or DNS names) and its key, written as ``folder/name.pem``
    and ``folder/name.key``: signed by ``signer`` (a CA's certificate and key files), else by itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer, signing_key = subject, key
    if signer is not None:
        issuer = x509.load_pem_x509_certificate(signer[0].read_bytes()).subject
        signing_key = serialization.load_pem_private_key(signer[1].read_bytes(), None)  # type: ignore[assignment]
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    if san:
        names = x509.SubjectAlternativeName([_general(n) for n in san])
        builder = builder.add_extension(names, critical=False)
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(builder.sign(signing_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _general(name: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


@dataclass
class Pki:
    ca: Path
    folder: Path

    def server(self, name: str, san: list[str]) -> tuple[Path, Path]:
        """A server certificate signed by the CA, for ``san`` (IP addresses or DNS names)."""
        return certificate(self.folder, name, san, signer=(self.ca, self.ca.with_suffix(".key")))


@pytest.fixture(scope="module", name="pki")
def pki_fixture(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA, as a RabbitMQ deployment's own (no system store knows it)."""
    folder = tmp_path_factory.mktemp("pki")
    ca, _ = certificate(folder, "haven-test-rabbitmq-ca", ca=True)
    return Pki(ca, folder)


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


def tls_front(cert: tuple[Path, Path], backend: int | None = None) -> Iterator[TlsFront]:
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
        with contextlib.suppress(OSError):  # wakes the thread's accept (close alone leaves it blocked)
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def last_handshake(front: TlsFront, before: int) -> str:
    """The front's words on the handshake after the ``before``-th: the client may raise on a refused
    certificate before the server's side has ended its own (it records it in its thread)."""
    deadline = time.monotonic() + 5.0
    while len(front.handshakes) <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    return front.handshakes[-1] if len(front.handshakes) > before else "none"
