"""A real Masakari (PyPI masakari 22.0.0) on loopback: its API with its database, and on request its engine.

Who calls it: the tests of `haven import masakari` (tests/servers/masakari.py, API only) and
bench/lab.py, which races Masakari's engine with its shipped defaults against haven on the lab
(``MasakariApi(..., cloud=MasakariCloud(...))``). Masakari runs from its pinned tool venv
(haven.lab.toolenv, lock ``locks/masakari.lock``): ``masakari-manage db sync`` makes its SQLite
schema, then its own server (``masakari-api``: eventlet's WSGI server under oslo.service, one
worker) serves Masakari's paste pipeline. With ``auth_strategy = noauth2`` Masakari's own
NoAuthMiddleware makes every caller an admin (Masakari ships it for testing), so a client needs no
Keystone: openstacksdk with ``auth_type: none`` and ``instance_ha_endpoint_override`` pointing at
``/v1`` (Masakari also routes every URL without the project id). The taskflow connection is set only
because ``db sync`` loads the engine's driver, which refuses to load without one.

With a ``MasakariCloud`` the API and ``masakari-engine`` share the lab's RabbitMQ (the API casts a
notification to the engine over it) and the engine calls Nova as the lab's admin through Keystone
(``os_privileged_user_*``, Masakari's own way). Nothing else is set: every timing (the 180 s
``wait_period_after_service_update``, 3 recovery threads, 90 s per evacuation...) stays Masakari's
shipped default, which is what the benchmark compares against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from haven.lab.process import LabProcess, LabServiceError, run_checked
from haven.lab.toolenv import Progress, ensure_tool_env

TOOL = "masakari"

_CONF = """\
[DEFAULT]
auth_strategy = noauth2
masakari_api_listen = 127.0.0.1
masakari_api_listen_port = {port}
masakari_api_workers = 1
use_stderr = true
[wsgi]
api_paste_config = {venv}/etc/masakari/api-paste.ini
[database]
connection = sqlite:///{folder}/masakari.db
[taskflow]
connection = sqlite:///{folder}/taskflow.db
[oslo_concurrency]
lock_path = {folder}/locks
"""


@dataclass(frozen=True, slots=True)
class MasakariCloud:
    """What Masakari's engine needs of a cloud: the message bus it shares with its API, and an admin."""

    transport_url: str
    auth_url: str
    username: str
    password: str
    project: str
    region: str
    user_domain: str = "Default"
    project_domain: str = "Default"


def engine_config(cloud: MasakariCloud) -> str:
    """The lines added to masakari.conf so its API and engine talk over ``cloud``'s bus and to its Nova."""
    return (
        "[DEFAULT]\n"
        f"transport_url = {cloud.transport_url}\n"
        f"os_privileged_user_name = {cloud.username}\n"
        f"os_privileged_user_password = {cloud.password}\n"
        f"os_privileged_user_tenant = {cloud.project}\n"
        f"os_privileged_user_auth_url = {cloud.auth_url}\n"
        f"os_user_domain_name = {cloud.user_domain}\n"
        f"os_project_domain_name = {cloud.project_domain}\n"
        f"os_region_name = {cloud.region}\n"
        "nova_catalog_admin_info = compute:nova:publicURL\n"
        "[keystone_authtoken]\n"  # the auth plugin Masakari's Nova client loads (no token checks)
        "auth_type = password\n"
    )


class MasakariApi:
    """Masakari's API in ``folder`` (config, databases, log), serving on 127.0.0.1:``port``."""

    def __init__(
        self,
        folder: Path,
        port: int,
        *,
        progress: Progress | None = None,
        tools_root: Path | None = None,
        cloud: MasakariCloud | None = None,
    ) -> None:
        self.folder = folder
        self.port = port
        self._say = progress or (lambda _message: None)
        self._tools_root = tools_root
        self._cloud = cloud
        self.process: LabProcess | None = None
        self.engine: LabProcess | None = None

    def __repr__(self) -> str:
        return f"MasakariApi({self.url}, folder={self.folder})"

    @property
    def url(self) -> str:
        """The endpoint openstacksdk's instance-ha proxy takes (``instance_ha_endpoint_override``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def config_file(self) -> Path:
        return self.folder / "masakari.conf"

    def install(self) -> Path:
        """Masakari's tool venv, built the first time."""
        return ensure_tool_env(TOOL, self._tools_root, self._say)

    def start(self, timeout_s: float = 60.0) -> MasakariApi:
        """Write the config, create the schema and serve; return once ``/v1/segments`` answers."""
        if self.process is not None and self.process.running:
            return self
        venv = self.install()
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = _CONF.format(port=self.port, venv=venv, folder=self.folder)
        if self._cloud is not None:
            conf += engine_config(self._cloud)  # oslo.config merges a section named twice
        self.config_file.write_text(conf)
        self.config_file.chmod(0o600)  # it holds the admin's password
        self._say("masakari: creating its database")
        manage = [str(venv / "bin" / "masakari-manage"), "--config-file", str(self.config_file)]
        run_checked([*manage, "db", "sync"], "masakari-manage db sync")
        self._say(f"masakari: starting its API on {self.url}")
        argv = [str(venv / "bin" / "masakari-api"), "--config-file", str(self.config_file)]
        self.process = LabProcess("masakari-api", argv, self.folder / "masakari-api.log", cwd=self.folder)
        self.process.start()
        if self._cloud is not None:
            self._say("masakari: starting its engine")
            argv = [str(venv / "bin" / "masakari-engine"), "--config-file", str(self.config_file)]
            self.engine = LabProcess("masakari-engine", argv, self.folder / "masakari-engine.log",
                                     cwd=self.folder).start()  # fmt: skip
        try:
            self.process.wait_until(self.answers, timeout_s, f"an answer on {self.url}/segments")
        except LabServiceError:
            self.stop()
            raise
        return self

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/segments", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        for process in (self.engine, self.process):
            if process is not None:
                process.stop()
