"""The ``memcached`` probe against Debian's real memcached (a free loopback port, started and stopped
here): ``version`` answered passes; SIGSTOPped (the kernel still accepts its connections, so a TCP
probe passes) it fails by timeout within the probe's timeout, passes again once continued, and fails
refused once killed. Stand-ins for what a real memcached never does: close without answering, stay
silent, answer garbage. The socket loop is the one haven.lab.memcached's ``stats`` uses.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from haven.controlplane.config import parse_controlplane
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.drivers.service_probes import ProbeFailed, memcached_ask
from haven.domain.controlplane import ProbeKind, ProbeResult, ProbeSpec
from haven.domain.errors import ConfigError
from haven.lab import memcached as lab_memcached
from servers.process import ServerProcess, free_port, port_open, require

TIMEOUT_S = 0.5


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[tuple[ServerProcess, int]]:
    require(lab_memcached.MEMCACHED, "memcached")
    port = free_port()
    argv = lab_memcached.memcached_command("127.0.0.1", port).split()
    server = ServerProcess("memcached", argv, tmp_path / "memcached.log").start()
    server.wait_until(lambda: port_open(port), 10.0, "its port")
    yield server, port
    server.signal(signal.SIGCONT)  # a stopped one ends too
    server.stop(grace_s=2)


async def _timed(prober: NetworkProber, spec: ProbeSpec) -> tuple[ProbeResult, float]:
    started = time.monotonic()
    result = await prober.probe("127.0.0.1", spec)
    return result, time.monotonic() - started


async def test_real_memcached_live_hung_continued_and_killed(
    prober: NetworkProber, cache: tuple[ServerProcess, int]
) -> None:
    server, port = cache
    spec = ProbeSpec(ProbeKind.MEMCACHED, port, timeout_s=TIMEOUT_S)
    tcp = ProbeSpec(ProbeKind.TCP, port, timeout_s=TIMEOUT_S)
    live, _ = await _timed(prober, spec)
    assert live.ok and live.detail.startswith("memcached 1."), live.detail
    server.signal(signal.SIGSTOP)
    try:
        hung, took = await _timed(prober, spec)
        assert not hung.ok and hung.detail == f"no answer within {TIMEOUT_S:g} s"  # the planner's TIMED_OUT
        assert took < TIMEOUT_S + 0.5
        assert (await prober.probe("127.0.0.1", tcp)).ok  # what the TCP probe it replaces saw
    finally:
        server.signal(signal.SIGCONT)
    back, _ = await _timed(prober, spec)
    assert back.ok, back.detail
    server.signal(signal.SIGKILL)
    assert server.process is not None
    server.process.wait(5)
    dead, took = await _timed(prober, spec)
    assert not dead.ok and "ConnectionRefusedError" in dead.detail and took < TIMEOUT_S, dead.detail


def test_the_socket_loop_reads_whole_answers_of_the_real_memcached(cache: tuple[ServerProcess, int]) -> None:
    """A value holding ``END`` lines is read to its own END; an unknown command is memcached's ERROR; the
    lab's ``stats`` (synchronous) reads through the same loop."""
    _, port = cache

    def ask(command: str) -> bytes:
        return asyncio.run(memcached_ask("127.0.0.1", port, command, 2.0))

    value = "x\r\nEND\r\n" * 4000  # 32 kB: more than one read, END lines inside
    assert ask(f"set k 0 60 {len(value)}\r\n{value}") == b"STORED\r\n"
    assert ask("get k") == f"VALUE k 0 {len(value)}\r\n{value}\r\nEND\r\n".encode()
    with pytest.raises(ProbeFailed, match="memcached refused nonsense: 'ERROR'"):
        ask("nonsense")
    assert int(lab_memcached.stats("127.0.0.1", port, 2.0)["cmd_get"]) == 1


Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _stand_in(answer: Answer) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            await answer(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _closes(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"VERS")
    writer.close()


async def _silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the prober gives up and closes


async def _garbles(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (_closes, "memcached closed the connection after 4 bytes of its answer to version"),
        (_silent, f"no answer within {TIMEOUT_S:g} s"),
        (_garbles, "version: memcached answered 'HTTP/1.1 400 Bad Request', not VERSION"),
    ],
)
async def test_a_closed_silent_or_garbled_answer_fails_with_its_reason(
    prober: NetworkProber, answer: Answer, detail: str
) -> None:
    server, port = await _stand_in(answer)
    try:
        result, took = await _timed(prober, ProbeSpec(ProbeKind.MEMCACHED, port, timeout_s=TIMEOUT_S))
    finally:
        server.close()
    assert (result.ok, result.detail) == (False, detail)
    assert took < TIMEOUT_S + 0.5


def test_config_takes_the_kind_and_the_catalogue_uses_it() -> None:
    section = {
        "controllers": [{"host": "ctl-1"}],
        "services": {
            "memcached": {},
            "cache2": {"unit": "c.service", "probe": {"kind": "memcached", "port": 7}},
        },
    }
    specs = {str(s.name): s for s in parse_controlplane(section, "test").services}
    assert specs["memcached"].probe == ProbeSpec(ProbeKind.MEMCACHED, 11211)
    assert specs["cache2"].probe == ProbeSpec(ProbeKind.MEMCACHED, 7)
    with pytest.raises(ConfigError, match="a new probe needs kind and port"):
        parse_controlplane(
            {"services": {"cache2": {"unit": "c.service", "probe": {"kind": "memcached"}}}}, "test"
        )
