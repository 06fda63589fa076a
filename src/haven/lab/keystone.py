"""A real Keystone on loopback: configure, bootstrap, serve, provision, stop.

Who calls it: ``haven lab up`` (Keystone is the lab's first service) and the test
fixture ``tests/servers/keystone.py``. Keystone 30.0.0 runs from its pinned tool venv
(haven.lab.toolenv, lock ``locks/keystone.lock``) under gunicorn on 127.0.0.1, with a
SQLite database and fernet keys in its own folder, so several can run side by side.

``KeystoneServer.setup`` writes ``keystone.conf``, creates the fernet and credential
keys, syncs the database and bootstraps the admin user, the ``admin``/``member``/``reader``
roles, the region and the identity endpoints; it runs once per folder (a marker
file). ``start`` serves ``keystone.wsgi.api:application`` (the config folder named by
``OS_KEYSTONE_CONFIG_DIR``) and waits until ``/v3`` answers; ``stop`` ends exactly the
process group it started. The provisioning helpers (projects, users, role
assignments, catalog services and endpoints) speak Keystone's REST API through a
keystoneauth1 session, so they work against any Keystone, not only this one.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from haven.lab.process import LabProcess, LabServiceError, run_checked
from haven.lab.toolenv import Progress, ensure_tool_env

TOOL = "keystone"
REGION = "RegionOne"
INSTANCE_HA = "instance-ha"  # the catalog type Masakari clients and monitors look up
_SET_UP = ".bootstrapped"
_CONF = """\
[DEFAULT]
use_stderr = true
[database]
connection = sqlite:///{folder}/keystone.db
[token]
provider = fernet
expiration = 3600
[fernet_tokens]
key_repository = {folder}/fernet-keys
[credential]
key_repository = {folder}/credential-keys
[cache]
enabled = false
[identity]
# bcrypt's cheapest cost: a lab's passwords are random and local, and the default (12)
# costs about a second of CPU per login on a small machine.
password_hash_rounds = 4
"""
_GUNICORN = """\
wsgi_app = "keystone.wsgi.api:application"
bind = "127.0.0.1:{port}"
workers = {workers}
timeout = 60
errorlog = "-"
control_socket_disable = True  # its default socket is one path per user, shared by every instance
"""


@dataclass(frozen=True, slots=True)
class Account:
    """Credentials of one Keystone user scoped to one project (Default domain)."""

    auth_url: str
    username: str
    password: str
    project_name: str

    def __repr__(self) -> str:
        return f"Account({self.username}@{self.project_name}, <password hidden>)"

    def session(self, timeout_s: float = 10.0) -> ks_session.Session:
        auth = v3.Password(
            auth_url=self.auth_url,
            username=self.username,
            password=self.password,
            project_name=self.project_name,
            user_domain_name="Default",
            project_domain_name="Default",
        )
        return ks_session.Session(auth=auth, timeout=timeout_s)

    def token(self) -> str:
        token = self.session().get_token()
        if not token:
            raise LabServiceError(f"Keystone gave no token to {self.username}")
        return str(token)


class KeystoneServer:
    """One Keystone in ``folder``, serving on 127.0.0.1:``port``."""

    def __init__(
        self,
        folder: Path,
        port: int,
        *,
        admin_password: str | None = None,
        region: str = REGION,
        workers: int = 2,
        progress: Progress | None = None,
        tools_root: Path | None = None,
    ) -> None:
        self.folder = folder
        self.port = port
        self.region = region
        self.workers = workers
        self._say = progress or (lambda _message: None)
        self._tools_root = tools_root
        self._admin_password = self._stored_password(admin_password)
        self.process: LabProcess | None = None

    def __repr__(self) -> str:
        return f"KeystoneServer({self.url}, folder={self.folder})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def admin(self) -> Account:
        return Account(self.url, "admin", self._admin_password, "admin")

    def setup(self) -> None:
        """Install (first time), configure and bootstrap; a folder already bootstrapped is kept."""
        venv = ensure_tool_env(TOOL, self._tools_root, self._say)
        if (self.folder / _SET_UP).exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "keystone.conf").write_text(_CONF.format(folder=self.folder))
        manage = [str(venv / "bin" / "keystone-manage"), "--config-file", str(self.folder / "keystone.conf")]
        self._say("keystone: creating keys and database")
        owner = [
            "--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
            "--keystone-group", grp.getgrgid(os.getgid()).gr_name,
        ]  # fmt: skip
        for keys in ("fernet_setup", "credential_setup"):
            run_checked([*manage, keys, *owner], f"keystone-manage {keys}")
        run_checked([*manage, "db_sync"], "keystone-manage db_sync")
        self._say("keystone: bootstrapping admin, roles and endpoints")
        bootstrap = [
            "bootstrap",
            f"--bootstrap-password={self._admin_password}",  # one word: a password may start with "-"
            "--bootstrap-region-id", self.region,
            "--bootstrap-admin-url", self.url,
            "--bootstrap-internal-url", self.url,
            "--bootstrap-public-url", self.url,
        ]  # fmt: skip
        run_checked([*manage, *bootstrap], "keystone-manage bootstrap")
        (self.folder / _SET_UP).write_text("")

    def start(self, timeout_s: float = 60.0) -> KeystoneServer:
        """Serve under gunicorn and wait until ``/v3`` answers."""
        if self.process is not None and self.process.running:
            return self
        self.setup()
        venv = ensure_tool_env(TOOL, self._tools_root)
        # Keystone parses the process's argv as its own options, so gunicorn gets everything
        # from its config file in the folder (read from the working directory) and no arguments.
        (self.folder / "gunicorn.conf.py").write_text(
            _GUNICORN.format(port=self.port, workers=self.workers, folder=self.folder)
        )
        env = {"OS_KEYSTONE_CONFIG_DIR": str(self.folder)}
        self._say(f"keystone: starting on {self.url}")
        log = self.folder / "keystone.log"
        self.process = LabProcess("keystone", [str(venv / "bin" / "gunicorn")], log, env=env, cwd=self.folder)
        self.process.start()
        try:
            self.process.wait_until(self.answers, timeout_s, f"answer on {self.url}")
        except LabServiceError:
            self.stop()
            raise
        return self

    def answers(self) -> bool:
        try:
            return httpx.get(self.url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def _stored_password(self, given: str | None) -> str:
        # The folder keeps its admin password (mode 0600), so a later start, or `haven lab`
        # in another process, logs in with the one bootstrap was given; a new folder without
        # a given password gets a random one.
        stored = self.folder / "admin-password"
        if given is None and stored.exists():
            return stored.read_text().strip()
        self.folder.mkdir(parents=True, exist_ok=True)
        password = given or secrets.token_urlsafe(18)
        stored.touch(mode=0o600)
        stored.write_text(password + "\n")
        return password


class Provisioner:
    """Creates what a cloud needs in a Keystone (idempotent: existing objects are reused)."""

    def __init__(self, session: ks_session.Session, auth_url: str, region: str = REGION) -> None:
        self._session = session
        self._base = auth_url.rstrip("/")
        self.region = region

    def project(self, name: str) -> str:
        return self._ensure("projects", name, {"domain_id": "default"})

    def role(self, name: str) -> str:
        return self._ensure("roles", name, {})

    def user(self, name: str, password: str, project: str, roles: tuple[str, ...] = ("member",)) -> str:
        """A user with ``roles`` on ``project`` (names); its password is (re)set to ``password``."""
        project_id = self.project(project)
        found = self._list("users", {"name": name})
        if found:
            user_id = str(found[0]["id"])
            self._call("PATCH", f"/users/{user_id}", {"user": {"password": password}})
        else:
            body = {
                "name": name,
                "password": password,
                "domain_id": "default",
                "default_project_id": project_id,
            }
            user_id = self._create("users", body)
        for role in roles:
            self._call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self.role(role)}")
        return user_id

    def account(self, name: str, project: str, roles: tuple[str, ...] = ("member",)) -> Account:
        """A new user with a random password, as credentials to log in with."""
        password = secrets.token_urlsafe(18)
        self.user(name, password, project, roles)
        return Account(self._base, name, password, project)

    def endpoint(self, service_type: str, name: str, url: str) -> str:
        """Register ``url`` as the public and internal endpoint of ``service_type`` in the region."""
        services = self._list("services", {"type": service_type})
        service_id = services[0]["id"] if services else self._create(
            "services", {"type": service_type, "name": name, "enabled": True}
        )  # fmt: skip
        existing = self._list("endpoints", {"service_id": service_id})
        for interface in ("public", "internal"):
            mine = [e for e in existing if e["interface"] == interface and e.get("region_id") == self.region]
            body = {"service_id": service_id, "interface": interface, "url": url, "region_id": self.region}
            if mine:
                self._call("PATCH", f"/endpoints/{mine[0]['id']}", {"endpoint": body})
            else:
                self._create("endpoints", body)
        return str(service_id)

    def _ensure(self, collection: str, name: str, extra: Mapping[str, Any]) -> str:
        found = self._list(collection, {"name": name})
        if found:
            return str(found[0]["id"])
        return self._create(collection, {"name": name, **extra})

    def _list(self, collection: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", f"/{collection}", params=query)[collection]
        return items

    def _create(self, collection: str, body: Mapping[str, Any]) -> str:
        answer = self._call("POST", f"/{collection}", {collection[:-1]: dict(body)})
        return str(answer[collection[:-1]]["id"])

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self._session.request(
            self._base + path, method, json=body, params=dict(params or {}), raise_exc=False
        )
        if response.status_code >= 400:
            raise LabServiceError(f"Keystone {method} {path}: {response.status_code} {response.text[:300]}")
        if response.status_code == 204 or not response.content:
            return {}
        result: dict[str, Any] = response.json()
        return result
