"""``haven explain``: the explanations haven gave (a table, one in full, or ``--json``), and ``listen``.

Registered by haven.cli.main. ``haven explain`` and ``haven explain ID`` read the store only.
``haven explain listen`` runs the explainer (haven.service.explaining, as ``haven serve`` does when
``[diagnosis]`` is set) on a real clock until Ctrl-C: Nova's versioned notifications from ``[diagnosis]
transport_url``, metrics from ``[diagnosis] prometheus_url``, and haven's alerts about failed recoveries
from the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from haven.cli.render import when
from haven.diagnosis.records import ExplanationRecord, ExplanationState, record_json
from haven.domain.clock import RealClock
from haven.domain.errors import NotFound, UserError
from haven.service.config import HavenConfig
from haven.service.explaining import Explaining, build_explaining
from haven.store import Store

ConfigOf = Callable[[argparse.Namespace], HavenConfig]
StoreOf = Callable[[HavenConfig], Store]


def add_explain_command(sub: Any, config_of: ConfigOf, existing_store: StoreOf) -> None:
    """Register ``haven explain [ID]`` and ``haven explain listen`` on the top-level sub-parser set."""
    parser = sub.add_parser(
        "explain",
        help="why things failed: ranked causes of failed boots and failed recoveries, with evidence",
    )
    parser.add_argument("id", nargs="?", help="an explanation's id (from the list), or `listen`")
    parser.add_argument("--state", choices=[s.value for s in ExplanationState])
    parser.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default 50)")
    parser.add_argument("--json", action="store_true")

    def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
        config = config_of(args)
        if args.id == "listen":
            return _listen(config, err)
        with existing_store(config) as store:
            if args.id:
                try:
                    record = store.get_explanation(args.id)
                except NotFound:
                    raise UserError(f"no explanation {args.id!r}", "list them with `haven explain`") from None
                if args.json:
                    print(json.dumps(record_json(record), indent=2))
                else:
                    out.print(explanation_detail(record))
                return 0
            state = ExplanationState(args.state) if args.state else None
            records = store.list_explanations(state=state, limit=args.limit)
        if args.json:
            print(json.dumps([record_json(r) for r in records], indent=2))
        else:
            out.print(explanations_table(records))
        return 0

    parser.set_defaults(handler=handle)


def explanations_table(records: list[ExplanationRecord]) -> Table:
    table = Table(title="explanations (newest first)")
    for column in ("id", "state", "symptom at", "symptom", "phase", "top cause"):
        table.add_column(column, overflow="fold")
    for r in records:
        top = r.diagnosis.explanations[0].label if r.diagnosis and r.diagnosis.explanations else "-"
        table.add_row(r.id, r.state.value, when(r.symptom.at), r.symptom.what, r.symptom.phase or "-", top)
    return table


def explanation_detail(record: ExplanationRecord) -> Group:
    symptom = record.symptom
    head = Text(f"{record.id} ({record.state.value}): {symptom.what} at {when(symptom.at)}")
    parts: list[Text | Table] = [
        head,
        Text(f"phase: {symptom.phase or 'unknown'}; subject: {record.subject}"),
    ]
    if record.diagnosis is None:
        parts.append(Text("not explained yet"))
        return Group(*parts)
    parts.append(Text(record.diagnosis.summary, style="bold"))
    table = Table(title="ranked causes")
    for column in ("#", "cause", "score", "in phase", "after", "evidence"):
        table.add_column(column, overflow="fold")
    for i, e in enumerate(record.diagnosis.explanations, 1):
        after = ", ".join(e.explained_by) or "-"
        evidence = "\n".join(x.text for x in e.evidence)
        table.add_row(str(i), e.label, f"{e.score:.1f}", "yes" if e.in_phase else "no", after, evidence)
    parts.append(table)
    parts.extend(Text(f"note: {note}", style="yellow") for note in record.notes)
    return Group(*parts)


def _listen(config: HavenConfig, err: Console) -> int:
    explaining = build_explaining(config)
    if explaining is None:
        raise UserError(
            "nothing to listen to: [diagnosis] has neither transport_url nor prometheus_url",
            "set [diagnosis] transport_url (the cloud's RabbitMQ) in haven.toml",
        )
    err.print(f"{explaining.describe()}; Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt), Store.open(config.database_url) as store:
        asyncio.run(_run(explaining, store))
    return 0


async def _run(explaining: Explaining, store: Store) -> None:
    try:
        await explaining.run(store, RealClock(), asyncio.Event())  # until Ctrl-C
    finally:
        await explaining.aclose()
