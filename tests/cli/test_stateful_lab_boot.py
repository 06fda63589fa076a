"""The stateful drills' boot after a heal (haven.cli.stateful_lab.boot_after), against a stand-in of
nova-api's three routes it uses (POST /servers, GET /servers/ID, DELETE /servers/ID) served over HTTP.

The boot on a real lab whose OpenStack runs on the clusters was run by hand (docs/lab.md, 2026-12-07:
ACTIVE in 5.9 s after a rabbitmq-node-loss heal); the test session's HA labs have no OpenStack on their
clusters. What this proves: which answers count as a boot that worked, and that the server is deleted."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from haven.cli.stateful_lab import boot_after


class _Nova:
    def __init__(self, create: int, statuses: list[str]) -> None:
        self.create, self.statuses = create, statuses
        self.deleted: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.tokens: list[str] = []
        self.listed: list[str] = []  # the name filters of GET /servers?name=...

    @property
    def made(self) -> bool:
        """A server exists (or existed): the create was accepted, whatever its answer said."""
        return self.create in (202, 2020, 2021, 2022, 2023, 500, 502, 504) and bool(self.bodies)


@pytest.fixture
def nova(request: pytest.FixtureRequest) -> Iterator[tuple[str, _Nova]]:
    world = _Nova(*request.param)

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict[str, Any] | None = None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            world.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            world.tokens.append(self.headers["X-Auth-Token"])
            if world.create == 2020:  # accepted, but the body is not Nova's JSON
                self.send_response(202)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"<html>hi!")
            elif world.create == 2021:  # accepted, Nova's JSON, but no server id in it
                self._send(202, {"server": {"links": []}})
            elif world.create in (2022, 2023):  # accepted, its id null or empty
                self._send(202, {"server": {"id": None if world.create == 2022 else ""}})
            elif world.create in (502, 503, 504):  # a proxy's answer (502, 504: after Nova made it)
                self._send(world.create, {"message": "The server didn't respond in time."})
            elif world.create == 500:  # Nova's own: its BuildRequest written, the cast to conductor failed
                self._send(500, {"computeFault": {"message": "Unexpected API Error."}})
            elif world.create != 202:
                self._send(world.create, {"badRequest": {"message": "Flavor f1 could not be found."}})
            else:
                self._send(202, {"server": {"id": "s1"}})

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/servers":  # Nova's list, filtered by name (a regular expression)
                pattern = parse_qs(query).get("name", [""])[0]
                world.listed.append(pattern)
                name = world.bodies[0]["server"]["name"] if world.bodies else ""
                mine = world.made and not world.deleted and re.search(pattern, name)
                others = [{"id": "other", "name": "haven-drill-check-0"}]  # not ours: never touched
                self._send(200, {"servers": ([{"id": "s1", "name": name}] if mine else []) + others})
                return
            if world.deleted or path != "/servers/s1":  # Nova's 404: deleted, or no such server
                self._send(404, {"itemNotFound": {"code": 404}})
                return
            status = world.statuses.pop(0) if len(world.statuses) > 1 else world.statuses[0]
            fault = {"message": "No valid host was found."} if status == "ERROR" else None
            self._send(200, {"server": {"id": "s1", "status": status, "fault": fault}})

        def do_DELETE(self) -> None:
            if self.path != "/servers/s1" or not world.made:
                self._send(404, {"itemNotFound": {"code": 404}})
                return
            world.deleted.append(self.path)
            self._send(204)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", world
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("nova", [(202, ["BUILD", "BUILD", "ACTIVE"])], indirect=True)
def test_a_boot_that_goes_active_is_reported_active_and_deleted(nova: tuple[str, _Nova]) -> None:
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=20, poll_s=0.05, gone_wait_s=2)
    assert found["status"] == "ACTIVE" and found["deleted"] is True
    assert world.deleted == ["/servers/s1"] and world.tokens == ["tok"]
    assert world.bodies[0]["server"]["imageRef"] == "img" and world.bodies[0]["server"]["flavorRef"] == "f1"


@pytest.mark.parametrize("nova", [(202, ["BUILD", "ERROR"])], indirect=True)
def test_a_boot_in_error_says_nova_s_fault_and_is_still_deleted(nova: tuple[str, _Nova]) -> None:
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=20, poll_s=0.05, gone_wait_s=2)
    assert found["status"] == "ERROR" and "No valid host" in found["detail"]
    assert world.deleted == ["/servers/s1"]


@pytest.mark.parametrize("nova", [(400, ["ACTIVE"])], indirect=True)
def test_a_boot_nova_refuses_is_not_accepted_and_nothing_is_deleted(nova: tuple[str, _Nova]) -> None:
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=20, poll_s=0.05, gone_wait_s=2)
    assert found["status"] == "not accepted" and "400" in found["detail"]
    assert world.deleted == []


@pytest.mark.parametrize("nova", [(202, ["BUILD"])], indirect=True)
def test_a_boot_still_building_at_the_limit_is_not_active(nova: tuple[str, _Nova]) -> None:
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=1.0, poll_s=0.05, gone_wait_s=2)
    assert found["status"] == "BUILD" and found["seconds"] >= 1.0
    assert world.deleted == ["/servers/s1"]


@pytest.mark.parametrize("nova", [(2020, ["ACTIVE"])], indirect=True)
def test_an_answer_that_is_not_nova_s_json_is_the_check_s_failure_not_a_traceback(
    nova: tuple[str, _Nova],
) -> None:
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=5, poll_s=0.05, gone_wait_s=2)
    assert found["status"] == "accepted, no server id" and "JSONDecodeError" in found["detail"]
    # Accepted all the same: the server Nova made is found by its name and deleted (F10)
    assert world.deleted == ["/servers/s1"] and found["deleted"] is True


@pytest.mark.parametrize("nova", [(2021, ["ACTIVE"])], indirect=True)
def test_a_202_without_a_server_id_leaves_no_server_behind(nova: tuple[str, _Nova]) -> None:
    """F10: Nova's 202 with no ``server.id``: the server is found by its unique name, deleted, and its
    404 awaited; the odd answer is reported."""
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=5, poll_s=0.05, gone_wait_s=2)
    name = world.bodies[0]["server"]["name"]
    assert found["status"] == "accepted, no server id" and "202 without a server id" in found["detail"]
    assert world.deleted == ["/servers/s1"] and found["deleted"] is True  # gone by Nova's own 404
    assert world.listed and all(re.fullmatch(p, name) for p in world.listed)
    assert name in found["detail"] and "s1" in found["detail"]
    # Two checks never share a name, so the search finds only its own server
    other = boot_after(url, "tok", "img", "f1", wait_s=5, poll_s=0.05, gone_wait_s=0.2)
    assert world.bodies[1]["server"]["name"] != name and other["deleted"] is False
    assert world.deleted == ["/servers/s1"]  # the other's "haven-drill-check-0" never touched


@pytest.mark.parametrize("nova", [(2022, ["ACTIVE"]), (2023, ["ACTIVE"])], indirect=True)
def test_a_202_with_a_null_or_empty_server_id_is_no_id(nova: tuple[str, _Nova]) -> None:
    """``{"server": {"id": null}}`` is no id (not the server "None", whose 404 would read as deleted):
    the server is found by its name and deleted."""
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=5, poll_s=0.05, gone_wait_s=2)
    assert found["status"] == "accepted, no server id", found
    assert world.deleted == ["/servers/s1"] and found["deleted"] is True
    assert world.bodies[0]["server"]["name"] in found["detail"]


@pytest.mark.parametrize("nova", [(500, ["ACTIVE"]), (502, ["ACTIVE"]), (504, ["ACTIVE"])], indirect=True)
def test_a_500_502_or_504_to_the_create_is_unsure_and_its_server_deleted(nova: tuple[str, _Nova]) -> None:
    """HAProxy's 502/504 may come after the create reached Nova, and Nova's own 500 after it wrote the
    BuildRequest (the cast to the conductor failed: a RabbitMQ or database fault, what the drills heal):
    the server it made is found by its name and deleted, and the check is not a boot that worked."""
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=5, poll_s=0.05, gone_wait_s=2)
    assert found["status"] != "ACTIVE" and str(world.create) in found["detail"], found
    assert world.deleted == ["/servers/s1"] and found["deleted"] is True
    assert world.bodies[0]["server"]["name"] in found["detail"]


@pytest.mark.parametrize("nova", [(503, ["ACTIVE"])], indirect=True)
def test_a_proxys_503_that_never_reached_nova_finds_nothing_and_deletes_nothing(
    nova: tuple[str, _Nova],
) -> None:
    url, world = nova
    found = boot_after(url, "tok", "img", "f1", wait_s=5, poll_s=0.05, gone_wait_s=0.3)
    assert found["status"] == "not accepted" and "503" in found["detail"]
    assert world.listed and world.deleted == [] and found["deleted"] is False
    assert "no server named" in found["detail"]
