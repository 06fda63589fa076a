"""``haven audit --layout FILE [--json]``: what one failure domain's loss would break.

Registered by haven.cli.main. Reads the layout file (haven.audit.layout), runs the pure audit
(haven.audit.findings) and prints one row per finding, or JSON. Exit 0 when nothing is found, 1 when
something is (so a CI job can gate on it), 2 on a bad layout file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from haven.audit.findings import audit
from haven.audit.layout import read_layout


def add_audit_command(sub: Any) -> None:
    parser = sub.add_parser(
        "audit",
        help="failure domains: bunched replicas, quorum one rack would break, N+1 capacity, Ceph racks",
    )
    parser.add_argument(
        "--layout", type=Path, required=True, help="the layout file (JSON; see docs/stateful.md)"
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=_audit)


def _audit(args: argparse.Namespace, out: Console, err: Console) -> int:
    layout = read_layout(args.layout)
    findings = audit(layout)
    if args.json:
        body = {"findings": [dataclasses.asdict(f) for f in findings], "ceph": layout.ceph_tree is not None}
        print(json.dumps(body, indent=2))
        return 1 if findings else 0
    if not findings:
        out.print("no finding: every checked failure domain can be lost")
    else:
        table = Table("kind", "subject", "what one domain's loss would break", "fix")
        for f in findings:
            table.add_row(f.kind, f.subject, f.detail, f.fix)
        out.print(table)
    if layout.ceph_tree is None:
        out.print("Ceph: not checked (no ceph_osd_tree / ceph_crush_rules in the layout)")
    return 1 if findings else 0
