"""``haven audit [--cloud NAME] [--ceph-osd-tree F --ceph-crush-rules F] [--json]`` and
``haven audit --layout FILE [--json]``: what one failure domain's loss would break.

Registered by haven.cli.main, which hands over its config and store openers, the ones every command
uses. Without ``--layout`` the layout is read from haven's own sources (haven.audit.sources): the config
(``--home``/``--config``, ``--cloud``), the store (``--db``; it must exist: the segments are ``haven
serve``'s) and the cloud (the simulated one by default, built from ``[cloud]`` as ``haven serve`` builds
it; Nova with ``--cloud``). The sources' modules are imported only then: ``--layout`` needs none.
With ``--layout`` the layout file alone (haven.audit.layout): one or the other, never both. Either way the
pure audit (haven.audit.findings) judges, and one row per finding is printed, or JSON (the body
``GET /v1/haven/audit`` answers too). Exit 0 when nothing is found, 1 when something is (so a CI job can
gate on it), 2 on bad input (a bad layout file, config, cloud name or store).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from haven.audit.findings import Finding, Layout, audit, audit_json, checked
from haven.audit.layout import read_ceph, read_layout
from haven.cli.clouds import choose_cloud
from haven.cloud.sim import CloudSpec
from haven.domain.clock import RealClock
from haven.domain.errors import CloudError, UserError

if TYPE_CHECKING:
    from haven.service.config import HavenConfig
    from haven.store import Store

ConfigOf = Callable[[argparse.Namespace], "HavenConfig"]
StoreOf = Callable[["HavenConfig"], "Store"]


def add_audit_command(sub: Any, config_of: ConfigOf, existing_store: StoreOf) -> None:
    """``config_of`` and ``existing_store``: how haven.cli.main opens the config and an existing store
    for every command."""
    parser = sub.add_parser(
        "audit",
        help="failure domains: bunched replicas, quorum one rack would break, N+1 capacity, Ceph racks",
        description="Without --layout: read from haven's store, its cloud and haven.toml. "
        "With --layout: that file alone (see docs/stateful.md).",
    )
    parser.add_argument(
        "--layout", type=Path, help="audit this layout file (JSON) instead of haven's own sources"
    )
    parser.add_argument(
        "--cloud",
        metavar="NAME",
        help="a real OpenStack cloud from clouds.yaml instead of the simulated one (like OS_CLOUD)",
    )
    parser.add_argument("--ceph-osd-tree", type=Path, metavar="FILE", help="recorded `ceph osd tree -f json`")
    parser.add_argument(
        "--ceph-crush-rules", type=Path, metavar="FILE", help="recorded `ceph osd crush rule dump -f json`"
    )
    parser.add_argument("--json", action="store_true")

    def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
        if args.layout is not None:
            if args.cloud or args.ceph_osd_tree or args.ceph_crush_rules:
                raise UserError(
                    "--layout is audited alone: it cannot be combined with --cloud or --ceph-*",
                    "drop --layout to audit haven's own sources, or name the Ceph files in the layout file",
                )
            layout = read_layout(args.layout)
        else:
            layout = _from_sources(args, config_of, existing_store)
        return show(layout, audit(layout), args.json, out)

    parser.set_defaults(handler=handle)


def show(layout: Layout, findings: list[Finding], as_json: bool, out: Console) -> int:
    if as_json:
        print(json.dumps(audit_json(layout, findings), indent=2))
        return 1 if findings else 0
    seen = checked(layout)
    if not findings:
        out.print("no finding: every checked failure domain can be lost")
    else:
        table = Table("kind", "subject", "what one domain's loss would break", "fix")
        for f in findings:
            table.add_row(f.kind, f.subject, f.detail, f.fix)
        out.print(table)
    for what in ("services", "clusters", "segments"):
        names = seen[what]
        assert isinstance(names, list)
        out.print(f"{what} checked: {', '.join(names) if names else 'none'}", highlight=False)
    if not seen["ceph"]:
        out.print(
            "Ceph: not checked (give --ceph-osd-tree and --ceph-crush-rules, or name them in a layout file)",
            highlight=False,
        )
    return 1 if findings else 0


def _from_sources(args: argparse.Namespace, config_of: ConfigOf, existing_store: StoreOf) -> Layout:
    from haven.audit.sources import AuditSources  # the store, the control plane's drivers: not for --layout
    from haven.audit.sources import read_layout as read_sources

    if (args.ceph_osd_tree is None) != (args.ceph_crush_rules is None):
        raise UserError("--ceph-osd-tree and --ceph-crush-rules go together", "give both, or neither")
    ceph = None
    if args.ceph_osd_tree is not None:
        ceph = read_ceph(args.ceph_osd_tree, args.ceph_crush_rules)  # a bad file: nothing opened yet
    config = config_of(args)  # a bad haven.toml or --cloud: stops here
    spec = CloudSpec(hosts=config.simulated.hosts, vms=config.simulated.vms, seed=config.simulated.seed)
    chosen = choose_cloud(config, spec, RealClock(), os.environ)  # an unknown cloud name: stops here
    try:
        with existing_store(config) as store:
            sources = AuditSources(
                chosen.cloud,
                config.controlplane,
                config.stateful,
                config.engine.recovery,
                simulated=chosen.sim is not None,
            )
            try:
                layout = asyncio.run(read_sources(store, sources))
            except CloudError as exc:
                raise UserError(
                    f"the cloud did not answer: {exc}", "check that it is reachable, then run again"
                ) from None
    finally:
        chosen.close()
    if ceph is not None:
        layout = dataclasses.replace(layout, ceph_tree=ceph[0], ceph_rules=ceph[1])
    return layout
