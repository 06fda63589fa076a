"""Opt-in: the HA lab's OpenStack on its own Galera and RabbitMQ clusters (issue 12).

    nice -n 19 .venv/bin/python -m haven.lab.ha_openstack [--folder LAB]     (root, a running HA lab)

Who calls it: an operator of a running ``haven lab up --ha`` (the command above) and
bench/stateful_openstack.py. Nothing else: ``haven lab up`` and ``haven lab up --ha`` start exactly
what they started before (their OpenStack stays on the plain lab's MariaDB and RabbitMQ).

What it does, once, on a running HA lab:
1. Databases on Galera, through HAProxy's writer port (haven.lab.ha_stateful.start_galera_haproxy:
   g1 active, g2 and g3 backups): ``keystone``, ``nova_api``, ``nova``, ``nova_cell0``, ``placement``,
   ``glance``, and one SQL user ``openstack``@``127.0.0.1`` (password in ``LAB/ha/galera/openstack-
   password``). Their content is the running lab's: Nova's and Placement's copied from the lab's
   MariaDB (``mariadb-dump --single-transaction`` into ``mariadb`` through HAProxy); Keystone's and
   Glance's (SQLite in the plain lab) by their own ``db_sync`` on Galera, then every row copied
   (SQLAlchemy in the tool's venv, foreign-key checks off while it copies). Nova's cell mappings are
   pointed at the Galera copies and at the RabbitMQ cluster. HAProxy's check of the Galera nodes
   becomes "Synced only" (``synced_check``: ``wsrep_local_state`` 4, as operators' clustercheck),
   so the writes never go back to a node still joining.
2. A RabbitMQ user ``openstack`` on the cluster and the transport URL listing its three nodes, as
   operators write it (``rabbit://openstack:PW@127.0.0.1:P1,openstack:PW@127.0.0.1:P2,...``), with
   Nova's queues mirrored on the three nodes by a policy (``ha-all``, as Kolla-Ansible set it before
   its quorum queues: see ``MIRRORED``), so a lost node loses no queue.
3. nova.conf, placement.conf, keystone.conf and glance-api.conf rewritten to use them (the old files
   kept as ``*.plain``; made private), ``LAB/ha/serve.env``'s transport URL too (haven's ``nova_rpc`` probes).
4. Restarted on them: every controller's units (keystone, nova-api, placement-api, glance-api,
   nova-conductor, nova-scheduler: stop, then start, over each controller's D-Bus) and the computes
   (SIGTERM; the lab's hardware watcher starts them again within its poll, on the new nova.conf).
   Returns once HAProxy has every replica UP, every conductor and scheduler answers an RPC ping over
   the cluster and every compute reports up in Nova.

Left as they were: the plain lab's own Keystone, Placement, Glance and nova-api processes keep
running on the plain lab's databases (not in the catalog since ``--ha``: clients, computes and
haven reach the replicas through HAProxy); the plain MariaDB and RabbitMQ keep running, unused by
the replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from haven.controlplane.drivers.haproxy import HAProxyRuntime, parse_servers_state
from haven.domain.errors import HavenError
from haven.lab import ha as ha_lab
from haven.lab import ha_stateful, labfiles
from haven.lab.process import LabServiceError
from haven.lab.state import load_state
from haven.lab.toolenv import Progress, ensure_tool_env
from haven.stateful.galera_systemd import SystemdBus, SystemdUnit
from haven.stateful.rabbitmq_node import RABBITMQCTL

DUMP = Path("/usr/bin/mariadb-dump")
CLIENT = Path("/usr/bin/mariadb")
USER = "openstack"
COPIED = ("nova_api", "nova", "nova_cell0", "placement")  # from the plain lab's MariaDB
SYNCED = {"keystone": "keystone", "glance": "glance"}  # database -> tool venv: db_sync, rows copied
DATABASES = (*COPIED, *SYNCED)
# Classic queues mirrored on every node, as Kolla-Ansible's om_enable_rabbitmq_high_availability set
# it (its definitions.json): every queue but reply, fanout and amq.* ones. Not quorum queues (Kolla's
# default since 2024.1): they must be durable, and haven's nova_rpc probe declares Nova's exchange
# non-durable (oslo.messaging's defaults), which a durable declaration then refuses (seen: 406).
MIRRORED = r"^(?!(amq\.)|(.*_fanout_)|(reply_)).*"
MIRRORING = '{"ha-mode":"all","ha-promote-on-shutdown":"always","ha-promote-on-failure":"always"}'

# Runs in a tool's venv (its SQLAlchemy and PyMySQL): every row of every table of argv[1] into the
# same tables of argv[2] (made by the service's db_sync), the migration bookkeeping left as synced.
_COPY_ROWS = """\
import sys
import sqlalchemy as sa
source, target = sa.create_engine(sys.argv[1]), sa.create_engine(sys.argv[2])
src, dst = sa.MetaData(), sa.MetaData()
src.reflect(source)
dst.reflect(target)
skip = {"alembic_version", "migrate_version"}
copied = 0
with source.connect() as reading, target.begin() as writing:
    writing.execute(sa.text("SET FOREIGN_KEY_CHECKS=0"))
    for table in dst.sorted_tables:
        if table.name in skip or table.name not in src.tables:
            continue
        writing.execute(table.delete())
        names = [c.name for c in src.tables[table.name].columns if c.name in table.columns]
        query = sa.select(*(src.tables[table.name].c[n] for n in names))
        rows = [dict(zip(names, row)) for row in reading.execute(query)]
        if rows:
            writing.execute(table.insert(), rows)
            copied += len(rows)
    writing.execute(sa.text("SET FOREIGN_KEY_CHECKS=1"))
print(copied)
"""


@dataclass(frozen=True)
class Backends:
    """What OpenStack now uses: the SQL URL of each database and the transport URL."""

    haproxy_port: int
    password: str  # the SQL user's and the RabbitMQ user's
    rabbit_ports: tuple[int, ...]

    def db_url(self, database: str) -> str:
        return f"mysql+pymysql://{USER}:{self.password}@127.0.0.1:{self.haproxy_port}/{database}?charset=utf8"

    @property
    def transport_url(self) -> str:
        hosts = ",".join(f"{USER}:{self.password}@127.0.0.1:{port}" for port in self.rabbit_ports)
        return f"rabbit://{hosts}/"


def rewrite_serve_env(env: Path, lab_folder: Path) -> None:
    """``LAB/ha/serve.env`` again after ``_rewrite_configs``: the same variables (the deep probe's
    password, the workers' transport URL if it had one), the URL now nova.conf's on the clusters."""
    if env.exists():
        workers = any(
            line.startswith(f"{ha_lab.TRANSPORT_URL_ENV}=") for line in env.read_text().splitlines()
        )
        labfiles.private(env, ha_lab.serve_env(lab_folder, workers=workers))


def on_clusters(lab_folder: Path) -> bool:
    """Whether the lab's OpenStack was moved onto its clusters: `use_clusters` keeps the plain
    nova.conf beside the new one (``nova/nova.conf.plain``), the mark that this asks for."""
    return (lab_folder / "nova" / "nova.conf.plain").exists()


def use_clusters(lab_folder: Path, say: Progress, timeout_s: float = 300.0) -> Backends:
    """Move the running HA lab's OpenStack onto its Galera and RabbitMQ clusters (the module's steps)."""
    state = load_state(lab_folder)
    if state is None or not state.ha or "stateful" not in state.ha:
        raise LabServiceError(f"no HA lab in {lab_folder}: start one with `haven lab up --ha --folder ...`")
    if on_clusters(lab_folder):
        raise LabServiceError(f"the lab in {lab_folder} already uses its clusters (nova.conf.plain exists)")
    for path, package in (
        (DUMP, "mariadb-client"),
        (CLIENT, "mariadb-client"),
        (RABBITMQCTL, "rabbitmq-server"),
    ):
        if not path.exists():
            raise LabServiceError(f"{path} is missing: install Debian's {package}")
    ha = ha_lab.from_state(state.ha)
    galera = ha_stateful.from_state(state.ha["stateful"]["galera"])
    rabbit: Mapping[str, Any] = state.ha["stateful"]["rabbitmq"]
    if not galera.haproxy_port:
        raise LabServiceError("the lab's Galera has no HAProxy frontend (an older HA lab): start it again")
    password = secrets.token_hex(12)
    backends = Backends(galera.haproxy_port, password, tuple(int(n["amqp_port"]) for n in rabbit["nodes"]))
    say(f"Galera: databases {', '.join(DATABASES)} and user {USER} through HAProxy :{galera.haproxy_port}")
    _galera_user(galera, password)
    (galera.folder / "openstack-password").write_text(password)
    os.chmod(galera.folder / "openstack-password", 0o600)
    _copy_mariadb(lab_folder, galera)
    pymysql = _pymysql_path(ha.folder, say)
    for database, tool in SYNCED.items():
        _sync_and_copy(lab_folder, database, tool, backends, pymysql, say)
    _point_cells(galera, backends)
    say("HAProxy's Galera check: Synced nodes only (wsrep_local_state 4, as clustercheck)")
    synced_check(galera, ha.controller(galera_haproxy_host(ha)))
    say(f"RabbitMQ: user {USER} on the cluster; transport URL over {len(backends.rabbit_ports)} nodes")
    _rabbit_user(rabbit, password)
    _rewrite_configs(lab_folder, backends)
    rewrite_serve_env(ha.folder / "serve.env", lab_folder)
    say("restarting the controllers' units and the computes on the clusters")
    _restart_units(ha, pymysql)
    computes = _restart_computes(lab_folder)
    ha_lab._wait_all_up(ha, timeout_s)
    ha_lab.wait_workers(ha, backends.transport_url, timeout_s)
    _wait_computes(state.urls, lab_folder, state.computes, computes, timeout_s)
    return backends


def _galera_user(galera: ha_stateful.HaGalera, password: str) -> None:
    statements = [f"CREATE DATABASE IF NOT EXISTS {db}" for db in DATABASES]
    statements += [
        f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{password}'",
        f"ALTER USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{password}'",
        *(f"GRANT ALL ON {db}.* TO '{USER}'@'127.0.0.1'" for db in DATABASES),
    ]
    ha_stateful._sql(galera.nodes[0], *statements)


def _copy_mariadb(lab_folder: Path, galera: ha_stateful.HaGalera) -> None:
    """Nova's and Placement's databases, as the plain lab's MariaDB has them, into Galera via HAProxy."""
    socket = lab_folder / "mariadb" / "mariadb.sock"
    admin = (galera.folder / "sql-password").read_text().strip()
    dump = subprocess.Popen(
        [str(DUMP), "--no-defaults", f"--socket={socket}", "-u", "root", "--single-transaction",
         "--skip-add-locks", "--databases", *COPIED],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    load = subprocess.run(
        [str(CLIENT), "--no-defaults", "-h", "127.0.0.1", "-P", str(galera.haproxy_port), "-u", "haven",
         f"-p{admin}"],
        stdin=dump.stdout, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert dump.stdout is not None and dump.stderr is not None
    dump.stdout.close()
    dumped = dump.wait(60)
    if dumped != 0 or load.returncode != 0:
        raise LabServiceError(
            f"copying {', '.join(COPIED)} into Galera failed: dump exit {dumped} "
            f"({dump.stderr.read().decode(errors='replace')[-300:]}), load exit {load.returncode} "
            f"({load.stderr[-300:]})"
        )


def _pymysql_path(ha_folder: Path, say: Progress) -> Path:
    """A folder holding only PyMySQL (the nova venv's), for Keystone's and Glance's ``PYTHONPATH``:
    their tool venvs have no MySQL driver (the plain lab runs them on SQLite)."""
    folder = ha_folder / "pymysql"
    folder.mkdir(exist_ok=True)
    link = folder / "pymysql"
    if not link.exists():
        source = next((ensure_tool_env("nova", progress=say) / "lib").glob("python3*/site-packages/pymysql"))
        link.symlink_to(source)
    return folder


def _sync_and_copy(
    lab_folder: Path, database: str, tool: str, backends: Backends, pymysql: Path, say: Progress
) -> None:
    venv = ensure_tool_env(tool, progress=say)
    folder = lab_folder / tool
    name = "keystone.conf" if tool == "keystone" else "glance-api.conf"
    plain = _read(folder / name)
    source = plain.get("database", "connection")
    synced = folder / f"{name}.galera-sync"
    conf = _read(folder / name)
    conf.set("database", "connection", backends.db_url(database))
    _write(conf, synced)
    manage = [str(venv / "bin" / f"{tool}-manage"), "--config-file", str(synced)]
    env = {**os.environ, "PYTHONPATH": str(pymysql)}
    try:
        result = subprocess.run(
            [*manage, "db_sync"], capture_output=True, text=True, timeout=600, check=False, env=env
        )
        if result.returncode != 0:
            raise LabServiceError(f"{tool}-manage db_sync on Galera failed: {result.stderr.strip()[-500:]}")
        copy = subprocess.run(
            [str(venv / "bin" / "python"), "-c", _COPY_ROWS, source, backends.db_url(database)],
            capture_output=True, text=True, timeout=300, check=False, env=env,
        )  # fmt: skip
        if copy.returncode != 0:
            raise LabServiceError(f"copying {tool}'s rows into Galera failed: {copy.stderr.strip()[-500:]}")
    finally:
        synced.unlink(missing_ok=True)


WSREP_CHECK = """\
#!/bin/sh
# HAProxy's external check of one Galera node (haven lab): success only when the node is Synced
# (wsrep_local_state 4), what clustercheck answers operators' HAProxy; a joining or donor node fails.
state=$(/usr/bin/mariadb --no-defaults -h "$HAPROXY_SERVER_ADDR" -P "$HAPROXY_SERVER_PORT" \\
  -u haproxy_check --connect-timeout=2 -N -s -e "SHOW GLOBAL STATUS LIKE 'wsrep_local_state'" \\
  2>/dev/null | cut -f2)
[ "$state" = "4" ]
"""


def galera_haproxy_host(ha: ha_lab.HaLab) -> str:
    """The controller whose systemd runs ``haproxy-galera.service`` (the last: ``ha_stateful.start``)."""
    return ha.controllers[-1].host


def synced_check(galera: ha_stateful.HaGalera, controller: ha_lab.Controller) -> None:
    """Replace HAProxy's ``mysql-check`` in front of Galera by an external check that passes only on a
    Synced node, and restart its unit. With ``mysql-check``, g1 coming back took the writes again while
    it was still joining: Nova's API answered 500 (``1047 WSREP has not yet prepared node for
    application use``) and list requests failed (seen in the first bench runs)."""
    script = galera.folder / "wsrep-check.sh"
    script.write_text(WSREP_CHECK)
    os.chmod(script, 0o755)
    config = galera.folder / "haproxy.cfg"
    text = config.read_text()
    if "external-check command" not in text:
        text = text.replace("global\n", "global\n    external-check\n    insecure-fork-wanted\n", 1)
        text = text.replace(
            "    option mysql-check user haproxy_check post-41\n",
            f'    option external-check\n    external-check path "/usr/bin:/bin"\n'
            f"    external-check command {script}\n",
        )
        config.write_text(text)

    async def restart() -> None:
        unit = SystemdUnit(ha_stateful.HAPROXY_UNIT, controller.bus, timeout_s=30.0)
        await unit.stop()
        if await unit.start() != "active":
            raise LabServiceError(
                f"{ha_stateful.HAPROXY_UNIT} did not start: see {galera.folder}/haproxy.log"
            )

    asyncio.run(restart())
    socket = galera.folder / "haproxy.sock"
    deadline = time.monotonic() + 60
    while True:
        state = {}
        if socket.exists():
            try:
                out = asyncio.run(HAProxyRuntime(str(socket)).command("show servers state"))
                state = {key: op for key, (_admin, op) in parse_servers_state(out).items()}
            except HavenError:
                state = {}
        if len(state) == len(galera.nodes) and all(op == "up" for op in state.values()):
            return
        if time.monotonic() > deadline:
            raise LabServiceError(f"HAProxy's Galera servers not UP with the synced check: {state}")
        time.sleep(0.5)


def _point_cells(galera: ha_stateful.HaGalera, backends: Backends) -> None:
    """The Galera copy of nova_api: cell0 and cell1 mapped to the Galera databases and the cluster."""
    ha_stateful._sql(
        galera.nodes[0],
        f"UPDATE nova_api.cell_mappings SET database_connection = '{backends.db_url('nova_cell0')}'"
        " WHERE name = 'cell0'",
        f"UPDATE nova_api.cell_mappings SET database_connection = '{backends.db_url('nova')}',"
        f" transport_url = '{backends.transport_url}' WHERE name = 'cell1'",
    )


def _rabbit_user(rabbit: Mapping[str, Any], password: str) -> None:
    first = str(rabbit["nodes"][0]["name"])
    env = {**os.environ, "HOME": str(rabbit["folder"]), "ERL_EPMD_ADDRESS": "127.0.0.1",
           "ERL_EPMD_PORT": str(rabbit["epmd_port"])}  # fmt: skip
    # a fresh vhost first: the exchanges and queues an earlier try declared otherwise are gone
    steps = [["delete_vhost", "/"], ["add_vhost", "/"], ["delete_user", USER], ["add_user", USER, password],
             ["set_permissions", "-p", "/", USER, ".*", ".*", ".*"],
             ["set_policy", "-p", "/", "--apply-to", "queues", "ha-all", MIRRORED, MIRRORING]]  # fmt: skip
    for args in steps:
        result = subprocess.run([str(RABBITMQCTL), "-n", first, *args], env=env, capture_output=True,
                                text=True, timeout=60, check=False)  # fmt: skip
        if result.returncode != 0 and not args[0].startswith("delete_"):
            raise LabServiceError(f"rabbitmqctl {args[0]} on {first} failed: {result.stderr.strip()[-300:]}")


def _read(path: Path) -> configparser.RawConfigParser:
    conf = configparser.RawConfigParser(strict=False)
    conf.optionxform = str  # type: ignore[assignment,method-assign]
    conf.read(path)
    return conf


def _write(conf: configparser.RawConfigParser, path: Path) -> None:
    """Private (it holds the clusters' password), whatever the file's mode was."""
    path.touch(mode=0o600)
    os.chmod(path, 0o600)
    with open(path, "w") as out:
        conf.write(out)


def _rewrite_configs(lab_folder: Path, backends: Backends) -> None:
    changes: dict[Path, list[tuple[str, str, str]]] = {
        lab_folder / "nova" / "nova.conf": [
            ("DEFAULT", "transport_url", backends.transport_url),
            ("api_database", "connection", backends.db_url("nova_api")),
            ("database", "connection", backends.db_url("nova")),
        ],
        lab_folder / "placement" / "placement.conf": [
            ("placement_database", "connection", backends.db_url("placement")),
        ],
        lab_folder / "keystone" / "keystone.conf": [("database", "connection", backends.db_url("keystone"))],
        lab_folder / "glance" / "glance-api.conf": [("database", "connection", backends.db_url("glance"))],
    }
    for path, settings in changes.items():
        shutil.copy2(path, path.with_name(path.name + ".plain"))
        conf = _read(path)
        for section, key, value in settings:
            if section != "DEFAULT" and not conf.has_section(section):
                conf.add_section(section)
            conf.set(section, key, value)
        _write(conf, path)


def _restart_units(ha: ha_lab.HaLab, pymysql: Path) -> None:
    """Each controller's units stopped and started again; Keystone's and Glance's with a drop-in
    (``UNIT.d/haven-clusters.conf``: PyMySQL on their ``PYTHONPATH``), read after a daemon reload."""
    units = [api.unit for api in ha.apis] + [worker.unit for worker in ha.workers]
    for controller in ha.controllers:
        for api in ha.apis:
            if api.tool in SYNCED.values():
                dropins = controller.folder / "units" / f"{api.unit}.d"
                dropins.mkdir(exist_ok=True)
                (dropins / "haven-clusters.conf").write_text(f"[Service]\nEnvironment=PYTHONPATH={pymysql}\n")

    async def restart(controller: ha_lab.Controller) -> None:
        async with SystemdBus(controller.bus, timeout_s=30.0) as bus:
            await bus.manager("Reload")
        for unit in units:
            systemd = SystemdUnit(unit, controller.bus, timeout_s=60.0)
            await systemd.stop()
            if await systemd.start() != "active":
                raise LabServiceError(f"{unit} on {controller.host} did not start again on the clusters")

    async def both() -> None:
        await asyncio.gather(*(restart(c) for c in ha.controllers))

    asyncio.run(both())


def compute_pids(lab_folder: Path) -> dict[str, int]:
    """host -> pid of the lab's running nova-compute processes (found in /proc by their config)."""
    conf = str(lab_folder / "nova" / "nova.conf").encode()
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if conf in argv and any(arg.endswith(b"nova-compute") for arg in argv[:2]):
            own = next((a for a in argv if a.endswith(b"compute.conf")), b"")
            found[Path(own.decode()).parent.name] = int(entry.name)
    return found


def _restart_computes(lab_folder: Path) -> dict[str, int]:
    old = compute_pids(lab_folder)
    for pid in old.values():
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    return old


def _wait_computes(
    urls: Mapping[str, str], lab_folder: Path, hosts: Sequence[str], old: Mapping[str, int], timeout_s: float
) -> None:
    """Until every compute runs again (a new pid) and Nova's service list (over Galera) says it is up."""
    from haven.lab.keystone import Account
    from haven.lab.labfiles import NovaAdmin

    deadline = time.monotonic() + timeout_s
    while True:
        now = compute_pids(lab_folder)
        if all(host in now and now[host] != old.get(host) for host in hosts):
            break
        if time.monotonic() > deadline:
            raise LabServiceError(f"the computes did not start again on the new nova.conf: {now}")
        time.sleep(0.5)
    password = (lab_folder / "keystone" / "admin-password").read_text().strip()
    admin = Account(urls["keystone"], "admin", password, "admin")
    nova = NovaAdmin(admin, urls["compute"])
    nova.wait_computes_up(list(hosts), timeout_s=max(10.0, deadline - time.monotonic()))


def main(argv: Sequence[str] | None = None) -> int:
    from haven.lab.lab import default_folder

    parser = argparse.ArgumentParser(
        prog="python -m haven.lab.ha_openstack", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--folder", type=Path, default=None, help="the HA lab's folder")
    args = parser.parse_args(argv)
    folder = args.folder or default_folder()
    started = time.monotonic()
    try:
        backends = use_clusters(folder, lambda m: print(f"{time.monotonic() - started:6.1f}s {m}"))
    except LabServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ports = ", ".join(str(p) for p in backends.rabbit_ports)
    took = time.monotonic() - started
    print(
        f"OpenStack on Galera (HAProxy 127.0.0.1:{backends.haproxy_port}), RabbitMQ ({ports}): {took:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
