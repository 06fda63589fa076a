"""The HA lab's 3-node MariaDB Galera cluster, each node a systemd unit on one of the lab's controllers.

Who calls it: haven.lab.lab (``haven lab up --ha``, once the controllers run: ``start_galera``, then
``galera_toml`` appended to the lab's haven.toml), and tests/stateful/test_galera_ha_lab.py (which
starts only the controllers' systemd, no OpenStack, and the cluster on them).

Nodes ``g1``, ``g2``, ``g3`` are spread over the controllers in turn: with the lab's two controllers,
g1 and g3 run on ctl-1 and g2 on ctl-2 (so losing ctl-1 loses quorum: a layout for drills, not for
production). Each node is Debian's mariadbd with galera-4 on its own loopback ports (SQL, gcomm, IST,
SST) and data folder ``LAB/ha/galera/gN`` (its my.cnf as haven.stateful.galera_node writes it), and
its unit ``mariadb-gN.service`` in its controller's unit folder (haven.stateful.galera_systemd's
``unit_file``: Restart=no, haven starts it). The cluster is formed through the systemd driver: g1's
data initialised by mariadb-install-db, g1 bootstrapped through its unit, then g2 and g3 started
one at a time (each joins by rsync SST from a synced donor).

Stopping: the units run inside the controllers' PID namespaces; ``haven lab down`` kills each
namespace's PID 1, which ends them (a power cut: each node's next start recovers its position).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from haven.domain.errors import TemporaryError
from haven.lab.ha import Controller
from haven.lab.process import LabServiceError, free_port
from haven.lab.toolenv import Progress
from haven.stateful.galera_node import MARIADBD, PROVIDER, NodeLayout, server_user, write_config
from haven.stateful.galera_systemd import SystemdGaleraNode, unit_file

INSTALL_DB = Path("/usr/bin/mariadb-install-db")
CLUSTER = "haven-lab"
NAMES = ("g1", "g2", "g3")


@dataclass
class HaGalera:
    folder: Path  # LAB/ha/galera
    nodes: list[SystemdGaleraNode]
    hosts: dict[str, str]  # node -> the controller its unit runs on
    started_in_s: float = 0.0

    def node(self, name: str) -> SystemdGaleraNode:
        return next(n for n in self.nodes if n.name == name)


def _reachable(folder: Path, user: pwd.struct_passwd) -> Path:
    """``folder``, or a folder in /tmp that ``folder`` links to when ``user`` (mysql) cannot reach it.

    mariadbd runs as ``mysql`` (haven.stateful.galera_node.server_user) and needs every parent folder
    searchable; the lab's default folder is under root's home (mode 0700), which is left as it is.
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
            target = Path(tempfile.mkdtemp(prefix="haven-lab-galera-"))
            folder.unlink(missing_ok=True)
            folder.symlink_to(target)
            break
    else:
        folder.mkdir(exist_ok=True)
    target = folder.resolve()
    os.chmod(target, 0o755)
    return target


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
        NodeLayout(name, folder / name, free_port(), free_port(), free_port(), free_port()) for name in NAMES
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
    deadline = time.monotonic() + timeout_s
    while True:
        states = []
        for node in nodes:
            try:
                live = await node.live()
                states.append(
                    live.primary and live.local_state == "Synced" and live.cluster_size >= len(nodes)
                )
            except TemporaryError:
                states.append(False)
        if all(states):
            return
        if time.monotonic() > deadline:
            tails = "\n".join(f"{n.name}: {n.files.error_tail()}" for n in nodes)
            raise LabServiceError(f"the lab's Galera cluster did not sync in {timeout_s:g} s:\n{tails}")
        await asyncio.sleep(0.3)


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
        return HaGalera(folder, nodes, hosts, float(saved.get("started_in_s", 0.0)))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabServiceError(f"the lab state's Galera part is not readable ({exc})") from exc


def galera_toml(galera: HaGalera) -> str:
    """haven.toml's ``[stateful.galera]`` for these units: haven serve recovers them through systemd."""
    lines = [
        "",
        "[stateful.galera]  # the HA lab's Galera units (`haven lab up --ha`): haven serve recovers them",
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
