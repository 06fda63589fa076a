"""``haven controlplane status``: every replica as the leader's latest pass saw it, the control plane's
active alerts and its latest actions (a table, or ``--json``).

Registered by haven.cli.main. Reads the store only: ``haven serve`` records the replicas after each
reconciler pass while it leads (haven.controlplane.running), so this works from any machine that reaches
the store, whichever engine leads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from haven.cli.render import when
from haven.domain.controlplane import ActionRecord, ReplicaHealth, ReplicaState
from haven.domain.incidents import Alert, AlertKind
from haven.service.config import HavenConfig
from haven.store import Store

ConfigOf = Callable[[argparse.Namespace], HavenConfig]
StoreOf = Callable[[HavenConfig], Store]
CONTROL_PLANE_ALERTS = frozenset(
    {
        AlertKind.REPLICA_CRASH_LOOP,
        AlertKind.SERVICE_HOLD,
        AlertKind.SERVICE_DOWN,
        AlertKind.CONTROLLER_DOWN,
        AlertKind.PROBE_CREDENTIALS,
    }
)
_RUNNING = (ReplicaHealth.HEALTHY, ReplicaHealth.STARTING, ReplicaHealth.UNHEALTHY)
_STYLE = {ReplicaHealth.HEALTHY: "green", ReplicaHealth.STARTING: "yellow", ReplicaHealth.STOPPED: "dim"}


def add_controlplane_command(sub: Any, config_of: ConfigOf, existing_store: StoreOf) -> None:
    parser = sub.add_parser("controlplane", help="the control plane: replicas, their health, alerts, actions")
    commands = parser.add_subparsers(dest="controlplane_command", metavar="COMMAND", required=True)
    status = commands.add_parser("status", help="every replica as the leader last saw it, alerts, actions")
    status.add_argument("--actions", type=int, default=10, help="latest actions shown (default 10)")
    status.add_argument("--json", action="store_true")

    def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
        if args.actions < 0:
            err.print("--actions must be 0 or more", highlight=False)
            return 2
        with existing_store(config_of(args)) as store:
            replicas = store.list_replicas()
            alerts = [a for a in store.list_alerts() if a.kind in CONTROL_PLANE_ALERTS]
            actions = store.actions_since(0.0)[-args.actions :] if args.actions else []
        if args.json:
            print(json.dumps(status_json(replicas, alerts, actions), indent=2))
            return 0
        if not replicas:
            out.print(
                "no control-plane observation yet: `haven serve` records one after each pass while it leads "
                "(with [controlplane] in haven.toml, or on the simulated cloud)",
                highlight=False,
            )
            return 0
        out.print(status_view(replicas, alerts, actions, time.time()))
        return 0

    status.set_defaults(handler=handle)


def status_json(
    replicas: Sequence[ReplicaState], alerts: Sequence[Alert], actions: Sequence[ActionRecord]
) -> dict[str, Any]:
    return {
        "observed_at": max((r.observed_at for r in replicas), default=None),
        "replicas": [dataclasses.asdict(r) | {"health": r.health.value} for r in replicas],
        "services": _services(replicas),
        "alerts": [
            {"kind": a.kind.value, "subject": a.host, "message": a.message, "raised_at": a.raised_at}
            for a in alerts
        ],
        "actions": [
            {
                "id": a.id,
                "kind": a.kind.value,
                "service": a.service,
                "host": a.host,
                "state": a.state.value,
                "reason": a.reason,
                "created_at": a.created_at,
                "finished_at": a.finished_at,
                "error": a.error,
            }
            for a in actions
        ],
    }


def _services(replicas: Sequence[ReplicaState]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in replicas:
        counts = out.setdefault(r.service, {"healthy": 0, "running": 0})
        counts["healthy"] += r.health is ReplicaHealth.HEALTHY
        counts["running"] += r.health in _RUNNING
    return out


def status_view(
    replicas: Sequence[ReplicaState], alerts: Sequence[Alert], actions: Sequence[ActionRecord], now: float
) -> Group:
    observed = max(r.observed_at for r in replicas)
    table = Table(title=f"control-plane replicas (observed {when(observed)}, {now - observed:.0f} s ago)")
    for column in ("service", "host", "domain", "health", "systemd", "load balancer", "latest probe"):
        table.add_column(column, overflow="fold")
    for r in replicas:
        health = Text(r.health.value, style=_STYLE.get(r.health, "red"))
        table.add_row(r.service, r.host, r.domain, health, r.unit or "?", r.member or "-", r.probe or "-")
    parts: list[Table | Text] = [table]
    if alerts:
        parts.append(Text("active alerts:", style="bold red"))
        parts.extend(Text(f"  {a.kind.value} {a.host}: {a.message}") for a in alerts)
    else:
        parts.append(Text("no active control-plane alert", style="green"))
    if actions:
        acts = Table(title="latest actions")
        for column in ("at", "kind", "service", "host", "state", "reason"):
            acts.add_column(column, overflow="fold")
        for a in actions:
            why = a.error or a.reason
            acts.add_row(when(a.created_at), a.kind.value, a.service, a.host, a.state.value, why)
        parts.append(acts)
    return Group(*parts)
