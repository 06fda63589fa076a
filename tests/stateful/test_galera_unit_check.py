"""[stateful.galera] driver systemd refuses a unit haven's bootstrap would silently turn into a plain start.

A real systemd (PID 1 of its own namespaces, tests/controlplane/servers.py's fixture) loads the units; haven
reads their EnvironmentFiles and ExecStart over its D-Bus, as haven serve does when it builds the service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controlplane.servers import NamespacedSystemd, systemd_ns  # noqa: F401  (the fixture)
from haven.domain.clock import RealClock
from haven.domain.errors import ConfigError
from haven.service.config import load_config
from haven.stateful.galera_node import MARIADBD, PROVIDER, NodeLayout
from haven.stateful.galera_systemd import bootstrap_problems, read_unit_exec, unit_file
from haven.stateful.serving import GaleraService

# Debian's mariadb.service (12, MariaDB 10.11): $_WSREP_NEW_CLUSTER comes from the manager's environment.
DEBIAN = (
    "[Unit]\nDescription=MariaDB database server\nDefaultDependencies=no\n[Service]\nType=exec\n"
    "EnvironmentFile=-/etc/default/mariadb\n"
    f"ExecStart={MARIADBD} $MYSQLD_OPTS $_WSREP_NEW_CLUSTER $_WSREP_START_POSITION\nRestart=no\n"
)


def test_a_unit_without_the_environment_file_is_refused_and_havens_own_is_accepted(
    tmp_path: Path,
    systemd_ns: NamespacedSystemd,  # noqa: F811
) -> None:
    if not (MARIADBD.exists() and PROVIDER.exists()):
        pytest.skip("mariadb-server and galera-4 are not installed")
    layouts = [NodeLayout(n, tmp_path / n, 1, 2, 3, 4) for n in ("g1", "g2", "g3")]
    body = '[stateful.galera]\ndriver = "systemd"\n'
    for layout in layouts:
        layout.folder.mkdir()
        layout.cnf.write_text("[mariadbd]\n")
        unit = f"mariadb-{layout.name}.service"
        systemd_ns.add_unit(unit, DEBIAN if layout.name == "g2" else unit_file(layout, "haven's unit"))
        body += (
            f'[[stateful.galera.nodes]]\nname = "{layout.name}"\nfolder = "{layout.folder}"\n'
            f'unit = "{unit}"\nbus = "{systemd_ns.bus_address}"\n'
        )
    env_files, exec_start = asyncio.run(read_unit_exec("mariadb-g2.service", systemd_ns.bus_address))
    assert env_files == ["/etc/default/mariadb"] and "$_WSREP_NEW_CLUSTER" in exec_start[0]
    env = layouts[1].folder / "wsrep.env"
    assert bootstrap_problems(env_files, exec_start, layouts[1].folder) == [
        f"it reads no EnvironmentFile={env} (where haven writes _WSREP_NEW_CLUSTER)"
    ]
    (tmp_path / "haven.toml").write_text(body)
    config = load_config(tmp_path, tmp_path / "haven.toml").stateful.galera
    assert config is not None
    with pytest.raises(ConfigError) as error:
        GaleraService(config, RealClock())
    assert "node g2: unit mariadb-g2.service cannot be bootstrapped by haven" in error.value.message
    # the same cluster with haven's own unit for g2 too is accepted
    systemd_ns.add_unit("mariadb-g2.service", unit_file(layouts[1], "haven's unit"))
    assert len(GaleraService(config, RealClock()).nodes) == 3
