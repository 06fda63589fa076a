"""``haven impact SERVICE|CONTROLLER|DOMAIN``: which user operations stop, which degrade and which keep
working when a service (every replica), a controller or a failure domain (every replica on it, in it) is
down; a table, or ``--json``.

Registered by haven.cli.main. The answer comes from haven.topology (the graph haven.diagnosis ranks
causes along): the control plane's services as haven.toml declares them over the built-in catalogue,
and, for a controller, which replicas it runs as the leader's latest pass recorded them (the store;
``haven controlplane status`` shows the same). Nothing is changed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.running import SIM_CONTROLLERS
from haven.domain.controlplane import ReplicaState, ServiceSpec
from haven.domain.errors import StoreUnavailable, UserError
from haven.service.config import HavenConfig
from haven.store import Store
from haven.topology import openstack_topology
from haven.topology.impact import Effect, Impact, ServiceLoss, Target, impact, impact_json, resolve

ConfigOf = Callable[[argparse.Namespace], HavenConfig]
StoreOf = Callable[[HavenConfig], Store]
_DEGRADED = (
    "degraded: still served, by fewer replicas or from a cache (while Keystone is down, a token an API "
    "has already validated works for its token_cache_time, 300 s by default)"
)
_STYLE = {Effect.STOPS: "bold red", Effect.DEGRADED: "yellow", Effect.WORKS: "green"}


def add_impact_command(sub: Any, config_of: ConfigOf, existing_store: StoreOf) -> None:
    parser = sub.add_parser(
        "impact",
        help="what stops, degrades and keeps working if a service, controller or failure domain is down",
    )
    parser.add_argument(
        "down", metavar="SERVICE|CONTROLLER|DOMAIN", help="e.g. keystone, rabbitmq, ctl-1, rack-a"
    )
    parser.add_argument("--json", action="store_true")

    def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
        config = config_of(args)
        target, found = answer(config, _observed(config, existing_store), args.down)
        if args.json:
            print(json.dumps(impact_json(target, found), indent=2))
        else:
            out.print(view(target, found))
        return 0

    parser.set_defaults(handler=handle)


def specs(config: HavenConfig) -> list[ServiceSpec]:
    """The catalogue with haven.toml's services over it (an override wins)."""
    return list({**CATALOGUE, **{s.name: s for s in config.controlplane.services}}.values())


def answer(config: HavenConfig, replicas: Sequence[ReplicaState], name: str) -> tuple[Target, Impact]:
    declared = {str(s.name): s.min_replicas for s in specs(config)}
    quorum = [str(s.name) for s in specs(config) if s.quorum]
    known = config.controlplane.controllers
    if not known and config.cloud_driver == "simulated":
        known = SIM_CONTROLLERS
    topology = openstack_topology(specs(config))
    hosts, domains = [str(c.host) for c in known], [str(c.domain) for c in known]
    target = resolve(topology, name, replicas, declared, hosts, domains, quorum)
    return target, impact(topology, target.losses)


def _observed(config: HavenConfig, existing_store: StoreOf) -> list[ReplicaState]:
    try:
        with existing_store(config) as store:
            return list(store.list_replicas())
    except StoreUnavailable:
        raise
    except UserError:  # no state yet: a service's impact needs none, a controller's says so
        return []


def _loss_words(loss: ServiceLoss) -> str:
    if loss.left <= 0:
        return f"{loss.service} down"
    left = f"{loss.service} {loss.left} of {loss.of} replicas left"
    if loss.down:  # a quorum-based cluster left with a minority of its members
        return f"{left}, below its quorum of {loss.needs}: down"
    return left


def view(target: Target, found: Impact) -> Group:
    losses = ", ".join(_loss_words(x) for x in found.losses)
    title = f"if {target.kind} {target.name} is down" + (f" ({losses})" if losses else "")
    table = Table()
    for column in ("operation", "effect", "because"):
        table.add_column(column, overflow="fold")
    for v in sorted(found.operations, key=lambda v: (v.effect != Effect.STOPS, v.effect, v.label)):
        because = ", ".join(v.because) + (f": {v.why}" if v.why else "")
        table.add_row(v.label, Text(v.effect.value, style=_STYLE[v.effect]), because or "-")
    parts: list[Table | Text] = [Text(title, style="bold"), table]
    if any(v.effect is Effect.DEGRADED for v in found.operations):
        parts.append(Text(_DEGRADED, style="dim"))
    reached = [v for v in found.services if v.name not in {x.service for x in found.losses}]
    if reached:
        words = "; ".join(f"{v.name} {v.effect.value} ({', '.join(v.because)})" for v in reached)
        parts.append(Text(f"services it takes along: {words}", style="dim"))
    if target.kind != "service" and not found.losses:
        parts.append(Text(f"{target.name} runs no serving replica: nothing is lost", style="green"))
    return Group(*parts)
