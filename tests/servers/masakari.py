"""A real Masakari 22.0.0 API for the tests, on haven.lab.masakari: one per test module that asks.

The fixture installs Masakari's pinned tool venv the first time (about 40 s, then reused from the
tools cache), creates its SQLite schema in a temporary folder and serves its API on a free
loopback port with ``auth_strategy = noauth2`` (Masakari's own test auth: every caller is an
admin, so no Keystone is needed); it stops exactly that process group afterwards. A Masakari that
cannot be installed (no package index) skips locally and fails under CI, like a missing binary.

``clouds_yaml`` writes the clouds.yaml entry a client uses to reach it (openstacksdk with
``auth_type: none``). ``add_segment`` goes through Masakari's API. ``add_hosts`` cannot: Masakari
asks Nova whether a host of that name exists before it adds one, and there is no Nova here, so the
hosts go in through Masakari's own database layer (``masakari.db.api.host_create``, the call its
API makes after that check), run in its venv; reading them back is Masakari's API again.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.lab.masakari import MasakariApi
from haven.lab.toolenv import ToolInstallError

from .process import free_port

CLOUD = "masakari-test"

_ADD_HOSTS = """\
import json, sys
from masakari import config, context
from masakari.db import api as db
config.parse_args(["add-hosts", "--config-file", sys.argv[1]], init_rpc=False)
ctxt = context.get_admin_context()
for values in json.load(sys.stdin):
    db.host_create(ctxt, values)
"""


@dataclass
class MasakariLab:
    api: MasakariApi
    http: httpx.Client

    def clouds_yaml(self, path: Path) -> Path:
        path.write_text(
            f"clouds:\n  {CLOUD}:\n    auth_type: none\n    instance_ha_endpoint_override: {self.api.url}\n"
        )
        return path

    def add_segment(self, name: str, **fields: Any) -> dict[str, Any]:
        body = {"name": name, "recovery_method": "auto", "service_type": "COMPUTE", **fields}
        answer = self.http.post(
            "/segments", json={"segment": body}, headers={"OpenStack-API-Version": "instance-ha 1.2"}
        )
        assert answer.status_code == 201, answer.text
        segment: dict[str, Any] = answer.json()["segment"]
        return segment

    def add_hosts(self, segment_uuid: str, *names: str, **fields: Any) -> dict[str, str]:
        """Add hosts named ``names`` to the segment; their Masakari uuids by name."""
        rows = [
            {
                "uuid": str(uuid.uuid4()),
                "name": name,
                "failover_segment_id": segment_uuid,
                "type": "COMPUTE",
                "control_attributes": "SSH",
                "reserved": False,
                "on_maintenance": False,
                **fields,
            }
            for name in names
        ]
        python = self.api.install() / "bin" / "python"
        subprocess.run(
            [str(python), "-c", _ADD_HOSTS, str(self.api.config_file)],
            input=json.dumps(rows), text=True, check=True, capture_output=True,
        )  # fmt: skip
        return {row["name"]: row["uuid"] for row in rows}


@pytest.fixture(scope="module")
def masakari(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MasakariLab]:
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n[masakari fixture] {message}", flush=True)

    started = time.monotonic()
    api = MasakariApi(tmp_path_factory.mktemp("masakari"), free_port(), progress=say)
    try:
        api.install()
    except ToolInstallError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so Masakari must install: {exc}", pytrace=False)
        pytest.skip(f"Masakari could not be installed: {exc}")
    api.start()
    try:
        with httpx.Client(base_url=api.url, timeout=10) as http:
            say(f"ready at {api.url} after {time.monotonic() - started:.1f} s")
            yield MasakariLab(api, http)
    finally:
        api.stop()
