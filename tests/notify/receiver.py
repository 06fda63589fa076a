"""A real webhook receiver for the tests: an HTTP server on a free loopback port, in a thread.

It checks each request's signature itself (HMAC-SHA256 over "<timestamp>.<body>"
with the shared secret, computed here rather than with haven's helper, so a
wrong signature in haven fails the test), answers the statuses it is told to
(e.g. 503 for the first N requests) and keeps what it got. ``stop`` and
``start`` take it down and bring it back on the same port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    signature_ok: bool
    answered: int

    @property
    def event_type(self) -> str:
        return str(self.body["event_type"])


class WebhookReceiver:
    def __init__(self, secret: bytes, port: int) -> None:
        self.secret = secret
        self.port = port
        self.received: list[Received] = []
        self.statuses: list[int] = []  # answered in turn; 204 once empty
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/haven?token=not-for-logs"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 204
                    ok = receiver._verify(self.headers, body)
                    got = Received(self.path, dict(self.headers), json.loads(body), ok, status)
                    receiver.received.append(got)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="webhook-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(5)
            self._server = None

    def _verify(self, headers: Any, body: bytes) -> bool:
        timestamp = headers.get("X-Haven-Timestamp", "")
        expected = hmac.new(self.secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        fresh = timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300
        return fresh and hmac.compare_digest(f"sha256={expected}", headers.get("X-Haven-Signature", ""))

    def delivered(self) -> list[Received]:
        """What was taken (2xx), in arrival order."""
        with self._lock:
            return [r for r in self.received if 200 <= r.answered < 300]

    def wait_for(self, ready: Callable[[list[Received]], bool], timeout_s: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = self.delivered()
            if ready(got):
                return got
            time.sleep(0.05)
        raise AssertionError(f"receiver: condition not met in {timeout_s} s; got {self.received}")
