"""`haven drill controlplane-impact --cloud lab`: the impact matrix measured on the lab, against the model.

Called by haven.cli.main for `haven drill controlplane-impact`. Each lab service in turn (``--only``:
those named) is SIGSTOPped, every user operation (``--operations``: those named) runs as a user
would, the service is continued and the lab proven whole (haven.drill.impact_run); each cell is then
judged against haven's model for the lab as declared (haven.drill.impact_matrix). A table (cells that
disagree with the model marked) or ``--json``; exit 0 when the model agrees with every cell, 1 when
not (or the lab did not come back whole), 2 for bad input, checked before anything is changed.

haven.drill never imports haven.lab, so ``LabImpact``, the lab's handles the drill needs (its URLs,
its admin's credentials, its process records), lives here.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.cli.drill_args import IMPACT
from haven.cli.lab_controls import running_lab
from haven.domain.errors import UserError
from haven.drill.impact_matrix import matrix_json
from haven.drill.impact_run import LabNotWhole, Settings, chosen, measure
from haven.lab.labfiles import compute_pids
from haven.lab.state import LabState, alive, load_state

SCENARIO = IMPACT  # its options: haven.cli.drill_args
LAB = "lab"
EXIT_DISAGREES = 1
_SHORT = {"works": "works", "slow": "slow", "fails": "FAILS"}


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.cloud is None:
        raise UserError(
            f"`haven drill {SCENARIO}` stops the lab's services one by one: pass --cloud lab",
            "start the lab first with `haven lab up`",
        )
    if args.cloud != LAB:
        raise UserError(
            f"the impact drill runs only on the lab, not on cloud {args.cloud!r}",
            "it SIGSTOPs the lab's own processes: use --cloud lab",
        )
    if args.operation_timeout <= 0:
        raise UserError(f"--operation-timeout must be positive, got {args.operation_timeout}")
    try:
        processes, operations = chosen(_names(args.only), _names(args.operations))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    state = running_lab(args.lab_folder)
    started = time.monotonic()
    load_at_start = os.getloadavg()

    def say(message: str) -> None:  # progress on stderr, also with --json (stdout stays one document)
        err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {escape(message)}", highlight=False)

    say(f"{len(processes)} service(s) to stop in turn, {len(operations)} operation(s) each")
    # --whole-timeout (the fault drill's option, default 240 s): the lab proven whole after each pass
    # a loaded machine slows a boot's own POST as much as any request (61 s at a load of 22)
    each = args.operation_timeout
    settings = Settings(request_timeout_s=each, whole_timeout_s=args.whole_timeout,
                        boot_timeout_s=max(Settings.boot_timeout_s, 2 * each),
                        delete_timeout_s=max(Settings.delete_timeout_s, 1.5 * each))  # fmt: skip
    keystoneauth = logging.getLogger("keystoneauth")  # it warns of every request a stop left unanswered
    level = keystoneauth.level
    keystoneauth.setLevel(logging.CRITICAL)
    problem = ""
    try:
        raw = measure(LabImpact(state), processes, operations, settings, say)
    except LabNotWhole as exc:
        raw, problem = exc.raw, str(exc)
    finally:
        keystoneauth.setLevel(level)
    raw["seconds"] = round(time.monotonic() - started, 1)
    document = matrix_json(raw)
    document["seconds"] = raw["seconds"]
    # what the run's figures are read with: the machine's load (1, 5, 15 min) and the drill's timeouts
    document["load"] = {"start": [round(x, 2) for x in load_at_start],
                        "end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    document["settings"] = raw.get("settings", {})
    document["measured_at"] = raw.get("measured_at", time.time())
    if problem:
        document["verdict"] = "incomplete"
        document["error"] = problem
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        show(out, document)
    return 0 if document["verdict"] == "agrees" else EXIT_DISAGREES


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def show(out: Console, doc: Mapping[str, Any]) -> None:
    """The matrix as a table: what each operation did, cells that disagree with the model in red."""
    table = Table(title="user operations while each service was stopped (the model's prediction below a "
                  "cell that disagrees)")  # fmt: skip
    table.add_column("stopped")
    for op in doc["operations"]:
        table.add_column(op, overflow="fold")
    for service, row in doc["matrix"].items():
        shown = []
        for op in doc["operations"]:
            cell = row[op]
            text = f"{_SHORT[cell['seen']]} {cell['seconds']:.1f}s"
            if not cell["agrees"]:
                text = f"[bold red]{text}[/]\n(model: {cell['predicted'] or 'works'})"
            elif cell["seen"] == "fails":
                text = f"[yellow]{text}[/]"
            shown.append(text)
        table.add_row(service, *shown)
    out.print(table)
    notes = {c["note"] for row in doc["matrix"].values() for c in row.values() if c["note"]}
    for note in sorted(notes):
        out.print(f"  [dim]a failure agrees: {escape(note)}[/]")
    if doc.get("error"):
        out.print(f"[bold red]stopped early:[/] {escape(doc['error'])}")
    wrong = doc["disagreements"]
    colour = "green" if doc["verdict"] == "agrees" else "bold red"
    out.print(
        f"[{colour}]the model {doc['verdict']}[/]: {len(wrong)} disagreement(s) in "
        f"{sum(len(r) for r in doc['matrix'].values())} cells ({doc['seconds']:.0f} s)"
    )
    for d in wrong:
        out.print(f"  {d['service']}: {d['operation']} predicted {d['predicted']}, seen {d['seen']} "
                  f"{escape(d['detail'])}")  # fmt: skip


class LabImpact:
    """The running lab's handles, as haven.drill.impact_run.ImpactLab."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        cloud = json.loads(Path(state.files["clouds.yaml"]).read_text())["clouds"]["lab"]
        self._auth: dict[str, str] = dict(cloud["auth"])

    @property
    def auth(self) -> Mapping[str, str]:
        return self._auth

    @property
    def urls(self) -> Mapping[str, str]:
        return self.state.urls

    @property
    def image_id(self) -> str:
        return self.state.image_id

    @property
    def flavor(self) -> str:
        return self.state.flavor

    def groups(self, process: str) -> list[int]:
        folder = Path(self.state.folder)
        if process == "nova-compute":
            return [pid for pid in compute_pids(folder).values() if pid]
        records = (load_state(folder) or self.state).processes
        return [entry.pid for entry in records if entry.name == process and alive(entry)]
