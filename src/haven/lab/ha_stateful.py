"""The HA lab's 3-node MariaDB Galera and RabbitMQ clusters, each node a systemd unit on a controller.

Who calls it: haven.lab.lab (``haven lab up --ha``, once the controllers run: ``start``), and
tests/stateful/test_galera_ha_lab.py and test_rabbitmq_ha_lab.py (which start only the controllers'
systemd, no OpenStack, and one cluster on them); haven.lab.ha_openstack and bench/stateful_openstack.py
read a running lab's clusters back (``from_state``, ``rabbit_from_state``) to put OpenStack on them
(opt-in: by default the lab's OpenStack stays on the plain lab's MariaDB and RabbitMQ).

Nodes are spread over the controllers in turn: with the lab's two controllers, g1 and g3 (rabbit-1 and
rabbit-3) run on ctl-1, g2 (rabbit-2) on ctl-2, so losing ctl-1 loses quorum: a layout for drills on one
machine, not for production.

Galera: each node is Debian's mariadbd with galera-4 on its own loopback ports (SQL, gcomm, IST, SST)
and data folder ``LAB/ha/galera/gN`` (its my.cnf as haven.stateful.galera_node writes it; the folder is
a link to one in /tmp when the server's user, mysql, cannot reach LAB), and its unit
``mariadb-gN.service`` in its controller's unit folder (haven.stateful.galera_systemd's ``unit_file``:
Restart=no, haven starts it). The cluster is formed through the systemd driver: g1's data initialised
by mariadb-install-db, g1 bootstrapped through its unit, then g2 and g3 started one at a time (each
joins by rsync SST from a synced donor).

HAProxy in front of Galera (``start_galera_haproxy``): ``haproxy-galera.service`` on the last
controller, one frontend on 127.0.0.1, writes to g1 with g2 and g3 as backups (one node at a time, as
operators configure it for OpenStack), ``option mysql-check``.

RabbitMQ: ``rabbitmq-N.service`` runs rabbit-N@localhost (haven.stateful.rabbitmq_systemd's
``unit_file``) with its own AMQP and distribution ports and folder ``LAB/ha/rabbitmq/nN``; one
``epmd-rabbitmq.service`` on the first controller (every node is ``@localhost``, so one port mapper
serves them all) and one cookie in ``LAB/ha/rabbitmq``. The three start at once and form one cluster
by classic peer discovery.

Stopping: the units run inside the controllers' PID namespaces; ``haven lab down`` kills each
namespace's PID 1, which ends them (a power cut: each Galera node's next start recovers its position).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from haven.domain.errors import TemporaryError
from haven.lab.ha import Controller
from haven.lab.process import LabServiceError
from haven.lab.toolenv import Progress
from haven.stateful.cluster import all_synced, stable_port
from haven.stateful.galera_node import MARIADBD, PROVIDER, NodeLayout, server_user, sql_connect, write_config
from haven.stateful.galera_systemd import SystemdGaleraNode, SystemdUnit, unit_file
from haven.stateful.rabbitmq import ClusterStatus
from haven.stateful.rabbitmq_cluster import healthy
from haven.stateful.rabbitmq_node import EPMD, RABBITMQ_SERVER, RabbitLayout
from haven.stateful.rabbitmq_node import write_config as write_rabbit_config
from haven.stateful.rabbitmq_systemd import SystemdRabbitNode
from haven.stateful.rabbitmq_systemd import unit_file as rabbit_unit_file

INSTALL_DB = Path("/usr/bin/mariadb-install-db")
CLUSTER = "haven-lab"
NAMES = ("g1", "g2", "g3")
EPMD_UNIT = "epmd-rabbitmq.service"
HAPROXY_UNIT = "haproxy-galera.service"
HAPROXY = Path("/usr/sbin/haproxy")


@dataclass
class HaGalera:
    folder: Path  # LAB/ha/galera
    nodes: list[SystemdGaleraNode]
    hosts: dict[str, str]  # node -> the controller its unit runs on
    started_in_s: float = 0.0
    haproxy_port: int = 0  # start_galera_haproxy's frontend on 127.0.0.1 (0: none)

    def node(self, name: str) -> SystemdGaleraNode:
        return next(n for n in self.nodes if n.name == name)


def _reachable(folder: Path, user: pwd.struct_passwd) -> Path:
    """``folder``, or a folder in /tmp that ``folder`` links to when ``user`` (mysql) cannot reach it.

    mariadbd runs as ``mysql`` (haven.stateful.galera_node.server_user) and needs every parent folder
    searchable; the lab's default folder is under root's home (mode 0700), which is left as it is. The
    folder in /tmp is named after ``folder``'s path, so the next ``haven lab up`` in the same lab folder
    empties and reuses it instead of leaving one more behind.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    where = folder.parent.resolve()
    for parent in (where, *where.parents):
        mode = parent.stat()
        if not (
            mode.st_mode & 0o001
            or (mode.st_uid == user.pw_uid and mode.st_mode & 0o100)
            or (mode.st_gid == user.pw_gid and mode.st_mode & 0o010)
        ):
            digest = hashlib.sha1(str(folder.absolute()).encode()).hexdigest()[:12]
            target = Path(tempfile.gettempdir()) / f"haven-lab-galera-{digest}"
            shutil.rmtree(target, ignore_errors=True)  # an earlier lab's, in this same lab folder
            _forget_orphans()
            target.mkdir()
            (target / ".lab-folder").write_text(str(folder.absolute()))
            folder.unlink(missing_ok=True)
            folder.symlink_to(target)
            break
    else:
        folder.mkdir(exist_ok=True)
    target = folder.resolve()
    os.chmod(target, 0o755)
    return target


def _forget_orphans() -> None:
    """Remove the /tmp data folders of earlier labs whose lab folder is gone (a bench or test removed
    it) and that no process uses: each is a few hundred MB of Galera data nobody can reach any more."""
    for target in Path(tempfile.gettempdir()).glob("haven-lab-galera-*"):
        try:
            owner = Path((target / ".lab-folder").read_text())
        except OSError:
            continue  # not marked: not known to be a lab's
        if owner.is_symlink() and owner.resolve() == target:
            continue  # its lab folder still links to it
        if _in_use(target):
            continue
        shutil.rmtree(target, ignore_errors=True)


def _in_use(folder: Path) -> bool:
    needle = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    return True
            except OSError:
                continue
    return False


def unit_name(node: str) -> str:
    return f"mariadb-{node}.service"


def start_galera(
    controllers: Sequence[Controller], folder: Path, say: Progress, timeout_s: float = 180.0
) -> HaGalera:
    """Lay out the three nodes, write their units on the controllers and form the cluster through them."""
    for path, package in (
        (MARIADBD, "mariadb-server"),
        (PROVIDER, "galera-4"),
        (INSTALL_DB, "mariadb-server"),
    ):
        if not path.exists():
            raise LabServiceError(
                f"{path} is missing: install Debian's {package} (scripts/install-system-deps.sh)"
            )
    if not controllers:
        raise LabServiceError("the HA lab has no controller to run Galera's units on")
    started = time.monotonic()
    say(f"HA: a 3-node Galera cluster as systemd units on {', '.join(c.host for c in controllers)}")
    user = pwd.getpwnam(server_user())
    folder = _reachable(folder, user)
    layouts = [
        NodeLayout(name, folder / name, stable_port(), stable_port(), stable_port(), stable_port())
        for name in NAMES
    ]
    galera = HaGalera(folder, [], {})
    for index, layout in enumerate(layouts):
        controller = controllers[index % len(controllers)]
        layout.data.mkdir(parents=True, exist_ok=True)
        write_config(layout, layouts, CLUSTER)
        for path in (layout.folder, layout.data):
            os.chown(path, user.pw_uid, user.pw_gid)
        unit = unit_name(layout.name)
        (controller.folder / "units" / unit).write_text(
            unit_file(layout, f"MariaDB Galera node {layout.name} on {controller.host} (haven lab --ha)")
        )
        galera.nodes.append(SystemdGaleraNode(layout, unit, controller.bus))
        galera.hosts[layout.name] = controller.host
    result = subprocess.run(
        [str(INSTALL_DB), "--no-defaults", f"--datadir={layouts[0].data}", f"--user={server_user()}",
         "--auth-root-authentication-method=socket", "--skip-test-db"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        raise LabServiceError(f"mariadb-install-db failed: {result.stderr.strip()[-500:]}")
    asyncio.run(_form(galera, timeout_s))
    galera.started_in_s = round(time.monotonic() - started, 1)
    return galera


async def _form(galera: HaGalera, timeout_s: float) -> None:
    first, *others = galera.nodes
    await first.bootstrap_new()
    await wait_synced(galera, [first], timeout_s)
    for node in others:  # one at a time: each joins by SST from a synced donor
        await node.start(None)
        await wait_synced(galera, [first, node], timeout_s)


async def wait_synced(
    galera: HaGalera, nodes: Sequence[SystemdGaleraNode] | None = None, timeout_s: float = 60.0
) -> None:
    """Until each of ``nodes`` (default all) is Synced in one primary component of at least that many."""
    nodes = list(nodes or galera.nodes)
    if not await all_synced(nodes, timeout_s):
        tails = "\n".join(f"{n.name}: {n.files.error_tail()}" for n in nodes)
        raise LabServiceError(f"the lab's Galera cluster did not sync in {timeout_s:g} s:\n{tails}")


def describe(galera: HaGalera) -> dict[str, object]:
    """What the lab state keeps of the Galera part (``from_state`` reads it back)."""
    return {
        "folder": str(galera.folder),
        "cluster": CLUSTER,
        "nodes": [
            {
                "name": n.name,
                "host": galera.hosts[n.name],
                "unit": n.unit,
                "bus": n.bus,
                "port": n.layout.port,
                "gcomm_port": n.layout.gcomm_port,
                "ist_port": n.layout.ist_port,
                "sst_port": n.layout.sst_port,
            }
            for n in galera.nodes
        ],
        "started_in_s": galera.started_in_s,
        "haproxy_port": galera.haproxy_port,
    }


def from_state(saved: Mapping[str, object]) -> HaGalera:
    try:
        folder = Path(str(saved["folder"]))
        nodes: list[SystemdGaleraNode] = []
        hosts: dict[str, str] = {}
        for n in saved["nodes"]:  # type: ignore[attr-defined]
            layout = NodeLayout(
                str(n["name"]), folder / str(n["name"]), int(n["port"]), int(n["gcomm_port"]),
                int(n["ist_port"]), int(n["sst_port"]),
            )  # fmt: skip
            nodes.append(SystemdGaleraNode(layout, str(n["unit"]), str(n["bus"])))
            hosts[layout.name] = str(n["host"])
        started_in_s = float(saved.get("started_in_s", 0.0))  # type: ignore[arg-type]
        return HaGalera(folder, nodes, hosts, started_in_s, int(saved.get("haproxy_port", 0)))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabServiceError(f"the lab state's Galera part is not readable ({exc})") from exc


def start_galera_haproxy(galera: HaGalera, controller: Controller, timeout_s: float = 30.0) -> int:
    """HAProxy in front of the Galera units, as a unit on ``controller``: its SQL port on 127.0.0.1.

    Writes go to one node at a time, as operators configure it for OpenStack (Kolla-Ansible, TripleO):
    g1 active, g2 and g3 ``backup``; ``option mysql-check`` (a MySQL handshake and a login of the
    password-less ``haproxy_check`` user created here) ``inter 1s fall 3 rise 2``, and ``observe layer4
    error-limit 1 on-error mark-down`` so the first refused connection moves the writes at once;
    ``on-marked-down shutdown-sessions`` closes the clients of a node marked down (they reconnect to the
    next one instead of waiting on a dead server). Also creates ``haven``@``127.0.0.1`` (password in
    ``FOLDER/sql-password``) for clients over TCP. The check does not read wsrep state: a node that
    answers SQL while not Synced (a donor, a non-primary one) stays in.
    """
    password = secrets.token_urlsafe(15)
    _sql(
        galera.nodes[0],
        "CREATE USER IF NOT EXISTS 'haproxy_check'@'127.0.0.1'",
        f"CREATE USER IF NOT EXISTS 'haven'@'127.0.0.1' IDENTIFIED BY '{password}'",
        "GRANT ALL ON *.* TO 'haven'@'127.0.0.1'",
    )
    (galera.folder / "sql-password").write_text(password)
    os.chmod(galera.folder / "sql-password", 0o600)
    port = stable_port()
    admin = galera.folder / "haproxy.sock"
    servers = [
        f"    server {n.name} 127.0.0.1:{n.layout.port} check inter 1s fall 3 rise 2"
        f" observe layer4 error-limit 1 on-error mark-down on-marked-down shutdown-sessions"
        + ("" if index == 0 else " backup")
        for index, n in enumerate(galera.nodes)
    ]
    config = galera.folder / "haproxy.cfg"
    config.write_text(
        "\n".join(
            [
                "global",
                f"    stats socket {admin} mode 600 level admin",
                "defaults",
                "    mode tcp",
                "    timeout connect 1s",
                "    timeout client 1h",
                "    timeout server 1h",
                "    timeout check 2s",
                "listen galera",
                f"    bind 127.0.0.1:{port}",
                "    option mysql-check user haproxy_check post-41",
                *servers,
            ]
        )
        + "\n"
    )
    log = galera.folder / "haproxy.log"
    (controller.folder / "units" / HAPROXY_UNIT).write_text(
        "[Unit]\nDescription=HAProxy in front of the lab's Galera units\nDefaultDependencies=no\n"
        f"[Service]\nType=exec\nExecStart={HAPROXY} -db -f {config}\n"
        f"StandardOutput=append:{log}\nStandardError=append:{log}\n"
        "Restart=always\nRestartSec=1\n"
    )
    if asyncio.run(SystemdUnit(HAPROXY_UNIT, controller.bus).start()) != "active":
        raise LabServiceError(
            f"{HAPROXY_UNIT} on {controller.host} did not start: see {galera.folder}/haproxy.log"
        )
    deadline = time.monotonic() + timeout_s
    while not admin.exists():
        if time.monotonic() > deadline:
            raise LabServiceError(f"{HAPROXY_UNIT}: no admin socket {admin} after {timeout_s:g} s")
        time.sleep(0.1)
    galera.haproxy_port = port
    return port


def _sql(node: SystemdGaleraNode, *statements: str) -> None:
    connection = sql_connect(node.layout.socket, 10.0, autocommit=True)
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        connection.close()


@dataclass
class HaRabbit:
    folder: Path  # LAB/ha/rabbitmq: the cookie's HOME, a folder per node
    nodes: list[SystemdRabbitNode]
    hosts: dict[str, str]  # node -> the controller its unit runs on
    epmd_port: int
    epmd_host: str  # the controller whose epmd.service every node registers with
    started_in_s: float = 0.0

    def node(self, name: str) -> SystemdRabbitNode:
        return next(n for n in self.nodes if n.name == name or n.name.split("@")[0] == name)


def start_rabbitmq(
    controllers: Sequence[Controller], folder: Path, say: Progress, timeout_s: float = 180.0
) -> HaRabbit:
    """Three RabbitMQ nodes as units on the controllers, one epmd unit, started at once; returns once
    every node sees the three running."""
    for path in (RABBITMQ_SERVER, EPMD):
        if not path.exists():
            raise LabServiceError(f"{path} is missing: install Debian's rabbitmq-server")
    if not controllers:
        raise LabServiceError("the HA lab has no controller to run RabbitMQ's units on")
    started = time.monotonic()
    say(f"HA: a 3-node RabbitMQ cluster as systemd units on {', '.join(c.host for c in controllers)}")
    folder.mkdir(parents=True, exist_ok=True)
    cookie = folder / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    os.chmod(cookie, 0o400)
    epmd_port = stable_port()
    first = controllers[0]
    (first.folder / "units" / EPMD_UNIT).write_text(
        f"[Unit]\nDescription=Erlang port mapper of the lab's RabbitMQ nodes\nDefaultDependencies=no\n"
        f"[Service]\nType=exec\nExecStart={EPMD} -port {epmd_port} -address 127.0.0.1\n"
        "Restart=always\nRestartSec=1\n"
    )
    names = [f"rabbit-{i}@localhost" for i in range(1, 4)]
    layouts = [
        RabbitLayout(name, folder / f"n{i}", folder, epmd_port, stable_port(), stable_port())
        for i, name in enumerate(names, 1)
    ]
    rabbit = HaRabbit(folder, [], {}, epmd_port, first.host)
    for index, layout in enumerate(layouts):
        controller = controllers[index % len(controllers)]
        write_rabbit_config(layout, names)
        unit = f"rabbitmq-{index + 1}.service"
        (controller.folder / "units" / unit).write_text(
            rabbit_unit_file(layout, f"RabbitMQ node {layout.name} on {controller.host} (haven lab --ha)")
        )
        rabbit.nodes.append(SystemdRabbitNode(layout, unit, controller.bus))
        rabbit.hosts[layout.name] = controller.host
    asyncio.run(_form_rabbit(rabbit, first, timeout_s))
    rabbit.started_in_s = round(time.monotonic() - started, 1)
    return rabbit


async def _form_rabbit(rabbit: HaRabbit, first: Controller, timeout_s: float) -> None:
    if await SystemdUnit(EPMD_UNIT, first.bus).start() != "active":
        raise LabServiceError(f"{EPMD_UNIT} on {first.host} did not start")
    await asyncio.gather(*(node.start() for node in rabbit.nodes))  # they form one cluster as they boot
    await wait_rabbit_whole(rabbit, timeout_s)


async def wait_rabbit_whole(rabbit: HaRabbit, timeout_s: float = 90.0) -> None:
    """Until every node's own cluster_status lists the three running and no partition."""
    names = {n.name for n in rabbit.nodes}
    deadline = time.monotonic() + timeout_s
    while True:
        statuses: list[ClusterStatus | str] = []
        for node in rabbit.nodes:
            try:
                statuses.append(await node.status())
            except TemporaryError as exc:
                statuses.append(str(exc))
        if all(healthy(s, names) for s in statuses):
            return
        if time.monotonic() > deadline:
            lines = "\n".join(f"{n.name}: {s}" for n, s in zip(rabbit.nodes, statuses, strict=True))
            raise LabServiceError(f"the lab's RabbitMQ cluster was not whole in {timeout_s:g} s:\n{lines}")
        await asyncio.sleep(0.5)


def start(ha_folder: Path, controllers: Sequence[Controller], say: Progress) -> dict[str, object]:
    """``haven lab up --ha``'s call: both clusters on the controllers at once; what the lab state keeps.

    Writes ``LAB/ha/stateful.toml``, the ``[stateful.galera]`` and ``[stateful.rabbitmq]`` sections for
    these units (``driver = "systemd"``). It is not
    appended to the lab's haven.toml: that file has ``[coordination]`` (the lab's etcd), and haven serve
    refuses ``[stateful.*]`` with coordination (the nodes' files are read on the engine's machine).
    """
    with ThreadPoolExecutor(2) as pool:
        galera = pool.submit(start_galera, controllers, ha_folder / "galera", say)
        rabbit = pool.submit(start_rabbitmq, controllers, ha_folder / "rabbitmq", say)
        made_galera, made_rabbit = galera.result(), rabbit.result()
    start_galera_haproxy(made_galera, controllers[-1])
    (ha_folder / "stateful.toml").write_text(galera_toml(made_galera) + rabbit_toml(made_rabbit))
    return {"galera": describe(made_galera), "rabbitmq": describe_rabbit(made_rabbit)}


def describe_rabbit(rabbit: HaRabbit) -> dict[str, object]:
    return {
        "folder": str(rabbit.folder),
        "epmd_port": rabbit.epmd_port,
        "epmd_host": rabbit.epmd_host,
        "nodes": [
            {
                "name": n.name,
                "host": rabbit.hosts[n.name],
                "unit": n.unit,
                "bus": n.bus,
                "amqp_port": n.layout.amqp_port,
                "dist_port": n.layout.dist_port,
            }
            for n in rabbit.nodes
        ],
        "started_in_s": rabbit.started_in_s,
    }


def rabbit_from_state(saved: Mapping[str, object]) -> HaRabbit:
    """The RabbitMQ part of a running HA lab, as ``describe_rabbit`` saved it (node N's folder is nN)."""
    try:
        folder = Path(str(saved["folder"]))
        epmd_port = int(saved["epmd_port"])  # type: ignore[call-overload]
        nodes: list[SystemdRabbitNode] = []
        hosts: dict[str, str] = {}
        for index, n in enumerate(saved["nodes"], 1):  # type: ignore[arg-type,var-annotated]
            layout = RabbitLayout(
                str(n["name"]), folder / f"n{index}", folder, epmd_port, int(n["amqp_port"]),
                int(n["dist_port"]),
            )  # fmt: skip
            nodes.append(SystemdRabbitNode(layout, str(n["unit"]), str(n["bus"])))
            hosts[layout.name] = str(n["host"])
        started_in_s = float(saved.get("started_in_s", 0.0))  # type: ignore[arg-type]
        return HaRabbit(folder, nodes, hosts, epmd_port, str(saved["epmd_host"]), started_in_s)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabServiceError(f"the lab state's RabbitMQ part is not readable ({exc})") from exc


def galera_toml(galera: HaGalera) -> str:
    """haven.toml's ``[stateful.galera]`` for these units: haven serve recovers them through systemd."""
    lines = [
        "",
        "[stateful.galera]  # the HA lab's Galera units (`haven lab up --ha`): recovered via systemd",
        f'cluster = "{CLUSTER}"',
        'driver = "systemd"',
    ]
    for node in galera.nodes:
        lines += [
            "[[stateful.galera.nodes]]",
            f'name = "{node.name}"',
            f'folder = "{node.layout.folder}"',
            f'unit = "{node.unit}"',
            f'bus = "{node.bus}"',
        ]
    return "\n".join(lines) + "\n"


def rabbit_toml(rabbit: HaRabbit) -> str:
    """haven.toml's ``[stateful.rabbitmq]`` for these units (driver systemd)."""
    lines = [
        "",
        "[stateful.rabbitmq]  # the HA lab's RabbitMQ units (`haven lab up --ha`): recovered via systemd",
        'cluster = "haven-lab"',
        'driver = "systemd"',
        f'home = "{rabbit.folder}"',
        f"epmd_port = {rabbit.epmd_port}",
    ]
    for node in rabbit.nodes:
        lines += [
            "[[stateful.rabbitmq.nodes]]",
            f'name = "{node.name}"',
            f'folder = "{node.layout.folder}"',
            f"amqp_port = {node.layout.amqp_port}",
            f"dist_port = {node.layout.dist_port}",
            f'unit = "{node.unit}"',
            f'bus = "{node.bus}"',
        ]
    return "\n".join(lines) + "\n"
