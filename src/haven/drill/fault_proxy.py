"""A small faulting TCP proxy for the network faults of the catalogue: delays, or a 500 on one HTTP route.

Called by haven.drill.faults_network, which sends one lab service's new connections through it with an
iptables REDIRECT (``tc netem`` has no kernel module on these machines). It listens on 127.0.0.1 (a
free port) and opens each upstream connection to 127.0.0.1:``upstream`` with the socket mark ``mark``
(SO_MARK, root only), which the REDIRECT rule excludes, so its own connections are never redirected to
itself. They come from 127.0.0.1 as the clients' did (MariaDB's grants name that host).

What it does to the bytes, client to server (the answers pass untouched):

- ``http=True``: each chunk that starts an HTTP request (a request line at its start) waits ``delay_s``
  before it goes on; a request whose method and path match ``fail`` is answered ``500`` by the proxy
  itself and its connection closed, never reaching the service. The lab's WSGI servers close each
  connection after one answer (keepalive 0), so this sees every request.
- ``http=False``: every chunk waits ``delay_s`` (a database protocol: each query, each handshake step).

With ``clients``, only the connections whose client port it accepts (a process group's, say: one
service to another) get the fault; the others pass untouched.

It runs its own event loop in a daemon thread: ``start`` and ``stop`` are blocking calls (injections
run in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

_REQUEST_LINE = re.compile(rb"^([A-Z]+) (\S+) HTTP/1\.[01]\r?\n")
_CHUNK = 65536


@dataclass(frozen=True)
class Route:
    """An HTTP route: a method and a regular expression matched against the whole path (query excluded)."""

    method: str
    path: str

    def matches(self, method: str, target: str) -> bool:
        return method == self.method and re.fullmatch(self.path, target.split("?", 1)[0]) is not None


class FaultProxy:
    def __init__(
        self,
        upstream: int,
        *,
        delay_s: float = 0.0,
        http: bool = False,
        fail: Route | None = None,
        mark: int = 0x68617665,
        clients: Callable[[int], bool] | None = None,
    ) -> None:
        if not 0 < upstream < 65536:
            raise ValueError(f"no such port: {upstream}")
        if fail is not None and not http:
            raise ValueError("a failing route needs http=True")
        self.upstream = upstream
        self.delay_s = delay_s
        self.http = http
        self.fail = fail
        self.mark = mark
        self.clients = clients  # given a connection's client port: whether the fault applies to it
        self.spared = 0  # connections passed on untouched (not of ``clients``)
        self.port = 0
        self.delayed = 0  # chunks delayed
        self.failed = 0  # requests answered 500
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> int:
        """Listening on 127.0.0.1; the port it listens on."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"fault-proxy-{self.upstream}",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accepted, "127.0.0.1", 0), loop
        ).result(10.0)
        self._server = server
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    def stop(self) -> None:
        """Stop listening and close every connection it carries (their clients connect again)."""
        loop = self._loop
        if loop is None:
            return
        self._loop = None

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(10.0)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10.0)
        loop.close()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            try:
                up_reader, upstream_writer = await asyncio.open_connection(sock=await self._upstream())
            except OSError:
                return
            faulted = True
            if self.clients is not None:
                peer = writer.get_extra_info("peername")
                faulted = await asyncio.to_thread(self.clients, int(peer[1]))
                self.spared += not faulted
            forward = (
                self._forward(reader, upstream_writer, writer)
                if faulted
                else self._pump(reader, upstream_writer)
            )
            await asyncio.gather(forward, self._pump(up_reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()

    async def _upstream(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.upstream))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _forward(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        """Client to server, each chunk delayed or answered as the fault says."""
        try:
            while chunk := await reader.read(_CHUNK):
                request = _REQUEST_LINE.match(chunk) if self.http else None
                if self.http and request is None:
                    upstream.write(chunk)  # a request's body, or not HTTP: as it came
                    await upstream.drain()
                    continue
                if (
                    request is not None
                    and self.fail is not None
                    and self.fail.matches(request[1].decode(), request[2].decode())
                ):
                    self.failed += 1
                    client.write(_answer_500())
                    await client.drain()
                    upstream.close()
                    client.close()
                    return
                if self.delay_s > 0:
                    self.delayed += 1
                    await asyncio.sleep(self.delay_s)
                upstream.write(chunk)
                await upstream.drain()
            if upstream.can_write_eof():
                upstream.write_eof()
        except (ConnectionError, OSError):
            upstream.close()
            client.close()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Server to client, as it comes."""
        try:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


def _answer_500() -> bytes:
    body = b'{"error": {"code": 500, "message": "haven drill fault: this route answers 500"}}'
    head = (
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
