"""A tiny HTTP server answering with canned Nova responses and recording every request.

Used only by the unit tests of the OpenStack driver's request building and error
translation (tests/cloud/test_openstack_*.py): openstacksdk and keystoneauth run for
real against it over loopback. It is no stand-in for Nova: the contract suite runs
against the real Nova lab.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Answer:
    """A canned answer. Its ``headers`` may set ``Date`` (Nova's clock as sent); ``Date: ""`` sends none."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class RecordedNova:
    """Routes are (METHOD, path) -> list of Answers, served in order (the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Answer]] = {}
        self.requests: list[Recorded] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def serve_versions(self) -> None:
        """The version documents openstacksdk reads first: compute at /v2.1, placement at /placement."""
        compute = {"id": "v2.1", "status": "CURRENT", "version": "2.96", "min_version": "2.1"}
        compute["links"] = [{"rel": "self", "href": f"{self.url}/v2.1/"}]
        self.answer("GET", "/v2.1", Answer(200, {"version": compute}))
        placement = {"id": "v1.0", "status": "CURRENT", "max_version": "1.39", "min_version": "1.0"}
        placement["links"] = [{"rel": "self", "href": f"{self.url}/placement"}]
        self.answer("GET", "/placement", Answer(200, {"versions": [placement]}))

    def answer(self, method: str, path: str, *answers: Answer) -> None:
        self.routes[(method, path)] = list(answers)

    def made(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        nova = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                nova.requests.append(
                    Recorded(
                        self.command,
                        url.path,
                        parse_qs(url.query),
                        {k.lower(): v for k, v in self.headers.items()},
                        json.loads(raw) if raw else None,
                    )
                )
                answers = nova.routes.get((self.command, url.path))
                if not answers:
                    answer = Answer(404, {"itemNotFound": {"code": 404, "message": "no such route"}})
                else:
                    answer = answers.pop(0) if len(answers) > 1 else answers[0]
                payload = b"" if answer.body is None else json.dumps(answer.body).encode()
                self.send_response_only(answer.status)  # Date as the answer says, else now
                headers = {"Date": self.date_time_string(), **answer.headers}
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    if value:
                        self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler


def serving() -> Iterator[RecordedNova]:
    nova = RecordedNova()
    nova.start()
    try:
        yield nova
    finally:
        nova.stop()
