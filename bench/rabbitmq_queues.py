"""How long haven's read of RabbitMQ's queues takes, by erl_call and by rabbitmqctl, against the queue count.

    nice -n 19 .venv/bin/python bench/rabbitmq_queues.py [--nodes 3] [--queues 1000 5000] [--runs 5] [--json]

Forms a temporary loopback cluster (haven.stateful.rabbitmq_cluster), declares the queues through py-amqp
(spread over the nodes, empty, named ``reply_*`` like oslo.messaging's), then times, for each count:
haven's read through
erl_call (``LocalRabbitNode.queues``), the same expression through ``rabbitmqctl eval`` (the fallback),
and ``rabbitmqctl list_queues --formatter json name messages_ready messages_unacknowledged consumers``
(an operator's read of one vhost). Each figure is the median of ``--runs`` with its min and max, and the
1-minute load beside it. The cluster is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from haven.stateful.rabbitmq_cluster import LoopbackRabbitCluster
from haven.stateful.rabbitmq_node import LocalRabbitNode
from haven.stateful.rabbitmq_queues import QUEUES_EXPR


def _declare(cluster: LoopbackRabbitCluster, upto: int, have: int) -> None:
    import amqp  # type: ignore[import-untyped]

    connections = []
    for node in cluster.nodes:
        c = amqp.Connection(f"127.0.0.1:{node.layout.amqp_port}", connect_timeout=30)
        c.connect()
        connections.append((c, c.channel()))
    for i in range(have, upto):
        _, channel = connections[i % len(connections)]
        channel.queue_declare(f"reply_{i:06d}", durable=False, auto_delete=False)
    for c, _ in connections:
        c.close()


def _time(read: Any, runs: int) -> dict[str, float]:
    took = []
    for _ in range(runs):
        began = time.monotonic()
        read()
        took.append(time.monotonic() - began)
    return {
        "median_s": round(statistics.median(took), 3), "min_s": round(min(took), 3),
        "max_s": round(max(took), 3), "load": round(os.getloadavg()[0], 1),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--queues", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cluster = LoopbackRabbitCluster.create(Path(tempfile.mkdtemp(prefix="haven-bench-queues-")), args.nodes)
    results: list[dict[str, Any]] = []
    try:
        node = cluster.nodes[0]
        by_cli = LocalRabbitNode(node.layout, cli_timeout_s=300, erl_call=Path("/nonexistent/erl_call"))
        have = 0
        for count in sorted(args.queues):
            _declare(cluster, count, have)
            have = count
            read = asyncio.run(node.queues())
            row: dict[str, Any] = {"queues": read.queues, "nodes": args.nodes}
            row["erl_call"] = _time(lambda: asyncio.run(node.queues()), args.runs)
            row["rabbitmqctl_eval"] = _time(lambda: asyncio.run(by_cli.queues()), args.runs)
            row["rabbitmqctl_list_queues"] = _time(
                lambda: asyncio.run(
                    node.ctl("list_queues", "--formatter", "json", "name", "messages_ready",
                             "messages_unacknowledged", "consumers", timeout_s=300)
                ),
                args.runs,
            )  # fmt: skip
            row["answer_bytes"] = len(asyncio.run(node.call(QUEUES_EXPR)))
            results.append(row)
            if not args.json:
                print(json.dumps(row))
    finally:
        cluster.remove()
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
