"""`haven drill fault --list`: the fault catalogue (haven.drill.faults) as a table, or JSON with ``--json``.

Called by haven.cli.main, before haven.cli.fault_drill (which imports the lab, the store and the
explainer to inject a fault), and by that module's own ``run``: listing the catalogue imports neither.
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.cli.drill_args import FAULT
from haven.drill.faults import CATALOG, catalogue_rows


def print_catalogue(as_json: bool, out: Console) -> int:
    if as_json:
        print(json.dumps(catalogue_rows(), indent=2))
    else:
        out.print(_catalogue_table())
    return 0


def _catalogue_table() -> Table:
    table = Table(
        title=f"the fault catalogue ({len(CATALOG)} faults; `haven drill {FAULT} NAME --cloud lab`)"
    )
    for column in ("name", "kind", "root cause", "what"):
        table.add_column(column)
    for row in catalogue_rows():
        table.add_row(row["name"], row["kind"], row["root_cause"], escape(row["what"]))
    return table
