"""`haven drill rabbitmq-node-loss` / `haven drill rabbitmq-partition`: RabbitMQ healing on a real cluster.

Called by haven.cli.main's ``drill`` command for these two scenarios. It forms a temporary 3-node
RabbitMQ cluster on loopback ports in a temporary folder (Debian's rabbitmq-server run directly:
haven.stateful.rabbitmq_cluster), injects the fault (a kill -9 of one node, or one node cut off from the
others), lets haven's recovery loop heal it, prints the verdict judged from every node's own
cluster_status and an AMQP client (haven.stateful.rabbitmq_drills) and removes the cluster. With
``--cloud lab`` it runs on the HA lab's cluster instead (``haven lab up --ha``: three units on the
controllers' systemd, found from the lab's records by haven.cli.stateful_lab; haven's loop drives them
with the systemd driver) and leaves it running. Exit 0: recovered; 1: failed verdict.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from haven.cli import stateful_lab
from haven.domain.errors import HavenError, UserError
from haven.stateful.rabbitmq_cluster import LoopbackRabbitCluster, RabbitClusterError, missing_binaries
from haven.stateful.rabbitmq_drills import (
    NODE_LOSS,
    SCENARIOS,
    DrillCluster,
    DrillError,
    RabbitDrillReport,
    node_loss,
    partition,
)

__all__ = ["SCENARIOS", "run"]  # its options: haven.cli.drill_args


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    stateful_lab.check_cloud(args.cloud, args.scenario)
    if args.scenario == NODE_LOSS and (args.rabbitmq_split_all or args.rabbitmq_cut_from):
        given = "--rabbitmq-split-all" if args.rabbitmq_split_all else "--rabbitmq-cut-from"
        raise UserError(
            f"{given} is an option of rabbitmq-partition, not of {NODE_LOSS}",
            f"drop {given}, or run `haven drill rabbitmq-partition`",
        )
    if args.rabbitmq_split_all and args.rabbitmq_cut_from:
        raise UserError(
            "--rabbitmq-split-all and --rabbitmq-cut-from cannot be given together",
            "cut one link (--rabbitmq-cut-from NODE) or every link (--rabbitmq-split-all), not both",
        )
    missing = missing_binaries()
    if missing:
        raise UserError(f"the RabbitMQ drills need {', '.join(missing)}", "install them: make system-deps")
    node = args.rabbitmq_node
    if args.rabbitmq_cut_from == node:
        raise UserError(f"--rabbitmq-cut-from {node} is the node cut off itself", "name another node")
    logging.getLogger("haven").setLevel(logging.ERROR)  # the report says what haven did
    on_lab = args.cloud == stateful_lab.LAB
    report = _on_lab(args, node, err) if on_lab else _on_own_cluster(args, node, err)
    return stateful_lab.finish(report, args, out, err, _print)


def _on_lab(args: argparse.Namespace, node: str, err: Console) -> RabbitDrillReport:
    """On the HA lab's running cluster (the drill checks it is whole first); it stays running."""
    cluster = stateful_lab.rabbitmq(args.lab_folder)
    try:
        with err.status(f"{args.scenario} on the HA lab: the fault on {node}, then haven heals..."):
            return _inject(args, cluster, node, cluster.drill_vhost())
    except HavenError as exc:
        return RabbitDrillReport(args.scenario, node, problems=[f"the fault could not be injected: {exc}"])


def _on_own_cluster(args: argparse.Namespace, node: str, err: Console) -> RabbitDrillReport:
    folder = Path(tempfile.mkdtemp(prefix="haven-rabbitmq-drill-"))
    try:
        with err.status(f"{args.scenario}: forming a 3-node RabbitMQ cluster in {folder}..."):
            cluster = LoopbackRabbitCluster.create(folder)
    except RabbitClusterError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UserError(f"the drill's RabbitMQ cluster did not form: {exc}") from exc
    try:
        with err.status(f"{args.scenario}: injecting the fault on {node}, then haven heals..."):
            return _inject(args, cluster, node, "/")
    except DrillError as exc:
        return RabbitDrillReport(args.scenario, node, problems=[f"the fault could not be injected: {exc}"])
    finally:
        cluster.remove()


def _inject(args: argparse.Namespace, cluster: DrillCluster, node: str, vhost: str) -> RabbitDrillReport:
    if args.scenario == NODE_LOSS:
        return node_loss(cluster, node, vhost)
    cut = (args.rabbitmq_cut_from,) if args.rabbitmq_cut_from else ()
    return partition(cluster, node, cut, split_all=args.rabbitmq_split_all, vhost=vhost)


def _print(report: RabbitDrillReport, out: Console) -> None:
    table = Table(title=f"{report.scenario} ({report.node})")
    for column in ("node", "sees running", "partitioned from", "alarms"):
        table.add_column(column)
    for n in report.nodes:
        seen = ", ".join(n.running_nodes) or f"unreadable: {n.error}"
        table.add_row(n.name, seen, ", ".join(n.partitions), ", ".join(n.alarms))
    out.print(table)
    lines = [
        f"verdict: {report.verdict}",
        f"healed in {report.recover_s} s (partition grace {report.grace_s:g} s); "
        f"messages through every node: {'ok' if report.messages_ok else 'FAILED'}",
    ]
    lines += [f"haven: {d}" for d in report.decisions]
    lines += _queue_lines(report.queues)
    if report.openstack is not None:
        lines.append(stateful_lab.describe_openstack(report.openstack))
    lines += [f"alert: {a}" for a in report.alerts]
    lines += [f"problem: {p}" for p in report.problems]
    for line in lines:
        out.print(line, highlight=False, markup=False)


def _queue_lines(queues: dict[str, Any]) -> list[str]:
    """The cluster's queues after the heal: totals, then the fullest (haven.stateful.rabbitmq_queues)."""
    if not queues:
        return []
    if "error" in queues:
        return [f"queues: not read ({queues['error']})"]
    lines = [
        f"queues (read from {queues['read_from']}): {queues['queues']:,}, {queues['ready']:,} ready, "
        f"{queues['unacked']:,} unacknowledged"
    ]
    lines += [
        f"  {q['vhost']}:{q['queue']} on {q['node']}: {q['ready']:,} ready, {q['unacked']:,} unacknowledged, "
        f"{q['consumers']} consumers"
        for q in queues["worst"]
    ]
    return lines
