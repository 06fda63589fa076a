"""``haven canary``: the canary boots and API probes haven ran (a table or ``--json``), and ``run``.

Registered by haven.cli.main. ``haven canary`` reads the store only. ``haven canary run`` runs one round
now, as ``haven serve`` does every ``[canary] interval_s`` while it leads: servers left by earlier runs
deleted, the API probes, one boot per zone (each phase timed), each run committed to the store, and a
failed or slow one explained (``haven explain`` shows it). Exit status 0 when every probe and canary
succeeded, 1 when one failed or was slow.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from haven.canary.config import CanaryConfig
from haven.canary.model import PHASES, CanaryRun, durations, probe_json, run_json
from haven.canary.runner import CanaryRunner, Round, recent_runs
from haven.canary.unseen import probe_needs
from haven.cli.render import when
from haven.cloud.sim import CloudSpec, build_cloud
from haven.domain.clock import RealClock
from haven.domain.errors import CloudError, UserError
from haven.service.config import HavenConfig
from haven.service.explaining import explaining_for
from haven.store import Store

ConfigOf = Callable[[argparse.Namespace], HavenConfig]
StoreOf = Callable[[HavenConfig], Store]


def add_canary_command(sub: Any, config_of: ConfigOf, existing_store: StoreOf, new_store: StoreOf) -> None:
    """Register ``haven canary`` and ``haven canary run`` on the top-level sub-parser set."""
    parser = sub.add_parser("canary", help="synthetic checks: timed test boots per zone and API probes")
    parser.add_argument("action", nargs="?", choices=["run"], help="run one round now")
    parser.add_argument("--zone", action="append", default=None, help="only this zone (repeatable)")
    parser.add_argument("--flavor", help="default: [canary] flavor")
    parser.add_argument("--image", help="default: [canary] image")
    parser.add_argument("--limit", type=int, default=20, help="runs listed, newest first (default 20)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--cloud", metavar="NAME", help="a real OpenStack cloud from clouds.yaml instead of the simulated one"
    )

    def handle(args: argparse.Namespace, out: Console, err: Console) -> int:
        config = config_of(args)
        if args.action == "run":
            return asyncio.run(_run(config, args, out, err, new_store))
        with existing_store(config) as store:
            runs = recent_runs(store, args.limit)
        if args.json:
            print(json.dumps([run_json(r) for r in runs], indent=2))
        else:
            out.print(runs_table(runs))
        return 0

    parser.set_defaults(handler=handle)


async def _run(
    config: HavenConfig, args: argparse.Namespace, out: Console, err: Console, new_store: StoreOf
) -> int:
    canary = config.canary if config.canary.enabled else CanaryConfig(True)
    overrides = {k: v for k, v in (("flavor", args.flavor), ("image", args.image)) if v}
    if args.zone:
        overrides["zones"] = tuple(args.zone)
    canary = dataclasses.replace(canary, settings=dataclasses.replace(canary.settings, **overrides))
    clock = RealClock()
    sim = None
    if config.cloud_driver != "openstack":
        spec = CloudSpec(hosts=config.simulated.hosts, vms=config.simulated.vms, seed=config.simulated.seed)
        sim = build_cloud(spec, clock)[0]
    explaining = explaining_for(config, sim, canary)  # a real cloud without flavor or image: stops here
    cloud = explaining.canary(clock)
    assert cloud is not None
    metrics = explaining.metrics()
    progress = None if args.json else (lambda line: err.print(line, highlight=False))
    try:
        with new_store(config) as store:
            explainer = explaining.explainer(store, clock, metrics)
            needs = probe_needs(explaining.topology)  # haven.canary.unseen, as haven serve's canary
            runner = CanaryRunner(
                cloud, store, clock, canary.settings, explainer.open_and_explain, progress,
                needs=needs, on_refine=explainer.refine,
            )  # fmt: skip
            try:
                found = await runner.round()
            except CloudError as exc:  # the zones could not be listed: nothing was booted
                raise UserError(
                    f"the cloud did not answer: {exc}", "check it is reachable, then run again"
                ) from None
            explained = {
                r.id: store.get_explanation(f"canary:{r.id}") for r in found.runs if r.outcome != "ok"
            }
    finally:
        await asyncio.to_thread(cloud.close)
        if metrics is not None:
            await metrics.aclose()
        await explaining.aclose()
    if args.json:
        print(
            json.dumps(
                round_json(
                    found, {k: v.diagnosis.summary if v.diagnosis else None for k, v in explained.items()}
                ),
                indent=2,
            )
        )
    else:
        out.print(runs_table(list(found.runs)))
        for probe in found.probes:
            out.print(
                f"probe {probe.name}: {'ok' if probe.ok else 'FAILED ' + probe.error} ({probe.seconds:.2f} s)"
            )
        for record in explained.values():
            if record.diagnosis is not None:
                out.print(f"{record.id}: {record.diagnosis.summary}")
    return 0 if found.ok else 1


def round_json(found: Round, summaries: dict[str, str | None]) -> dict[str, Any]:
    return {
        "ok": found.ok,
        "cleaned": [{"id": f.id, "name": f.name} for f in found.cleaned],
        "probes": [probe_json(p) for p in found.probes],
        "runs": [{**run_json(r), "explanation": summaries.get(r.id)} for r in found.runs],
    }


def runs_table(runs: Sequence[CanaryRun]) -> Table:
    table = Table(title="canary boots (newest first; each phase's own seconds)")
    for column in ("started", "zone", "host", "outcome", *(p.value for p in PHASES), "error"):
        table.add_column(column, overflow="fold")
    for run in runs:
        took = durations(run.phases)
        cells = [f"{took[p.value]:.2f}" if p.value in took else "-" for p in PHASES]
        outcome = run.outcome.value if run.outcome else run.state.value
        table.add_row(when(run.started_at), run.zone, run.host or "-", outcome, *cells, run.error or "")
    return table
