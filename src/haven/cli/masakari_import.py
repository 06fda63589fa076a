"""`haven import masakari [--os-cloud NAME] [--dry-run] [--mode MODE] [--json]`: Masakari's data into haven.

Called by haven.cli.main, which registers the command with ``add_import_command`` and hands over
how it resolves the config and opens the store (--home, --config, --db, as for every command).
The reading is haven.cloud.openstack.masakari's (clouds.yaml, the catalog's ``instance-ha``), the
rules haven.service.masakari_import's. Exit status 0 when haven now has everything Masakari has,
1 when something differs or conflicts (reported, left as haven has it), 2 for a usage error or a
Masakari that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.cloud.openstack import cloud_name
from haven.cloud.openstack.masakari import open_masakari
from haven.domain.errors import CloudError, UserError
from haven.domain.incidents import SegmentMode
from haven.domain.masakari import MasakariSegment
from haven.service.config import HavenConfig
from haven.service.masakari_import import Action, ImportReport, import_masakari
from haven.store import Store

EXIT_UNRESOLVED = 1

ConfigOf = Callable[[argparse.Namespace], HavenConfig]
StoreFor = Callable[[HavenConfig, bool], "Store | None"]  # (config, create if missing)

_STYLE = {Action.CREATE: "green", Action.DIFFERS: "yellow", Action.CONFLICT: "red", Action.SKIPPED: "red"}


def add_import_command(sub: Any, config_of: ConfigOf, store_for: StoreFor) -> None:
    """Register ``haven import masakari`` on the top-level sub-parser set."""
    parser = sub.add_parser("import", help="import segments and hosts from another system")
    sources = parser.add_subparsers(dest="source", required=True, metavar="SOURCE")
    masakari = sources.add_parser(
        "masakari",
        help="copy a running Masakari's segments and hosts into haven (idempotent)",
        description="Read every segment and host of a running Masakari (openstacksdk's instance-ha "
        "service, from clouds.yaml) and create the missing ones in haven's store, keeping Masakari's "
        "segment uuids. Existing ones are never changed: one that differs is reported (exit status 1).",
    )
    masakari.add_argument(
        "--os-cloud",
        "--cloud",
        dest="os_cloud",
        metavar="NAME",
        help="the cloud in clouds.yaml whose catalog has Masakari (default: [cloud] name, else $OS_CLOUD)",
    )
    masakari.add_argument(
        "--dry-run", action="store_true", help="say what the import would do, and change nothing"
    )
    masakari.add_argument(
        "--mode",
        choices=[m.value for m in SegmentMode],
        default=SegmentMode.AUTOMATIC.value,
        help="haven's mode for the segments it creates (default automatic, as Masakari acts; "
        "dry_run or notify to watch haven beside a Masakari that still acts)",
    )
    masakari.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    masakari.set_defaults(handler=lambda args, out, err: _import(args, out, err, config_of, store_for))


def _import(
    args: argparse.Namespace, out: Console, err: Console, config_of: ConfigOf, store_for: StoreFor
) -> int:
    config = config_of(args)
    name = cloud_name(args.os_cloud or config.openstack.name or None, os.environ)
    source = _read(name)
    store = store_for(config, not args.dry_run)
    try:
        report = import_masakari(store, source, dry_run=args.dry_run, mode=SegmentMode(args.mode))
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps({"cloud": name, **report.to_dict()}, indent=2))
    else:
        _print(report, name, out)
    return EXIT_UNRESOLVED if report.unresolved else 0


def _read(name: str) -> list[MasakariSegment]:
    reader = open_masakari(name)
    try:
        return reader.read()
    except CloudError as exc:
        raise UserError(
            f"cannot read Masakari's segments from cloud {name!r}: {exc}",
            "Masakari's API must answer as the catalog's instance-ha service of that cloud "
            "(or set instance_ha_endpoint_override in clouds.yaml), to an account with Masakari's admin role",
        ) from None
    finally:
        reader.close()


def _print(report: ImportReport, cloud: str, out: Console) -> None:
    title = f"Masakari of cloud {cloud!r} → haven" + (" (dry run: nothing changed)" if report.dry_run else "")
    table = Table("kind", "name", "segment", "action", "detail", title=escape(title))
    for item in report.items:
        action = _label(item.action.value, report.dry_run)
        style = _STYLE.get(item.action, "")
        table.add_row(
            item.kind, escape(item.name), escape(item.segment), f"[{style}]{action}[/]" if style else action,
            escape(item.detail),
        )  # fmt: skip
    if report.items:
        out.print(table)
    counts = report.counts()
    summary = "; ".join(
        f"{kind}s: "
        + (", ".join(f"{n} {_label(a, report.dry_run)}" for a, n in sorted(by.items())) or "none")
        for kind, by in counts.items()
    )
    out.print(escape(summary), highlight=False)
    created = sum(1 for item in report.items if item.action is Action.CREATE)
    if created and not report.dry_run:
        out.print(
            "A running `haven serve` reads segment membership at start: restart it to watch these hosts."
        )
    if report.unresolved:
        out.print(
            "[yellow]Some of Masakari's records differ from haven's or could not be imported; haven's were "
            "left as they are. Change them in haven (or in Masakari) and run the import again.[/]"
        )


def _label(action: str, dry_run: bool) -> str:
    if action == Action.CREATE.value:
        return "would create" if dry_run else "created"
    return action
