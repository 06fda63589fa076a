"""`haven drill galera-node-loss` / `haven drill galera-full-outage`: Galera recovery on a real cluster.

Called by haven.cli.main's ``drill`` command for these two scenarios. It forms a temporary 3-node
MariaDB Galera cluster on loopback ports in a temporary folder (Debian's mariadbd + galera-4:
haven.stateful.cluster), injects the fault, lets haven's recovery loop recover it, prints the verdict
judged from the servers and the client (haven.stateful.drills, the same code as bench/galera.py) and
removes the cluster. Exit 0: recovered; 1: failed verdict.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from haven.domain.errors import UserError
from haven.stateful.cluster import ClusterError, LoopbackCluster
from haven.stateful.drills import FULL_OUTAGE, NODE_LOSS, SCENARIOS, DrillError, GaleraDrillReport
from haven.stateful.drills import full_outage as run_full_outage
from haven.stateful.drills import node_loss as run_node_loss
from haven.stateful.galera_node import MARIADBD, PROVIDER
from haven.stateful.writer import prepare

__all__ = ["SCENARIOS", "add_options", "run"]

NODES = ("g1", "g2", "g3")


def add_options(drill: argparse.ArgumentParser) -> None:
    group = drill.add_argument_group(f"Galera drills ({', '.join(SCENARIOS)})")
    group.add_argument(
        "--galera-node",
        choices=NODES,
        default=None,
        help=f"{NODE_LOSS}: the node killed (default g3); {FULL_OUTAGE}: the node that goes down first "
        "and misses the last writes (default g1)",
    )


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.cloud is not None:
        raise UserError(
            f"{args.scenario} runs on its own temporary Galera cluster, not on --cloud {args.cloud}",
            f"run `haven drill {args.scenario}` without --cloud",
        )
    missing = [str(p) for p in (MARIADBD, PROVIDER) if not p.exists()] + (
        [] if shutil.which("rsync") else ["rsync"]
    )
    if missing:
        raise UserError(f"the Galera drills need {', '.join(missing)}", "install them: make system-deps")
    node = args.galera_node or ("g3" if args.scenario == NODE_LOSS else "g1")
    logging.getLogger("haven").setLevel(logging.ERROR)  # the report says what haven did
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
            if args.scenario == NODE_LOSS:
                report = run_node_loss(cluster, node)
            else:
                report = run_full_outage(cluster, node)
    except DrillError as exc:
        report = GaleraDrillReport(args.scenario, node, problems=[f"the fault could not be injected: {exc}"])
    finally:
        cluster.remove()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print(report, out)
    return 0 if report.verdict == "recovered" else 1


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
    lines += [f"alert: {a}" for a in report.alerts]
    lines += [f"problem: {p}" for p in report.problems]
    for line in lines:
        out.print(line, highlight=False, markup=False)
