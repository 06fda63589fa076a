"""Serving an OpenStack API under gunicorn, and the config sections every lab service shares.

Who calls it: haven.lab.placement, haven.lab.nova and haven.lab.glance. OpenStack's
services ship no API servers of their own any more; each exposes a WSGI module
(``nova.wsgi.osapi_compute:application``, ...) that reads its config folder from an
environment variable. gunicorn gets everything from ``gunicorn.conf.py`` in the service's
own folder (its working directory) and no arguments, because Nova and Keystone parse the
process's argv as their own options. ``auth_section`` renders the keystoneauth options of one service user.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx

from haven.lab.process import LabProcess, LabServiceError

_GUNICORN = """\
wsgi_app = "{app}"
bind = "127.0.0.1:{port}"
workers = {workers}
threads = {threads}
timeout = 120
keepalive = 0  # close after each answer: a kept-alive connection closed when idle resets a reusing client
errorlog = "-"
control_socket_disable = True  # its default socket is one path per user, shared by every instance
"""


def auth_section(section: str, auth_url: str, username: str, password: str, region: str) -> str:
    """A keystoneauth password section for ``username`` in the ``service`` project."""
    return (
        f"[{section}]\nauth_type = password\nauth_url = {auth_url}\nusername = {username}\n"
        f"password = {password}\nproject_name = service\nuser_domain_name = Default\n"
        f"project_domain_name = Default\nregion_name = {region}\n"
    )


def authtoken_section(auth_url: str, username: str, password: str, region: str) -> str:
    """keystonemiddleware's section: the API checks tokens against the lab's Keystone."""
    base = auth_url.removesuffix("/v3")
    return auth_section("keystone_authtoken", auth_url, username, password, region) + (
        f"www_authenticate_uri = {base}\nservice_token_roles_required = true\n"
    )


def serve(
    name: str,
    venv: Path,
    app: str,
    port: int,
    folder: Path,
    env: Mapping[str, str],
    *,
    workers: int = 1,
    threads: int = 4,
    ready_path: str = "/",
    timeout_s: float = 90.0,
) -> LabProcess:
    """Start ``app`` under gunicorn on 127.0.0.1:``port`` and wait until ``ready_path`` answers."""
    (folder / "gunicorn.conf.py").write_text(
        _GUNICORN.format(app=app, port=port, workers=workers, threads=threads)
    )
    process = LabProcess(name, [str(venv / "bin" / "gunicorn")], folder / f"{name}.log", env=env, cwd=folder)
    process.start()
    url = f"http://127.0.0.1:{port}{ready_path}"

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=2.0).status_code < 500
        except httpx.HTTPError:
            return False

    try:
        process.wait_until(ready, timeout_s, f"an answer at {url}")
    except LabServiceError:
        process.stop()
        raise
    return process
