"""The lab's stand-in for Neutron: a tiny HTTP server that answers Nova's list calls with empty lists.

Who runs it: haven.lab.lab starts it as ``python -m haven.lab.netstub PORT`` (haven's own
Python). The lab has no real networking: servers boot with ``networks='none'``, which
keeps Neutron out of the build, but evacuate and delete still ask Neutron for the
server's ports, floating IPs, security groups and extensions. This answers every
``GET /v2.0/<collection>`` with an empty list, the version documents with one v2.0
version, a read of one item with 404, and a delete with 204; anything else is 404.
Each request is logged (method and path only), so a new call Nova makes is easy to spot.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        parts = [p.removesuffix(".json") for p in path.split("/") if p]
        if not parts:
            base = f"http://{self.headers.get('Host', '127.0.0.1')}/v2.0/"
            version = {"id": "v2.0", "status": "CURRENT", "links": [{"href": base, "rel": "self"}]}
            self._send(200, {"versions": [version]})
        elif parts == ["v2.0"]:
            self._send(200, {"resources": []})
        elif parts[0] == "v2.0" and len(parts) == 2:
            self._send(200, {parts[1].replace("-", "_"): []})
        else:
            self._send(404, {"NeutronError": {"type": "NotFound", "message": "the lab has no networking"}})

    def do_DELETE(self) -> None:
        self._send(204, None)

    def do_POST(self) -> None:
        self._not_found()

    def do_PUT(self) -> None:
        self._not_found()

    def _not_found(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._send(404, {"NeutronError": {"type": "NotFound", "message": "the lab has no networking"}})

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(
            f"{self.command} {self.path.split('?', 1)[0]} -> {args[1] if len(args) > 1 else ''}\n"
        )
        sys.stderr.flush()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
