"""Galera drills on a real loopback cluster: inject a fault, haven's loop recovers, the servers judge.

Who calls it: ``haven drill galera-node-loss`` / ``galera-full-outage`` (haven.cli.galera) and
bench/galera.py (the same scenarios and the same judge, several runs, medians). The cluster is a
temporary loopback one (haven.stateful.cluster) or, with ``--cloud lab``, the HA lab's running units
(haven.stateful.unit_clusters: the same code, the nodes driven through systemd).

- node loss: a writer commits through the two other nodes; one node's server is killed -9; the loop
  (its journal and alerts in a store) runs until every node is Synced.
- full outage: the writer commits through the last two; one node dies first, the other two 20
  acknowledged writes later (a power cut: no clean stop anywhere); then "power returns": the loop runs.

The verdict is read from the servers and the client, never from haven's journal:
- every node Synced in one primary component (one cluster state UUID) of the cluster's size;
- no acknowledged write missing on any node (the writer's own count of the COMMITs that returned);
- bootstraps counted from each server's error log (Galera's ``gcomm: bootstrapping new group``): none
  after a node loss; exactly one after a full outage, on a node whose position (grastate.dat, else the
  drill's own ``mariadbd --wsrep-recover``, read before haven runs) is the highest.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from haven.domain.clock import RealClock
from haven.domain.errors import HavenError
from haven.stateful.galera import DecisionKind
from haven.stateful.galera_node import MARIADBD, GaleraNode, NodeLayout
from haven.stateful.galera_recovery import GaleraRecovery
from haven.stateful.writer import TABLE, Writer, connect, missing
from haven.store import Store

NODE_LOSS = "galera-node-loss"
FULL_OUTAGE = "galera-full-outage"
SCENARIOS = (NODE_LOSS, FULL_OUTAGE)
CLUSTER = "haven"
NEW_GROUP = b"gcomm: bootstrapping new group"
TIMEOUT_S = 180.0


class DrillError(HavenError):
    """The drill could not inject its fault (the cluster did not reach the state the fault needs)."""


class DrillNode(GaleraNode, Protocol):
    """A node as the drill needs it: haven's driver of it, and its files on this machine (its socket,
    grastate.dat, error log) for the judge."""

    @property
    def layout(self) -> NodeLayout: ...


class DrillCluster(Protocol):
    """The cluster a drill runs on: a temporary loopback one, or the HA lab's units."""

    @property
    def nodes(self) -> Sequence[DrillNode]: ...

    def node(self, name: str) -> DrillNode: ...

    def kill(self, names: Sequence[str]) -> None:
        """A crash (SIGKILL) of these nodes' servers at once; returns once they are down."""


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    name: str
    state: str  # wsrep_local_state_comment, or why it could not be read
    primary: bool
    size: int
    state_uuid: str
    seqno_before: int | None  # full outage: its position read by the drill before haven ran
    new_groups: int  # bootstraps in its error log since the fault
    writes_missing: int


@dataclass
class GaleraDrillReport:
    scenario: str
    node: str  # the node killed (node loss) or the first one down (full outage)
    verdict: str = "failed"  # recovered / failed
    recover_s: float = 0.0  # node loss: from the kill; full outage: from power back, to all synced
    writes_served_s: float | None = None  # full outage: power back to the first write acknowledged
    writes_acked: int = 0
    writes_lost: int = 0  # acknowledged commits missing afterwards on some node
    failed_writes: int = 0  # client writes that failed (an error, not lost data)
    write_errors: dict[str, int] = field(default_factory=dict)  # each failed write's error, counted
    bootstrap_node: str | None = None  # read from the servers' logs
    bootstrap_from_highest: bool | None = None  # full outage only
    nodes: list[NodeVerdict] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)  # haven's decisions, for the reader
    alerts: list[str] = field(default_factory=list)  # haven's galera_hold alerts raised in the drill
    problems: list[str] = field(default_factory=list)  # why the verdict failed
    # --cloud lab with the lab's OpenStack on the clusters: Nova's answers after the heal
    openstack: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def independent_seqno(node: DrillNode) -> int:
    """The node's last committed seqno read by the drill itself (grastate.dat, else --wsrep-recover)."""
    layout = node.layout
    text = (layout.data / "grastate.dat").read_text()
    found = re.search(r"seqno:\s*(-?\d+)", text)
    if found is None:
        raise DrillError(f"{layout.data}/grastate.dat has no seqno")
    if int(found.group(1)) != -1:
        return int(found.group(1))
    log = layout.folder / "drill-recover.log"
    argv = [str(MARIADBD), f"--defaults-file={layout.cnf}", "--wsrep-recover", f"--log-error={log}"]
    subprocess.run(argv, capture_output=True, check=True, timeout=120)
    return int(re.findall(r"Recovered position: [0-9a-f-]+:(-?\d+)", log.read_text())[-1])


def log_sizes(cluster: DrillCluster) -> dict[str, int]:
    out = {}
    for node in cluster.nodes:
        path = node.layout.folder / "error.log"
        out[node.name] = path.stat().st_size if path.exists() else 0
    return out


def new_groups(node: DrillNode, since: int) -> int:
    """How many times this node's server started a new cluster (Galera's own log line) after ``since``."""
    with open(node.layout.folder / "error.log", "rb") as log:
        log.seek(since)
        return log.read().count(NEW_GROUP)


def wait(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise DrillError(f"no {what} in {timeout_s:.0f} s")
        time.sleep(0.05)


def size(node: DrillNode) -> int:
    try:
        return asyncio.run(node.live()).cluster_size
    except HavenError:
        return 0


def node_loss(cluster: DrillCluster, victim: str, start_id: int = 1) -> GaleraDrillReport:
    """``start_id``: the first row id written (ids must not repeat on one cluster: a duplicate key fails
    every write). A full outage writes from ``start_id`` and its probe from ``start_id + 3_000_000``."""
    node = cluster.node(victim)
    others = [n for n in cluster.nodes if n is not node]
    report = GaleraDrillReport(NODE_LOSS, victim)
    marks = log_sizes(cluster)
    writer = Writer([n.layout.socket for n in others], start_id=start_id).start()
    try:
        wait(lambda: len(writer.acked) >= 10, "10 acknowledged writes before the fault")
        cluster.kill([victim])
        killed = time.monotonic()
        store, recovery = _loop(cluster)
        decisions = asyncio.run(recovery.run_until_synced(timeout_s=TIMEOUT_S, interval_s=0.2))
        report.recover_s = round(time.monotonic() - killed, 2)
    finally:
        writer.stop()
    report.failed_writes, report.write_errors = writer.failed, dict(writer.errors)
    _judge(report, cluster, store, decisions, writer.acked, marks, seqnos=None)
    return report


def full_outage(cluster: DrillCluster, first_down: str, start_id: int = 1) -> GaleraDrillReport:
    first = cluster.node(first_down)
    last_two = [n for n in cluster.nodes if n is not first]
    report = GaleraDrillReport(FULL_OUTAGE, first_down)
    writer = Writer([n.layout.socket for n in last_two], start_id=start_id).start()
    try:
        wait(lambda: len(writer.acked) >= 10, "10 acknowledged writes before the fault")
        cluster.kill([first_down])
        wait(lambda: size(last_two[0]) == len(last_two), "eviction of the first node down by the others")
        acked = len(writer.acked)
        wait(lambda: len(writer.acked) >= acked + 20, "20 writes acknowledged without the first node")
        cluster.kill([n.name for n in last_two])  # the power cut: no node stopped cleanly
    finally:
        writer.stop()
    report.failed_writes, report.write_errors = writer.failed, dict(writer.errors)
    seqnos = {n.name: independent_seqno(n) for n in cluster.nodes}
    marks = log_sizes(cluster)
    store, recovery = _loop(cluster)
    probe = Writer([n.layout.socket for n in cluster.nodes], start_id=start_id + 3_000_000)
    power_back = time.monotonic()
    probe.start()
    served: list[float] = []

    async def drive() -> list[Any]:
        decisions: list[Any] = []
        while time.monotonic() - power_back < TIMEOUT_S:
            decision = await recovery.run_pass()
            if not decisions or decision.kind is not decisions[-1].kind:
                decisions.append(decision)
            if probe.acked and not served:
                served.append(time.monotonic() - power_back)
            if decision.kind in (DecisionKind.NOTHING, DecisionKind.HOLD):
                break
            await asyncio.sleep(0.2)
        return decisions

    decisions: list[Any] = []
    try:
        decisions = asyncio.run(drive())
        report.recover_s = round(time.monotonic() - power_back, 2)
        if decisions and decisions[-1].kind is DecisionKind.NOTHING:
            wait(lambda: bool(probe.acked), "write served after recovery", timeout_s=30)
            served = served or [time.monotonic() - power_back]
    except DrillError as exc:
        report.problems.append(str(exc))
    finally:
        probe.stop()
    report.writes_served_s = round(served[0], 2) if served else None
    _judge(report, cluster, store, decisions, writer.acked, marks, seqnos)
    return report


def first_free_id(node: DrillNode) -> int:
    """The first row id no earlier drill wrote in this cluster's table (a long-lived cluster, the lab's,
    keeps the rows of every drill run on it; ids must not repeat)."""
    connection = connect(node.layout.socket, timeout_s=10.0)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {TABLE}")
            row = cursor.fetchone()
    finally:
        connection.close()
    return int(row[0]) + 1


def _loop(cluster: DrillCluster) -> tuple[Store, GaleraRecovery]:
    """haven's loop as it runs it, with its journal and alerts in a store (here in memory)."""
    store = Store.open("sqlite://")
    return store, GaleraRecovery.on_store(cluster.nodes, store, CLUSTER, RealClock())


def _judge(
    report: GaleraDrillReport,
    cluster: DrillCluster,
    store: Store,
    decisions: list[Any],
    acked: list[int],
    marks: dict[str, int],
    seqnos: dict[str, int] | None,
) -> None:
    report.decisions = [f"{d.kind.value}: {d.reason}" for d in decisions]
    report.alerts = [a.message for a in store.list_alerts(active_only=False) if a.host == CLUSTER]
    store.close()
    report.writes_acked = len(acked)
    expected = len(cluster.nodes)
    for node in cluster.nodes:
        try:
            live = asyncio.run(node.live())
            state, primary, members, uuid = live.local_state, live.primary, live.cluster_size, live.state_uuid
            lost = len(missing(node.layout.socket, acked))
        except HavenError as exc:
            state, primary, members, uuid, lost = f"unreadable: {exc}", False, 0, "", len(acked)
        except Exception as exc:  # the rows could not be read: every acknowledged write counts as lost
            state, primary, members, uuid, lost = f"rows unreadable: {exc}", False, 0, "", len(acked)
        report.nodes.append(
            NodeVerdict(
                node.name, state, primary, members, uuid, None if seqnos is None else seqnos[node.name],
                new_groups(node, marks[node.name]), lost,
            )
        )  # fmt: skip
    problems = report.problems
    for n in report.nodes:
        if not (n.primary and n.state == "Synced" and n.size == expected):
            problems.append(f"{n.name} is {n.state}, primary {n.primary}, in a component of {n.size}")
    if len({n.state_uuid for n in report.nodes}) != 1:
        problems.append("the nodes are not in one primary component (different cluster state UUIDs)")
    report.writes_lost = max((n.writes_missing for n in report.nodes), default=0)
    if report.writes_lost:
        problems.append(f"{report.writes_lost} acknowledged writes missing")
    bootstrapped = [n.name for n in report.nodes for _ in range(n.new_groups)]
    report.bootstrap_node = ",".join(bootstrapped) or None
    if seqnos is None:
        if bootstrapped:
            problems.append(f"a node loss bootstrapped a new cluster on {report.bootstrap_node}")
    elif len(bootstrapped) != 1:
        problems.append(f"{len(bootstrapped)} bootstraps after the outage ({report.bootstrap_node}), not one")
    else:
        report.bootstrap_from_highest = seqnos[bootstrapped[0]] == max(seqnos.values())
        if not report.bootstrap_from_highest:
            problems.append(
                f"bootstrapped {bootstrapped[0]} (seqno {seqnos[bootstrapped[0]]}), not the highest"
            )
    report.verdict = "failed" if problems else "recovered"
