"""The lab's Placement API: configure, sync its MariaDB database, serve it under gunicorn.

Who calls it: haven.lab.lab (``haven lab up``). openstack-placement 16.0.0 lives in the
``nova`` tool venv (locks/nova.lock); its WSGI module is ``placement.wsgi.api``, with the
config folder named by ``OS_PLACEMENT_CONFIG_DIR``. Nova's scheduler and computes talk
to it through the Keystone catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from haven.lab.process import LabProcess, run_checked
from haven.lab.wsgi import authtoken_section, serve


@dataclass(frozen=True)
class PlacementSettings:
    folder: Path
    port: int
    database_url: str
    auth_url: str
    password: str  # the placement service user's
    region: str


def start_placement(venv: Path, settings: PlacementSettings) -> LabProcess:
    """Write placement.conf, sync the database, serve; return once the API answers."""
    folder = settings.folder
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "placement.conf"
    conf.write_text(
        "[DEFAULT]\nuse_stderr = true\n"
        f"[placement_database]\nconnection = {settings.database_url}\n"
        "[api]\nauth_strategy = keystone\n"
        + authtoken_section(settings.auth_url, "placement", settings.password, settings.region)
    )
    conf.chmod(0o600)
    run_checked([str(venv / "bin" / "placement-manage"), "--config-file", str(conf), "db", "sync"],
                "placement-manage db sync")  # fmt: skip
    env = {"OS_PLACEMENT_CONFIG_DIR": str(folder)}
    return serve("placement-api", venv, "placement.wsgi.api:application", settings.port, folder, env,
                 workers=1, threads=8)  # fmt: skip
