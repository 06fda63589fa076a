"""`haven drill galera-node-loss` / `haven drill galera-full-outage`: Galera recovery on a real cluster.

Called by haven.cli.main's ``drill`` command for these two scenarios. It forms a temporary 3-node
MariaDB Galera cluster on loopback ports in a temporary folder (Debian's mariadbd + galera-4:
haven.stateful.cluster), injects the fault, lets haven's recovery loop recover it, prints the verdict
judged from the servers and the client (haven.stateful.drills, the same code as bench/galera.py) and
removes the cluster. With ``--cloud lab`` it runs on the HA lab's cluster instead (``haven lab up
--ha``: three units on the controllers' systemd, found from the lab's records by
haven.cli.stateful_lab; haven's loop drives them with the systemd driver) and leaves it running.
Exit 0: recovered; 1: failed verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from haven.cli import stateful_lab
from haven.domain.errors import HavenError, UserError
from haven.stateful.cluster import ClusterError, LoopbackCluster, all_synced
from haven.stateful.drills import (
    NODE_LOSS,
    SCENARIOS,
    DrillCluster,
    DrillError,
    DrillNode,
    GaleraDrillReport,
    first_free_id,
)
from haven.stateful.drills import full_outage as run_full_outage
from haven.stateful.drills import node_loss as run_node_loss
from haven.stateful.galera_node import MARIADBD, PROVIDER
from haven.stateful.writer import prepare

__all__ = ["SCENARIOS", "run"]  # its options: haven.cli.drill_args

WHOLE_FIRST_S = 30.0


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    stateful_lab.check_cloud(args.cloud, args.scenario)
    missing = [str(p) for p in (MARIADBD, PROVIDER) if not p.exists()] + (
        [] if shutil.which("rsync") else ["rsync"]
    )
    if missing:
        raise UserError(f"the Galera drills need {', '.join(missing)}", "install them: make system-deps")
    node = args.galera_node or ("g3" if args.scenario == NODE_LOSS else "g1")
    logging.getLogger("haven").setLevel(logging.ERROR)  # the report says what haven did
    on_lab = args.cloud == stateful_lab.LAB
    report = _on_lab(args, node, err) if on_lab else _on_own_cluster(args, node, err)
    return stateful_lab.finish(report, args, out, err, _print)


def _on_lab(args: argparse.Namespace, node: str, err: Console) -> GaleraDrillReport:
    """On the HA lab's running cluster, which must be whole first (each node Synced, size 3)."""
    cluster = stateful_lab.galera(args.lab_folder)
    with err.status(f"{args.scenario} on the HA lab: is its Galera cluster whole?"):
        if not asyncio.run(all_synced(cluster.nodes, WHOLE_FIRST_S)):
            states = "; ".join(f"{n.name}: {_state(n)}" for n in cluster.nodes)
            problem = f"the lab's Galera cluster was not whole before the fault ({states}): nothing injected"
            return GaleraDrillReport(args.scenario, node, problems=[problem])
    try:
        prepare(cluster.nodes[0].layout.socket)
        start_id = first_free_id(cluster.nodes[0])
    except Exception as exc:  # pymysql's errors: the cluster answered wsrep but not the drill's table
        problem = f"the drill's table could not be read on {cluster.nodes[0].name}: {exc}"
        return GaleraDrillReport(args.scenario, node, problems=[problem])
    try:
        with err.status(f"{args.scenario} on the HA lab: the fault on {node}, then haven recovers..."):
            return _inject(args.scenario, cluster, node, start_id)
    except HavenError as exc:
        return GaleraDrillReport(args.scenario, node, problems=[f"the fault could not be injected: {exc}"])


def _state(node: DrillNode) -> str:
    try:
        live = asyncio.run(node.live())
    except HavenError as exc:
        return f"unreadable ({exc})"
    return f"{live.local_state}, primary {live.primary}, size {live.cluster_size}"


def _on_own_cluster(args: argparse.Namespace, node: str, err: Console) -> GaleraDrillReport:
    folder = Path(tempfile.mkdtemp(prefix="haven-galera-drill-"))
    try:
        with err.status(f"{args.scenario}: forming a 3-node Galera cluster in {folder}..."):
            cluster = LoopbackCluster.create(folder)
    except ClusterError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"the drill's Galera cluster did not form: {exc}") from exc
    try:
        prepare(cluster.nodes[0].layout.socket)
        with err.status(f"{args.scenario}: injecting the fault on {node}, then haven recovers..."):
            return _inject(args.scenario, cluster, node, 1)
    except DrillError as exc:
        return GaleraDrillReport(args.scenario, node, problems=[f"the fault could not be injected: {exc}"])
    finally:
        cluster.remove()


def _inject(scenario: str, cluster: DrillCluster, node: str, start_id: int) -> GaleraDrillReport:
    if scenario == NODE_LOSS:
        return run_node_loss(cluster, node, start_id)
    return run_full_outage(cluster, node, start_id)


def _print(report: GaleraDrillReport, out: Console) -> None:
    table = Table(title=f"{report.scenario} ({report.node})")
    for column in ("node", "state", "primary", "size", "seqno before", "bootstraps", "writes missing"):
        table.add_column(column)
    for n in report.nodes:
        seqno = "" if n.seqno_before is None else str(n.seqno_before)
        table.add_row(
            n.name, n.state, "yes" if n.primary else "no", str(n.size), seqno, str(n.new_groups),
            str(n.writes_missing),
        )  # fmt: skip
    out.print(table)
    lines = [
        f"verdict: {report.verdict}",
        f"recovered in {report.recover_s} s"
        + (
            ""
            if report.writes_served_s is None
            else f"; writes served again after {report.writes_served_s} s"
        ),
        f"writes acknowledged {report.writes_acked}, lost {report.writes_lost}, "
        f"failed {report.failed_writes}",
    ]
    if report.bootstrap_from_highest is not None:
        lines.append(
            f"bootstrapped {report.bootstrap_node}: highest position {report.bootstrap_from_highest}"
        )
    lines += [f"haven: {d}" for d in report.decisions]
    if report.openstack is not None:
        lines.append(stateful_lab.describe_openstack(report.openstack))
    lines += [f"alert: {a}" for a in report.alerts]
    lines += [f"problem: {p}" for p in report.problems]
    for line in lines:
        out.print(line, highlight=False, markup=False)
