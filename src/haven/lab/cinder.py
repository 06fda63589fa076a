"""The lab's Cinder (opt-in: ``haven lab up --cinder``): API, scheduler, volume and backup services.

Who calls it: haven.lab.lab (``up`` with ``cinder=True``, once the plain lab is up) and
bench/backups.py (``--cinder``). Cinder 29.0.0 runs from its own tool venv (``cinder``) on the
lab's MariaDB (database ``cinder``), RabbitMQ and Keystone, with the API under gunicorn.

These machines have no device-mapper, so the reference LVM backend cannot exist (docs/backups.md).
The backend here is Cinder's NFS driver with volumes as files, and no NFS server: the share
``127.0.0.1:LAB/cinder/export`` is never mounted over NFS. Its mount point
(``nfs_mount_point_base``/md5(share), as os-brick computes it) is a bind mount of the export
folder, made inside a private mount namespace of its own by each of cinder-volume and
cinder-backup just before they start (``unshare --mount``): os-brick's RemoteFsClient reads
``mount``'s output, finds the mount point already mounted and never runs ``mount -t nfs``;
the mounts go with the processes (nothing to unmount at ``down``). cinder-backup uses the
posix driver (chunked files under ``LAB/cinder/backups``: full and incremental backups).

The lab runs as root without sudo: Cinder runs its privileged commands as ``sudo
cinder-rootwrap CONF cmd...``; a ``sudo`` on the services' PATH (``LAB/cinder/bin/sudo``) runs
``cmd...`` directly (rootwrap's filters only allow config files under /etc). The NFS driver
also needs Debian's ``nfs-common`` (``mount.nfs``, checked at its start) and ``qemu-utils``
(``qemu-img``).
"""

from __future__ import annotations

import configparser
import getpass
import hashlib
import os
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from keystoneauth1 import session as ks_session

from haven.lab.keystone import REGION, Account, Provisioner
from haven.lab.mariadb import CLIENT
from haven.lab.process import LabProcess, LabServiceError, free_port, run_checked
from haven.lab.state import load_state
from haven.lab.toolenv import Progress
from haven.lab.wsgi import auth_section, authtoken_section, serve

TOOL = "cinder"
DATABASE = "cinder"
BACKEND = "nfs"
HOST = "cinder-lab"
SERVICES = ("cinder-scheduler", "cinder-volume", "cinder-backup")
# Debian binaries the NFS driver and the image copy need, with their packages.
NEEDED = ((Path("/usr/sbin/mount.nfs"), "nfs-common"), (Path("/usr/bin/qemu-img"), "qemu-utils"),
          (Path("/usr/bin/unshare"), "util-linux"))  # fmt: skip
_SUDO = (
    "#!/bin/sh\n# The lab runs as root: run the command without rootwrap.\n"
    'if [ "$1" = cinder-rootwrap ]; then shift 2; fi\nexec "$@"\n'
)
_MOUNTED = 'mkdir -p "$2" && mount --bind "$1" "$2" && shift 2 && exec "$@"'


@dataclass(frozen=True)
class CinderSettings:
    folder: Path
    port: int
    auth_url: str
    password: str  # the cinder service user's
    region: str
    database_url: str
    transport_url: str
    glance_url: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def export(self) -> Path:
        return self.folder / "export"

    @property
    def share(self) -> str:
        return f"127.0.0.1:{self.export}"

    @property
    def mount_point(self) -> Path:
        # os-brick's RemoteFsClient.get_mount_point: the base joined with the md5 of the share.
        return self.folder / "mnt" / hashlib.md5(self.share.encode()).hexdigest()

    @property
    def conf(self) -> Path:
        return self.folder / "cinder.conf"


def missing_binaries() -> list[tuple[Path, str]]:
    return [(path, package) for path, package in NEEDED if not path.exists()]


def check_requirements() -> None:
    """Refuse before anything starts: the Debian binaries, and root (each volume and backup service
    makes its bind mount in a mount namespace of its own)."""
    missing = missing_binaries()
    if missing:
        names = ", ".join(f"{path} (Debian package {package})" for path, package in missing)
        packages = " ".join(package for _path, package in missing)
        raise LabServiceError(
            f"Cinder cannot start: missing {names}; install them: apt-get install {packages}"
            " (not in `make system-deps`: Cinder is an opt-in part of the lab)"
        )
    if os.geteuid() != 0:
        raise LabServiceError(
            "Cinder in the lab needs root (its volume and backup services bind-mount their share)"
        )


def settings_from_lab(folder: Path, port: int, password: str) -> CinderSettings:
    """Cinder's settings on the running lab in ``folder``: its database server and bus read from nova.conf."""
    nova_conf = configparser.ConfigParser(interpolation=None, strict=False)
    nova_conf.read(folder / "nova" / "nova.conf")
    try:
        nova_db = nova_conf["database"]["connection"]
        transport = nova_conf["DEFAULT"]["transport_url"]
    except KeyError as exc:
        raise LabServiceError(
            f"{folder / 'nova' / 'nova.conf'} has no {exc}: is a lab up in {folder}?"
        ) from exc
    base, _, query = nova_db.partition("?")
    database_url = base.rsplit("/", 1)[0] + f"/{DATABASE}" + (f"?{query}" if query else "")
    state = load_state(folder)
    if state is None:
        raise LabServiceError(f"no lab in {folder}")
    return CinderSettings(
        folder=folder / "cinder", port=port, auth_url=state.urls["keystone"], password=password,
        region=REGION, database_url=database_url, transport_url=transport, glance_url=state.urls["image"],
    )  # fmt: skip


def write_config(venv: Path, settings: CinderSettings) -> None:
    folder = settings.folder
    for sub in ("export", "mnt", "backups", "state", "lock", "bin", "api"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(venv / "etc" / "cinder" / "api-paste.ini", folder / "api-paste.ini")
    sudo = folder / "bin" / "sudo"
    sudo.write_text(_SUDO)
    sudo.chmod(0o755)
    (folder / "nfs_shares").write_text(settings.share + "\n")
    settings.conf.touch(mode=0o600)
    settings.conf.write_text(
        "[DEFAULT]\nuse_stderr = true\n"
        f"transport_url = {settings.transport_url}\n"
        "auth_strategy = keystone\nmy_ip = 127.0.0.1\n"
        f"host = {HOST}\n"
        f"state_path = {folder / 'state'}\n"
        f"rootwrap_config = {folder / 'rootwrap.conf'}\n"
        f"api_paste_config = {folder / 'api-paste.ini'}\n"
        f"glance_api_servers = {settings.glance_url}\n"
        f"enabled_backends = {BACKEND}\n"
        "report_interval = 2\nservice_down_time = 20\n"
        "backup_driver = cinder.backup.drivers.posix.PosixBackupDriver\n"
        f"backup_posix_path = {folder / 'backups'}\n"
        # The chunked driver holds a whole chunk in memory: its default (1,999,994,880 bytes) made
        # cinder-backup 5.1 GB resident with five 1 GiB volumes backing up at once. 32 MiB chunks.
        "backup_file_size = 33554432\n"
        "osapi_volume_workers = 1\n"
        # No quotas (as the lab's Nova): Cinder's default of 10 backups per project refused a benchmark's
        # third window (413 OverQuota, which haven takes for a permanent refusal).
        "quota_volumes = -1\nquota_snapshots = -1\nquota_gigabytes = -1\n"
        "quota_backups = -1\nquota_backup_gigabytes = -1\n"
        f"[database]\nconnection = {settings.database_url}\n"
        + authtoken_section(settings.auth_url, "cinder", settings.password, settings.region)
        + auth_section("nova", settings.auth_url, "cinder", settings.password, settings.region)
        + f"[{BACKEND}]\nvolume_driver = cinder.volume.drivers.nfs.NfsDriver\n"
        f"volume_backend_name = {BACKEND}\n"
        f"nfs_shares_config = {folder / 'nfs_shares'}\n"
        f"nfs_mount_point_base = {folder / 'mnt'}\n"
        "nfs_sparsed_volumes = true\nnfs_snapshot_support = true\n"
        "nas_secure_file_operations = false\nnas_secure_file_permissions = false\n"
        f"[oslo_concurrency]\nlock_path = {folder / 'lock'}\n"
        "[oslo_messaging_notifications]\ndriver = noop\n"
    )


def _env(venv: Path, settings: CinderSettings) -> dict[str, str]:
    system = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    path = f"{settings.folder / 'bin'}:{venv / 'bin'}:{system}"
    return {"PATH": path}


def service_argv(venv: Path, settings: CinderSettings, service: str) -> list[str]:
    argv = [str(venv / "bin" / service), "--config-file", str(settings.conf)]
    if service in ("cinder-volume", "cinder-backup"):
        # A private mount namespace with the share's mount point bound to the export folder.
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _MOUNTED, "mounted",
                str(settings.export), str(settings.mount_point), *argv]  # fmt: skip
    return argv


def start(
    folder: Path,
    venv: Path,
    keep: Callable[[LabProcess], LabProcess],
    say: Progress,
    timeout_s: float = 180.0,
) -> tuple[str, str]:
    """Start Cinder beside the running lab in ``folder``; (its API's URL, cinder.conf) once every service
    (scheduler, the NFS backend, backup) reports up in Cinder's own service list."""
    check_requirements()
    password = secrets.token_urlsafe(15)
    settings = settings_from_lab(folder, free_port(), password)
    say("Cinder: database, Keystone user and endpoint, config")
    _sql(folder / "mariadb", f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8")
    admin_password = (folder / "keystone" / "admin-password").read_text().strip()
    admin = Account(settings.auth_url, "admin", admin_password, "admin")
    provisioner = Provisioner(admin.session(timeout_s=60), settings.auth_url, REGION)
    provisioner.user("cinder", password, "service", ("admin", "service"))
    provisioner.endpoint("volumev3", "cinderv3", f"{settings.url}/v3/$(project_id)s")
    write_config(venv, settings)
    env = _env(venv, settings)
    run_checked([str(venv / "bin" / "cinder-manage"), "--config-file", str(settings.conf), "db", "sync"],
                "cinder-manage db sync", env=env)  # fmt: skip
    say("Cinder: starting the API, scheduler, volume (NFS driver on a bind mount) and backup (posix)")
    for service in SERVICES:
        keep(LabProcess(service, service_argv(venv, settings, service), settings.folder / f"{service}.log",
                        env=env).start())  # fmt: skip
    keep(start_api(venv, settings, env))
    session = admin.session(timeout_s=60)
    wait_services_up(session, settings.url, timeout_s)
    return f"{settings.url}/v3", str(settings.conf)


def start_api(venv: Path, settings: CinderSettings, env: dict[str, str]) -> LabProcess:
    # cinder.wsgi.api reads only the default config files (its argv is gunicorn's, empty):
    # ~/cinder.conf among them, so its HOME is Cinder's folder.
    return serve("cinder-api", venv, "cinder.wsgi.api:application", settings.port, settings.folder / "api",
                 {**env, "HOME": str(settings.folder)}, workers=1, threads=4)  # fmt: skip


def wait_services_up(session: ks_session.Session, url: str, timeout_s: float) -> list[dict[str, Any]]:
    """Cinder's own service list once the scheduler, the volume backend and the backup service are up."""
    project = session.get_project_id()
    wanted = {"cinder-scheduler": HOST, "cinder-volume": f"{HOST}@{BACKEND}", "cinder-backup": HOST}
    deadline = time.monotonic() + timeout_s
    services: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        answer = session.get(f"{url}/v3/{project}/os-services", raise_exc=False)
        if answer.status_code == 200:
            services = answer.json()["services"]
            up = {
                (s["binary"], s["host"]) for s in services if (s["state"], s["status"]) == ("up", "enabled")
            }
            if all((binary, host) in up for binary, host in wanted.items()):
                return services
        time.sleep(1.0)
    raise LabServiceError(f"Cinder's services not all up after {timeout_s} s: {services}")


def _sql(mariadb_folder: Path, statement: str) -> None:
    user = "root" if os.getuid() == 0 else getpass.getuser()
    run_checked([str(CLIENT), "--no-defaults", f"--socket={mariadb_folder / 'mariadb.sock'}", "-u", user,
                 "-e", statement], "creating Cinder's database")  # fmt: skip
