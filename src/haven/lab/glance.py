"""The lab's Glance: glance-api under gunicorn on SQLite with a file store, and one tiny image.

Who calls it: haven.lab.lab (``haven lab up``). Glance 33.0.0 has its own tool venv
(``glance``: its pins conflict with Nova's). Nova's fake driver never reads an image's
bytes, but nova-api checks that the image exists and is active, so the lab uploads one
tiny image (``lab-tiny``, 1 KiB of zeros, raw) for servers to boot from.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from keystoneauth1 import session as ks_session

from haven.lab.process import LabProcess, LabServiceError, run_checked
from haven.lab.wsgi import authtoken_section, serve

IMAGE_NAME = "lab-tiny"


@dataclass(frozen=True)
class GlanceSettings:
    folder: Path
    port: int
    auth_url: str
    password: str  # the glance service user's
    region: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_glance(venv: Path, settings: GlanceSettings) -> LabProcess:
    """Write glance-api.conf, sync the database, serve; return once the API answers."""
    folder = settings.folder
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(venv / "etc" / "glance" / "glance-api-paste.ini", folder / "glance-api-paste.ini")
    conf = folder / "glance-api.conf"
    conf.touch(mode=0o600)
    conf.write_text(
        "[DEFAULT]\nuse_stderr = true\nenabled_backends = fs:file\n"
        f"[database]\nconnection = sqlite:///{folder / 'glance.db'}\n"
        "[glance_store]\ndefault_backend = fs\n"
        f"[fs]\nfilesystem_store_datadir = {folder / 'images'}\n"
        f"[os_glance_staging_store]\nfilesystem_store_datadir = {folder / 'staging'}\n"
        f"[os_glance_tasks_store]\nfilesystem_store_datadir = {folder / 'tasks'}\n"
        f"[paste_deploy]\nflavor = keystone\nconfig_file = {folder / 'glance-api-paste.ini'}\n"
        + authtoken_section(settings.auth_url, "glance", settings.password, settings.region)
    )
    run_checked([str(venv / "bin" / "glance-manage"), "--config-file", str(conf), "db_sync"],
                "glance-manage db_sync")  # fmt: skip
    serving = folder / "api"
    serving.mkdir(exist_ok=True)
    env = {"OS_GLANCE_CONFIG_DIR": str(folder)}
    return serve("glance-api", venv, "glance.wsgi.api:application", settings.port, serving, env,
                 workers=1, threads=4)  # fmt: skip


def ensure_tiny_image(session: ks_session.Session, url: str) -> str:
    """The id of the public ``lab-tiny`` image, created and uploaded if absent."""
    base = f"{url}/v2/images"
    found = session.get(base, params={"name": IMAGE_NAME}, raise_exc=False)
    if found.status_code != 200:
        raise LabServiceError(f"Glance: listing images answered {found.status_code} {found.text[:200]}")
    active = [image for image in found.json()["images"] if image["status"] == "active"]
    if active:
        return str(active[0]["id"])
    body = {"name": IMAGE_NAME, "disk_format": "raw", "container_format": "bare", "visibility": "public"}
    created = session.post(base, json=body, raise_exc=False)
    if created.status_code != 201:
        raise LabServiceError(
            f"Glance: creating {IMAGE_NAME} answered {created.status_code} {created.text[:200]}"
        )
    image_id = str(created.json()["id"])
    uploaded = session.put(
        f"{base}/{image_id}/file", data=b"\0" * 1024,
        headers={"Content-Type": "application/octet-stream"}, raise_exc=False,
    )  # fmt: skip
    if uploaded.status_code != 204:
        raise LabServiceError(
            f"Glance: uploading {IMAGE_NAME} answered {uploaded.status_code} {uploaded.text[:200]}"
        )
    return image_id
