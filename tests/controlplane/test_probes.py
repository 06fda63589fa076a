"""haven.controlplane.drivers.probes against real sockets: a timeout is a failure, never an exception."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from haven.controlplane.drivers.probes import NetworkProber
from haven.domain.controlplane import ProbeKind, ProbeSpec

from .servers import free_port


@pytest.fixture
async def http_server() -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        status = b"200 OK" if request.startswith(b"GET /healthcheck ") else b"404 Not Found"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
def hung_port() -> Iterator[int]:
    """A port whose process never answers (as a SIGSTOPped one): the kernel still completes connects."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


async def test_http_passes_on_an_expected_status_only(prober: NetworkProber, http_server: int) -> None:
    ok = await prober.probe("127.0.0.1", ProbeSpec(ProbeKind.HTTP, http_server, "/healthcheck"))
    assert ok.ok and ok.detail == "GET /healthcheck: 200"
    missing = await prober.probe("127.0.0.1", ProbeSpec(ProbeKind.HTTP, http_server, "/v3"))
    assert not missing.ok and missing.detail == "GET /v3: 404"
    allowed = await prober.probe(
        "127.0.0.1", ProbeSpec(ProbeKind.HTTP, http_server, "/v3", expect_status=(404,))
    )
    assert allowed.ok


async def test_a_hung_process_with_its_port_open_fails_by_timeout(
    prober: NetworkProber, hung_port: int
) -> None:
    started = time.monotonic()
    result = await prober.probe("127.0.0.1", ProbeSpec(ProbeKind.HTTP, hung_port, "/", timeout_s=0.3))
    took = time.monotonic() - started
    assert not result.ok and result.detail == "no answer within 0.3 s"
    assert 0.25 < took < 1.5
    # TCP alone cannot tell: the connection is accepted by the kernel.
    assert (await prober.probe("127.0.0.1", ProbeSpec(ProbeKind.TCP, hung_port, timeout_s=0.3))).ok


async def test_a_closed_port_fails_at_once(prober: NetworkProber) -> None:
    port = free_port()
    for kind in (ProbeKind.HTTP, ProbeKind.TCP):
        result = await prober.probe("127.0.0.1", ProbeSpec(kind, port, timeout_s=2.0))
        assert not result.ok and "onnect" in result.detail
