"""Galera as systemd units on the HA lab's controllers, recovered by haven through systemd.

The fixture starts what ``haven lab up --ha`` runs Galera on, and only that: two controllers, each
Debian's systemd as PID 1 of its own namespaces (haven.lab.ha's controller, with no OpenStack API
units, to keep the module short), and the lab's 3-node cluster as units on them
(haven.lab.ha_stateful: g1 and g3 on ctl-1, g2 on ctl-2). haven's recovery loop drives the units
with the systemd driver (haven.stateful.galera_systemd). The fixture records the cluster in the
folder's lab.json as ``haven lab up --ha`` does, so the node-loss and full-outage tests run the drills
through the CLI (``haven drill galera-* --cloud lab --lab-folder F --json``), whose verdict comes from
the servers (wsrep status, the rows read back, grastate.dat and the drill's own ``--wsrep-recover``)
and Galera's log. Verdicts here also come from systemd (the unit's state and InvocationID over its
D-Bus) and the servers, never from haven's journal alone. Needs root (skipped without). One cluster
for the module; each test leaves it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql  # type: ignore[import-untyped]
import pytest

from haven.cli.main import main
from haven.domain.clock import RealClock
from haven.domain.errors import ConfigError, HavenError
from haven.domain.galera import GaleraAction
from haven.lab import ha, ha_stateful
from haven.lab.ha_stateful import HaGalera
from haven.stateful import serving
from haven.stateful.config import parse_stateful
from haven.stateful.drills import NEW_GROUP
from haven.stateful.galera import DecisionKind
from haven.stateful.galera_node import MARIADBD, PROVIDER
from haven.stateful.galera_recovery import GaleraRecovery
from haven.stateful.galera_systemd import ENV_FILE, SystemdBus, SystemdGaleraNode
from haven.stateful.serving import GaleraService
from haven.stateful.writer import TABLE, missing, prepare
from haven.store import Store

from .lab_records import write_lab_state

_LAB_MARKS = [
    pytest.mark.slow,
    pytest.mark.systemd,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd as PID 1 of a PID namespace)"),
    pytest.mark.skipif(
        not (MARIADBD.exists() and PROVIDER.exists() and shutil.which("rsync") and Path(ha.SYSTEMD).exists()),
        reason="needs mariadb-server, galera-4, rsync and systemd (make system-deps)",
    ),
]


NAMES = ["g1", "g2", "g3"]


def needs_lab(test: Callable[..., None]) -> Callable[..., None]:
    for mark in _LAB_MARKS:
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def galera() -> Iterator[HaGalera]:
    folder = Path(tempfile.mkdtemp(prefix="haven-galera-ha-"))
    folder.chmod(0o755)
    controllers: list[ha.Controller] = []
    try:
        for index, host in enumerate(ha.CONTROLLERS, start=1):
            controllers.append(
                ha._start_controller(folder / host, host, f"127.0.1.{index}", folder, {}, (), {}, "no")
            )
        for controller in controllers:
            ha._wait_for_bus(controller, 15.0)
        made = ha_stateful.start_galera(controllers, folder / "galera", lambda _message: None)
        prepare(made.nodes[0].layout.socket)
        ha_stateful.start_galera_haproxy(made, controllers[1])
        # Recorded as `haven lab up --ha` records its clusters, for `haven drill ... --cloud lab`.
        write_lab_state(
            folder, [c.pid1 for c in controllers], {"stateful": {"galera": ha_stateful.describe(made)}}
        )
        yield made
    finally:
        ha.stop(ha.HaLab(folder, controllers, (), {}, {}))
        shutil.rmtree(folder, ignore_errors=True)


def _recovery(galera: HaGalera) -> tuple[GaleraRecovery, Store]:
    """haven's loop over the units, its journal and alerts in a store of its own."""
    store = Store.open("sqlite://")
    return GaleraRecovery.on_store(galera.nodes, store, "lab", RealClock()), store


def _steps(store: Store) -> list[GaleraAction]:
    return store.galera_actions_since("lab", 0.0)


def _alerts(store: Store) -> list[str]:
    return [a.message for a in store.list_alerts() if a.cleared_at is None]


def _until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"no {what} in {timeout_s} s"
        time.sleep(0.1)


def _size(node: SystemdGaleraNode) -> int:
    try:
        return asyncio.run(node.live()).cluster_size
    except HavenError:
        return 0


def _unit(node: SystemdGaleraNode) -> tuple[str, bytes]:
    """systemd's own word: the unit's ActiveState and InvocationID."""

    async def read() -> tuple[str, bytes]:
        async with SystemdBus(node.bus) as bus:
            props = await bus.unit(node.unit)
        return str(props["ActiveState"]), bytes(props["InvocationID"])

    return asyncio.run(read())


def _whole(galera: HaGalera) -> None:
    asyncio.run(ha_stateful.wait_synced(galera, timeout_s=90))
    for node in galera.nodes:
        live = asyncio.run(node.live())
        assert (live.primary, live.local_state, live.cluster_size) == (True, "Synced", 3), node.name


def _log_marks(galera: HaGalera) -> dict[str, int]:
    return {n.name: (n.layout.folder / "error.log").stat().st_size for n in galera.nodes}


def _new_groups(node: SystemdGaleraNode, since: int) -> int:
    with open(node.layout.folder / "error.log", "rb") as log:
        log.seek(since)
        return log.read().count(NEW_GROUP)


@needs_lab
def test_the_cluster_runs_as_units_spread_over_the_controllers(galera: HaGalera) -> None:
    assert galera.hosts == {"g1": "ctl-1", "g2": "ctl-2", "g3": "ctl-1"}
    _whole(galera)
    for node in galera.nodes:
        assert _unit(node)[0] == "active"
        assert not (node.layout.folder / ENV_FILE).exists()  # the bootstrap's environment was consumed


def _drill(galera: HaGalera, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """``haven drill ARGV --cloud lab --lab-folder LAB --json`` (in this process); its exit and JSON."""
    capsys.readouterr()
    lab = galera.folder.parent
    code = main(["drill", *argv, "--cloud", "lab", "--lab-folder", str(lab), "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report: dict[str, Any] = json.loads(captured.out)
    print(f"{argv}: {code}, recover_s {report['recover_s']}, {report['problems']}", file=sys.stderr)
    return code, report


@needs_lab
def test_the_node_loss_drill_on_the_lab_starts_the_killed_unit_again(
    galera: HaGalera, capsys: pytest.CaptureFixture[str]
) -> None:
    """``haven drill galera-node-loss --cloud lab``: g3's unit killed under writes (SIGKILL to its mariadbd
    through systemd); haven's loop (systemd driver) starts it. Judged again here from systemd and the
    servers, beside the drill's own verdict (the servers' wsrep state and rows, the writer's acks)."""
    _whole(galera)
    g3 = galera.node("g3")
    before = _unit(g3)[1]
    code, report = _drill(galera, capsys, "galera-node-loss", "--galera-node", "g3")
    assert (code, report["verdict"]) == (0, "recovered"), report
    writes = (report["writes_lost"], report["failed_writes"], report["writes_acked"] >= 10)
    assert writes == (0, 0, True), report
    assert report["bootstrap_node"] is None  # no new cluster in any server's log
    assert [n["name"] for n in report["nodes"] if n["state"] == "Synced" and n["size"] == 3] == NAMES
    state, invocation = _unit(g3)
    assert state == "active" and invocation != before  # systemd started it again, a new invocation
    _whole(galera)  # each server's own wsrep_cluster_size is 3 again


@needs_lab
@pytest.mark.parametrize("first_down", ["g1", "g2"])
def test_the_full_outage_drill_on_the_lab_bootstraps_the_highest_seqno_and_loses_no_write(
    galera: HaGalera, capsys: pytest.CaptureFixture[str], first_down: str
) -> None:
    """``haven drill galera-full-outage --galera-node FIRST --cloud lab``: FIRST's unit killed, then the
    other two together 20 writes later (no unit stopped cleanly). g1 shares ctl-1 with g3; g2 is alone on
    ctl-2. The drill reads each position itself before haven runs and counts new clusters in Galera's
    log; checked again here from systemd and the servers."""
    _whole(galera)
    invocations = {n.name: _unit(n)[1] for n in galera.nodes}
    code, report = _drill(galera, capsys, "galera-full-outage", "--galera-node", first_down)
    assert (code, report["verdict"]) == (0, "recovered"), report
    seqnos = {n["name"]: n["seqno_before"] for n in report["nodes"]}
    assert seqnos[first_down] < max(seqnos.values()), seqnos  # the ordering really left it behind
    assert report["bootstrap_from_highest"] is True and report["writes_lost"] == 0, report
    assert report["writes_acked"] >= 30 and report["writes_served_s"] is not None
    bootstrapped = galera.node(report["bootstrap_node"])  # one name: exactly one new cluster in the logs
    assert seqnos[bootstrapped.name] == max(seqnos.values())
    _whole(galera)
    for node in galera.nodes:
        state, invocation = _unit(node)
        assert state == "active" and invocation != invocations[node.name], node.name
        assert not (node.layout.folder / ENV_FILE).exists()

    # The bootstrap's environment was the one start's: the unit started again by systemd alone rejoins.
    marks = _log_marks(galera)
    asyncio.run(bootstrapped.stop())
    asyncio.run(bootstrapped.start(None))
    _whole(galera)
    assert _new_groups(bootstrapped, marks[bootstrapped.name]) == 0


def test_driver_systemd_needs_each_nodes_unit() -> None:
    nodes = [{"name": "g1", "folder": "/x", "unit": "mariadb-g1.service"}, {"name": "g2", "folder": "/y"}]
    section = {"galera": {"driver": "systemd", "nodes": nodes}}
    with pytest.raises(ConfigError, match=r"galera: driver systemd needs each node's unit \(none for g2\)"):
        parse_stateful(section, "haven.toml")
    nodes[1]["unit"] = "mariadb-g2.service"
    config = parse_stateful(section, "haven.toml").galera
    assert config is not None and [n.unit for n in config.nodes] == [
        "mariadb-g1.service",
        "mariadb-g2.service",
    ]


@pytest.mark.skipif(not (MARIADBD.exists() and PROVIDER.exists()), reason="needs mariadb-server, galera-4")
def test_serve_builds_the_systemd_driver_from_the_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The buses here are not real: each unit answers as haven's own unit file would (the check of a
    # unit's EnvironmentFile and ExecStart over real D-Bus is tests/stateful/test_galera_unit_check.py).
    def haven_unit(unit: str, bus: str | None) -> tuple[list[str], list[list[str]]]:
        folder = tmp_path / unit.removeprefix("mariadb-").removesuffix(".service")
        return [str(folder / "wsrep.env")], [["/usr/sbin/mariadbd", "$_WSREP_NEW_CLUSTER"]]

    monkeypatch.setattr(serving, "unit_exec", haven_unit)
    nodes = []
    for name in ("g1", "g2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "my.cnf").write_text("[mariadbd]\n")
        nodes.append({"name": name, "folder": str(tmp_path / name), "unit": f"mariadb-{name}.service"})
    nodes[0]["bus"] = "unix:path=/x/bus"
    config = parse_stateful({"galera": {"driver": "systemd", "nodes": nodes}}, "haven.toml").galera
    assert config is not None
    service = GaleraService(config, RealClock())
    built = [(type(n).__name__, n.unit, n.bus) for n in service.nodes]  # type: ignore[attr-defined]
    assert built == [
        ("SystemdGaleraNode", "mariadb-g1.service", "unix:path=/x/bus"),
        ("SystemdGaleraNode", "mariadb-g2.service", None),  # no bus: the machine's system bus
    ]
    assert "driver systemd" in service.describe()


@needs_lab
def test_haven_serve_with_the_labs_section_starts_a_killed_unit(galera: HaGalera, tmp_path: Path) -> None:
    """``haven serve`` (a subprocess) with the section ``haven lab up --ha`` writes (LAB/ha/stateful.toml)."""
    _whole(galera)
    body = ha_stateful.galera_toml(galera).replace(
        'driver = "systemd"\n', 'driver = "systemd"\ninterval_s = 1.0\n'
    )
    (tmp_path / "haven.toml").write_text(body)
    g1 = galera.node("g1")
    before = _unit(g1)[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = subprocess.Popen(
        [str(Path(sys.executable).parent / "haven"), "serve", "--bind", f"127.0.0.1:{port}"],
        env={**os.environ, "HAVEN_HOME": str(tmp_path)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        _until(lambda: (tmp_path / "haven.db").exists(), "serve's store")
        asyncio.run(g1.kill())
        _until(lambda: _unit(g1)[0] == "active" and _unit(g1)[1] != before, "g1's unit started again", 90)
        _whole(galera)
    finally:
        serve.send_signal(signal.SIGINT)
        out, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    assert "driver systemd" in out + err
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        steps = store.galera_actions_since(ha_stateful.CLUSTER, 0.0)
    assert [(s.kind, s.node, s.state) for s in steps if s.kind != "recover"] == [("start", "g1", "done")]


class _TcpWriter:
    """A client through HAProxy's frontend: one connection, reconnecting after an error; each write
    timed (its outcome and when), so failures after the move can be told from the one in flight."""

    def __init__(self, port: int, password: str, start_id: int) -> None:
        self.port, self.password, self.next = port, password, start_id
        self.acked: list[tuple[int, float]] = []
        self.failed: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        connection = None
        while not self._stop.is_set():
            try:
                if connection is None:
                    connection = pymysql.connect(
                        host="127.0.0.1", port=self.port, user="haven", password=self.password,
                        connect_timeout=15, read_timeout=15, write_timeout=15, autocommit=True,
                    )  # fmt: skip
                with connection.cursor() as cursor:
                    cursor.execute(f"INSERT INTO {TABLE} VALUES (%s, %s)", (self.next, time.time()))
                self.acked.append((self.next, time.monotonic()))
            except pymysql.MySQLError:
                self.failed.append(time.monotonic())
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
                connection = None
                time.sleep(0.05)
            self.next += 1
            time.sleep(0.02)
        if connection is not None:
            connection.close()


@needs_lab
def test_haproxy_moves_writes_off_a_killed_node_and_no_write_fails_after(galera: HaGalera) -> None:
    """g1 takes the writes (g2, g3 backups); its unit killed: HAProxy moves the clients to g2, and no
    write fails once one has succeeded there; haven starts g1 again; every acknowledged row is there."""
    _whole(galera)
    password = (galera.folder / "sql-password").read_text()
    writer = _TcpWriter(galera.haproxy_port, password, start_id=30_000_000)
    try:
        _until(lambda: len(writer.acked) >= 20, "20 writes through HAProxy")
        assert not writer.failed
        killed = time.monotonic()
        g1 = galera.node("g1")
        asyncio.run(g1.kill())  # SIGKILL to its mariadbd through systemd: the unit fails (Restart=no)
        assert _unit(g1)[0] == "failed"
        stale = g1.layout.folder / ENV_FILE  # as a haven that died between writing it and StartUnit left it
        stale.write_text("_WSREP_NEW_CLUSTER=--wsrep-new-cluster\n")
        assert not asyncio.run(g1.running()) and not stale.exists()  # seen stopped: removed at once
        _until(lambda: bool(writer.acked) and writer.acked[-1][1] > killed, "a write served after the kill")
        moved = next(at for _row, at in writer.acked if at > killed)
        recovery, store = _recovery(galera)
        decisions = asyncio.run(recovery.run_until_synced(timeout_s=90))
        count = len(writer.acked)
        _until(lambda: len(writer.acked) >= count + 20, "20 more writes")
    finally:
        writer.stop()
    assert decisions[-1].kind is DecisionKind.NOTHING, (decisions, _alerts(store))
    failed_after = [at for at in writer.failed if at > moved]
    assert failed_after == [], f"{len(failed_after)} writes failed after the move"
    _whole(galera)
    for node in galera.nodes:
        assert missing(node.layout.socket, [row for row, _at in writer.acked]) == [], node.name
    print(
        f"haproxy: first write served {moved - killed:.2f} s after the kill; {len(writer.failed)} failed "
        f"before the move, 0 after; {len(writer.acked)} acknowledged"
    )
