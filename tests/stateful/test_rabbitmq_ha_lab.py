"""RabbitMQ as systemd units on the HA lab's controllers: a killed node started again by haven via systemd.

The fixture starts two controllers (Debian's systemd as PID 1 of their own namespaces, no OpenStack
units: haven.lab.ha's controller) and the lab's 3-node RabbitMQ cluster as units on them
(haven.lab.ha_stateful.start_rabbitmq: rabbit-1 and rabbit-3 on ctl-1 with the epmd unit, rabbit-2 on
ctl-2), recorded in the folder's lab.json as ``haven lab up --ha`` records them, so the node-loss and
partition tests run the drills through the CLI (``haven drill rabbitmq-* --cloud lab --lab-folder F
--json``). Judged from systemd (the unit's state and InvocationID over its D-Bus) and from each node's
own ``cluster_status`` (and, in the drills, an AMQP round trip through each node). Needs root
(skipped without).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from haven.cli.main import main
from haven.domain.clock import RealClock
from haven.domain.errors import ConfigError
from haven.lab import ha, ha_stateful
from haven.lab.ha_stateful import HaRabbit
from haven.stateful.config import parse_stateful
from haven.stateful.galera_systemd import SystemdBus
from haven.stateful.rabbitmq_cluster import healthy
from haven.stateful.rabbitmq_node import EPMD, RABBITMQ_SERVER, RabbitLayout, write_config
from haven.stateful.rabbitmq_recovery import journal_key
from haven.stateful.rabbitmq_systemd import SystemdRabbitNode
from haven.stateful.serving import RabbitService
from haven.store import Store

from .lab_records import write_lab_state

_LAB_MARKS = [
    pytest.mark.slow,
    pytest.mark.systemd,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (systemd as PID 1 of a PID namespace)"),
    pytest.mark.skipif(
        not (RABBITMQ_SERVER.exists() and EPMD.exists() and Path(ha.SYSTEMD).exists()),
        reason="needs rabbitmq-server and systemd (make system-deps)",
    ),
]


def needs_lab(test: Callable[..., None]) -> Callable[..., None]:
    for mark in _LAB_MARKS:
        test = mark(test)
    return test


NAMES = {f"rabbit-{i}@localhost" for i in (1, 2, 3)}


@pytest.fixture(scope="module")
def rabbit() -> Iterator[HaRabbit]:
    folder = Path(tempfile.mkdtemp(prefix="haven-rabbitmq-ha-"))
    controllers: list[ha.Controller] = []
    try:
        for index, host in enumerate(ha.CONTROLLERS, start=1):
            controllers.append(
                ha._start_controller(folder / host, host, f"127.0.1.{index}", folder, {}, (), {}, "no")
            )
        for controller in controllers:
            ha._wait_for_bus(controller, 15.0)
        made = ha_stateful.start_rabbitmq(controllers, folder / "rabbitmq", lambda _message: None)
        # Recorded as `haven lab up --ha` records its clusters, for `haven drill ... --cloud lab`.
        records = {"stateful": {"rabbitmq": ha_stateful.describe_rabbit(made)}}
        write_lab_state(folder, [c.pid1 for c in controllers], records)
        yield made
    finally:
        ha.stop(ha.HaLab(folder, controllers, (), {}, {}))
        keep = os.environ.get("HAVEN_TEST_KEEP_LOGS")  # a folder: the nodes' logs are copied there
        if keep:
            for log in (folder / "rabbitmq").glob("n*/log/*.log"):
                Path(keep, log.parent.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copy(log, Path(keep, log.parent.parent.name, log.name))
        shutil.rmtree(folder, ignore_errors=True)


def _unit(node: SystemdRabbitNode) -> tuple[str, bytes]:
    async def read() -> tuple[str, bytes]:
        async with SystemdBus(node.bus) as bus:
            props = await bus.unit(node.unit)
        return str(props["ActiveState"]), bytes(props["InvocationID"])

    return asyncio.run(read())


def _kill_no_wait(node: SystemdRabbitNode) -> None:
    """SIGKILL to the unit's main process, not waiting for the unit to be down: a serve running beside
    (a pass a second) may start it again before a wait sees it ``failed`` (seen once, load ~13)."""

    async def kill() -> None:
        async with SystemdBus(node.bus) as bus:
            await bus.manager("KillUnit", "ssi", [node.unit, "main", 9])

    asyncio.run(kill())


def _drill(rabbit: HaRabbit, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """``haven drill ARGV --cloud lab --lab-folder LAB --json`` (in this process); its exit and JSON."""
    capsys.readouterr()
    code = main(["drill", *argv, "--cloud", "lab", "--lab-folder", str(rabbit.folder.parent), "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report: dict[str, Any] = json.loads(captured.out)
    print(
        f"{argv}: {code}, recover_s {report['recover_s']}, {report['problems']}, judge {report['judge']}",
        file=sys.stderr,
    )
    return code, report


def _own_word(rabbit: HaRabbit) -> None:
    """Every node's own cluster_status: all three running, no partition."""
    statuses = [asyncio.run(n.status()) for n in rabbit.nodes]
    assert all(healthy(s, NAMES) for s in statuses), statuses


@needs_lab
def test_the_node_loss_drill_on_the_lab_starts_the_killed_unit_again(
    rabbit: HaRabbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """``haven drill rabbitmq-node-loss --rabbitmq-node rabbit-2 --cloud lab``: its unit killed (SIGKILL
    to its Erlang VM through systemd), haven's loop (systemd driver) starts it; the drill's verdict is
    every node's own cluster_status and an AMQP round trip through each node; systemd's word here."""
    assert rabbit.hosts == {
        "rabbit-1@localhost": "ctl-1", "rabbit-2@localhost": "ctl-2", "rabbit-3@localhost": "ctl-1"
    }  # fmt: skip
    victim = rabbit.node("rabbit-2")
    before = _unit(victim)[1]
    code, report = _drill(rabbit, capsys, "rabbitmq-node-loss", "--rabbitmq-node", "rabbit-2")
    assert (code, report["verdict"]) == (0, "recovered"), (report["problems"], report["passes"])
    assert report["restarted"] == ["start rabbit-2@localhost"] and report["messages_ok"] is True
    state, invocation = _unit(victim)
    assert state == "active" and invocation != before  # systemd ran a new invocation: haven's start
    _own_word(rabbit)


@needs_lab
def test_the_partition_drill_on_the_lab_restarts_the_cut_off_nodes_app_only(
    rabbit: HaRabbit, capsys: pytest.CaptureFixture[str]
) -> None:
    """``haven drill rabbitmq-partition --rabbitmq-node rabbit-3 --cloud lab``: rabbit-3 cut off from both
    others (a network cut of their distribution handshakes with iptables, then mended), a 2-against-1
    partition; haven restarts rabbit-3's app only, after the drill's grace. No unit is restarted (the
    same invocations), every node whole again, and no rule of the cut left in iptables."""
    invocations = {n.name: _unit(n)[1] for n in rabbit.nodes}
    code, report = _drill(rabbit, capsys, "rabbitmq-partition", "--rabbitmq-node", "rabbit-3")
    assert (code, report["verdict"]) == (0, "recovered"), (report["problems"], report["passes"])
    assert report["restarted"] == ["restart rabbit-3@localhost"] and report["messages_ok"] is True
    assert report["cut"]["method"].startswith("iptables") and report["cut"]["down_s"] > 0, report["cut"]
    assert "HAVEN-CUT-" not in subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    assert {n.name: _unit(n) for n in rabbit.nodes} == {
        name: ("active", i) for name, i in invocations.items()
    }
    _own_word(rabbit)


@pytest.mark.skipif(not RABBITMQ_SERVER.exists(), reason="needs rabbitmq-server")
def test_serve_builds_the_systemd_driver_from_the_labs_section(tmp_path: Path) -> None:
    """The ``[stateful.rabbitmq]`` section ``haven lab up --ha`` writes, read and built as serve does."""
    (tmp_path / ".erlang.cookie").write_text("COOKIE")
    nodes = []
    for i in (1, 2, 3):
        layout = RabbitLayout(f"rabbit-{i}@localhost", tmp_path / f"n{i}", tmp_path, 4369, 5000 + i, 6000 + i)
        write_config(layout, [f"rabbit-{j}@localhost" for j in (1, 2, 3)])
        nodes.append(SystemdRabbitNode(layout, f"rabbitmq-{i}.service", f"unix:path={tmp_path}/bus"))
    made = HaRabbit(tmp_path, nodes, {}, 4369, "ctl-1")
    section = tomllib.loads(ha_stateful.rabbit_toml(made))["stateful"]
    config = parse_stateful(section, "stateful.toml").rabbitmq
    assert config is not None and config.driver == "systemd"
    service = RabbitService(config, RealClock())
    assert [(type(n).__name__, n.unit, n.bus) for n in service.nodes] == [  # type: ignore[attr-defined]
        ("SystemdRabbitNode", f"rabbitmq-{i}.service", f"unix:path={tmp_path}/bus") for i in (1, 2, 3)
    ]
    del section["rabbitmq"]["nodes"][2]["unit"]
    with pytest.raises(
        ConfigError, match=r"driver systemd needs each node's unit \(none for rabbit-3@localhost\)"
    ):
        parse_stateful(section, "stateful.toml")


@needs_lab
def test_haven_serve_with_the_labs_section_starts_a_killed_unit(rabbit: HaRabbit, tmp_path: Path) -> None:
    """``haven serve`` (a subprocess) with the ``[stateful.rabbitmq]`` section the lab writes."""
    asyncio.run(ha_stateful.wait_rabbit_whole(rabbit, 120))
    body = ha_stateful.rabbit_toml(rabbit).replace(
        'driver = "systemd"\n', 'driver = "systemd"\ninterval_s = 1.0\n'
    )
    (tmp_path / "haven.toml").write_text(body)
    victim = rabbit.node("rabbit-3")
    before = _unit(victim)[1]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    serve = subprocess.Popen(
        [str(Path(sys.executable).parent / "haven"), "serve", "--bind", f"127.0.0.1:{port}"],
        env={**os.environ, "HAVEN_HOME": str(tmp_path)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "haven.db").exists():
            assert time.monotonic() < deadline and serve.poll() is None, "serve did not open its store"
            time.sleep(0.2)
        _kill_no_wait(victim)  # judged below by the unit's new invocation
        deadline = time.monotonic() + 120
        while not (_unit(victim)[0] == "active" and _unit(victim)[1] != before):
            assert time.monotonic() < deadline, "rabbit-3's unit was not started again"
            time.sleep(0.5)
        asyncio.run(ha_stateful.wait_rabbit_whole(rabbit, 150))  # every node's own cluster_status
    finally:
        serve.send_signal(signal.SIGINT)
        _out, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        steps = store.galera_actions_since(journal_key("haven-lab"))
    assert [(s.kind, s.node, s.state) for s in steps] == [("start", "rabbit-3@localhost", "done")]
