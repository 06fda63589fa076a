"""The lab's Nova: nova.conf, database set-up, the API under gunicorn, conductor, scheduler, computes.

Who calls it: haven.lab.lab (``haven lab up``) and haven.lab.hardware (which starts and
kills the computes as their BMCs power on and off). Nova 34.0.0 runs from the ``nova``
tool venv with its databases on the lab's MariaDB and its bus on the lab's RabbitMQ.

Settings that matter for haven (measured, see the README's lab section):
``compute_driver = fake.FakeDriverWithoutFakeNodes`` with one ``host`` and ``state_path``
per compute (the plain FakeDriver refuses to restart, and a host must come back after a
drill); ``report_interval = 2`` and ``service_down_time = 10`` so Nova notices a dead
compute in about 9 s; Neutron is the lab's stub (haven.lab.netstub); quotas are off so a
benchmark can boot many servers; one worker per service to keep the lab small.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from haven.lab.process import LabProcess, run_checked
from haven.lab.wsgi import auth_section, authtoken_section, serve

DATABASES = ("nova_api", "nova", "nova_cell0")


@dataclass(frozen=True)
class NovaSettings:
    folder: Path
    api_port: int
    transport_url: str
    api_database_url: str
    database_url: str
    cell0_database_url: str
    auth_url: str
    password: str  # the nova service user's
    region: str
    glance_url: str
    network_url: str


def write_config(venv: Path, settings: NovaSettings) -> Path:
    """nova.conf (private: it holds passwords) and api-paste.ini in ``settings.folder``."""
    folder = settings.folder
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(venv / "etc" / "nova" / "api-paste.ini", folder / "api-paste.ini")
    user = ("nova", settings.password, settings.region)
    conf = folder / "nova.conf"
    conf.touch(mode=0o600)
    conf.write_text(
        "[DEFAULT]\n"
        "use_stderr = true\n"
        f"transport_url = {settings.transport_url}\n"
        "compute_driver = fake.FakeDriverWithoutFakeNodes\n"
        "my_ip = 127.0.0.1\n"
        "report_interval = 2\n"
        "service_down_time = 10\n"
        f"state_path = {folder / 'state'}\n"
        f"[api_database]\nconnection = {settings.api_database_url}\n"
        f"[database]\nconnection = {settings.database_url}\n"
        "[api]\nauth_strategy = keystone\n"
        + authtoken_section(settings.auth_url, *user)
        + auth_section("placement", settings.auth_url, *user)
        + "valid_interfaces = public\n"
        + auth_section("service_user", settings.auth_url, *user)
        + "send_service_user_token = true\n"
        + f"[glance]\nendpoint_override = {settings.glance_url}\nregion_name = {settings.region}\n"
        + auth_section("neutron", settings.auth_url, *user)
        + f"endpoint_override = {settings.network_url}\n"
        + "[scheduler]\ndiscover_hosts_in_cells_interval = -1\nworkers = 1\n"
        + "[conductor]\nworkers = 1\n"
        + "[quota]\ndriver = nova.quota.NoopQuotaDriver\n"
        + f"[oslo_concurrency]\nlock_path = {folder / 'lock'}\n"
        + "[oslo_messaging_notifications]\ndriver = noop\n"
        + f"[wsgi]\napi_paste_config = {folder / 'api-paste.ini'}\n"
    )
    return conf


def setup_databases(venv: Path, settings: NovaSettings) -> None:
    """API database, cell0 and cell1 mappings, then the cell database (each step idempotent)."""
    manage = [str(venv / "bin" / "nova-manage"), "--config-file", str(settings.folder / "nova.conf")]
    run_checked([*manage, "api_db", "sync"], "nova-manage api_db sync")
    run_checked([*manage, "cell_v2", "map_cell0", "--database_connection", settings.cell0_database_url],
                "nova-manage cell_v2 map_cell0")  # fmt: skip
    cells = run_checked([*manage, "cell_v2", "list_cells"], "nova-manage cell_v2 list_cells")
    if " cell1 " not in cells:
        run_checked([*manage, "cell_v2", "create_cell", "--name", "cell1", "--verbose"],
                    "nova-manage cell_v2 create_cell")  # fmt: skip
    run_checked([*manage, "db", "sync"], "nova-manage db sync")


def start_api(venv: Path, settings: NovaSettings) -> LabProcess:
    folder = settings.folder / "api"
    folder.mkdir(parents=True, exist_ok=True)
    env = {"OS_NOVA_CONFIG_DIR": str(settings.folder)}
    return serve("nova-api", venv, "nova.wsgi.osapi_compute:application", settings.api_port, folder, env,
                 workers=2, threads=8)  # fmt: skip


def start_service(venv: Path, settings: NovaSettings, service: str) -> LabProcess:
    """``nova-conductor`` or ``nova-scheduler``, logging to its own file in the folder."""
    argv = [str(venv / "bin" / service), "--config-file", str(settings.folder / "nova.conf")]
    return LabProcess(service, argv, settings.folder / f"{service}.log").start()


def compute_argv(venv: Path, nova_folder: Path, host: str) -> list[str]:
    """How to run ``host``'s nova-compute: the shared nova.conf plus a file with its host and state."""
    own = nova_folder / "computes" / host
    for sub in ("state", "instances"):  # nova-compute writes its node uuid there at once
        (own / sub).mkdir(parents=True, exist_ok=True)
    (own / "compute.conf").write_text(
        f"[DEFAULT]\nhost = {host}\nstate_path = {own / 'state'}\ninstances_path = {own / 'instances'}\n"
    )
    return [str(venv / "bin" / "nova-compute"), "--config-file", str(nova_folder / "nova.conf"),
            "--config-file", str(own / "compute.conf")]  # fmt: skip


def discover_hosts(venv: Path, folder: Path) -> None:
    """Map the registered computes into cell1 (the periodic discovery is too slow for a lab)."""
    run_checked([str(venv / "bin" / "nova-manage"), "--config-file", str(folder / "nova.conf"),
                 "cell_v2", "discover_hosts", "--verbose"], "nova-manage cell_v2 discover_hosts")  # fmt: skip
