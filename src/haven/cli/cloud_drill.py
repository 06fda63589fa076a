"""`haven drill SCENARIO --cloud NAME`: a drill on a real cloud (the lab, or any clouds.yaml entry).

Called by haven.cli.main for a drill with ``--cloud``. ``--cloud lab`` just works after
`haven lab up`: the lab's clouds.yaml, its haven.toml (unless ``--config``), its flavor and
image, and its hardware (BMCs to cut power, the nova-compute wiring for nova-compute-crash,
the processes' wiring and the BMCs' own power records for host-hang). Any other cloud needs
``--flavor`` and ``--image`` and a [fencing] BMC for the host to fail; only host-power-loss
runs there. The work is haven.drill.cloud_drill's; this module
resolves the options, shows progress on stderr and prints the report (one JSON document
with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.cli import render
from haven.cli.clouds import choose_cloud, open_liveness
from haven.cli.lab_controls import LabBmcRecords, LabComputes, LabPower, running_lab
from haven.cloud.openstack import clouds_yaml_file
from haven.cloud.openstack.workload import open_workload
from haven.cloud.sim import CloudSpec
from haven.domain.clock import RealClock
from haven.domain.errors import HavenError, UserError
from haven.domain.ids import HostName
from haven.drill.cloud_drill import CLOUD_SCENARIOS, CloudDrill, run_cloud_drill
from haven.drill.cloud_judge import CloudDrillReport
from haven.drill.cloud_prep import BmcRecords, ComputeControl, HangControl, PowerControl
from haven.fencing.registry import build_fencer
from haven.service.config import HavenConfig, for_drills, load_config

LAB = "lab"
DEFAULT_VMS = 3
EXIT_FAILED = 1
LIVENESS_CHANNELS = {False: "Nova", True: "haven agents' heartbeats (etcd), Nova and BMCs"}


def run(args: argparse.Namespace, home: Path, out: Console, err: Console) -> int:
    if args.scenario not in CLOUD_SCENARIOS:
        raise UserError(
            f"scenario {args.scenario!r} runs only on the simulated cloud",
            f"on a real cloud choose one of: {', '.join(CLOUD_SCENARIOS)}; drop --cloud for the others",
        )
    vms = DEFAULT_VMS if args.vms is None else args.vms
    started = time.monotonic()

    def say(message: str) -> None:
        if not args.json:
            err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {escape(message)}", highlight=False)

    hardware = _Hardware(None, None, None, None)
    clouds_yaml: Path | None = None
    if args.cloud == LAB:
        state = running_lab(args.lab_folder)
        clouds_yaml = Path(state.files["clouds.yaml"])
        config = load_config(home, args.config or Path(state.files["haven.toml"]), cloud_name=LAB)
        flavor, image = args.flavor or state.flavor, args.image or state.image_id
        computes, records = LabComputes(Path(state.folder)), LabBmcRecords(state)
        # A lab started before its BMCs kept their own records: the witness asks through Redfish.
        hardware = _Hardware(LabPower(state), computes, computes, records if records.kept() else None)
    else:
        config = load_config(home, args.config, cloud_name=args.cloud)
        if not args.flavor or not args.image:
            raise UserError(
                f"a drill on cloud {args.cloud!r} boots its own servers: name their --flavor and --image",
                "use a small flavor and image of that cloud; the drill deletes its servers at the end",
            )
        flavor, image = args.flavor, args.image
    try:
        with clouds_yaml_file(clouds_yaml):
            report = asyncio.run(_run(args, config, flavor, image, vms, hardware, say))
    except UserError:
        raise
    except HavenError as exc:  # the cloud or a BMC failed the drill (its servers are deleted by then)
        err.print(
            f"[bold red]haven drill: failed on cloud {args.cloud!r}:[/] {escape(str(exc))}", highlight=False
        )
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        out.print(render.drill_report(report))
        out.print(_real_cloud_table(report))
    return 0 if report.verdict == "recovered" else EXIT_FAILED


async def _run(
    args: argparse.Namespace,
    config: HavenConfig,
    flavor: str,
    image: str,
    vms: int,
    hw: _Hardware,
    say: Callable[[str], None],
) -> CloudDrillReport:
    chosen = choose_cloud(config, CloudSpec(), RealClock(), os.environ)
    fencer = build_fencer(config.fencing, os.environ)  # a missing password: stop here
    workload = open_workload(args.cloud)
    try:
        # The liveness `haven serve` would use: Nova's service state, and with [coordination] the
        # agents' heartbeats and the BMCs, so the drill detects as the service would.
        async with open_liveness(chosen, config, fencer) as liveness:
            drill = CloudDrill(
                args.scenario, args.cloud, chosen.cloud, liveness, fencer, workload, flavor, image,
                power=hw.power, computes=hw.computes, hangs=hw.hangs, bmc_records=hw.records, vms=vms,
                host=HostName(args.host) if args.host else None,
                settings=for_drills(config.engine), give_up_s=args.give_up, judge_wait_s=args.judge_wait,
                progress=say,
                liveness_channels=LIVENESS_CHANNELS[config.coordination.url is not None],
            )  # fmt: skip
            return await run_cloud_drill(drill)
    finally:
        workload.close()
        chosen.close()


@dataclass(frozen=True)
class _Hardware:
    """The lab's controls handed to the drill (all None on another cloud: its fencer is the power)."""

    power: PowerControl | None
    computes: ComputeControl | None
    hangs: HangControl | None
    records: BmcRecords | None


def _real_cloud_table(report: CloudDrillReport) -> Table:
    table = Table(
        title=f"on cloud {report.cloud!r}: {report.failed_host} (from Nova's and the BMCs' answers)"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in (
        ("liveness read from", report.liveness),
        ("servers booted / deleted", f"{report.servers_booted} / {report.servers_deleted}"),
        ("fault to BMC Off (s)", _num(report.bmc_off_s)),
        ("fault to the first evacuate call (s)", _num(report.first_evacuate_call_s)),
        ("fault to the last evacuate call accepted (s)", _num(report.evacuate_calls_s)),
        ("fault to every HA VM ACTIVE elsewhere, per Nova (s)", _num(report.nova_all_active_s)),
        ("fault to service disabled (s)", _num(report.disabled_s)),
        ("fault undone to host back in service (s)", _num(report.returned_s)),
        ("judge: waited for Nova after haven's recovery (s) / timeout", _wait(report)),
        ("BMC before each evacuate call read from", report.witness),
        ("BMC at the end, its own record", report.bmc_at_end or "-"),
        ("wall time (s)", _num(report.wall_s)),
    ):
        table.add_row(name, value)
    for e in report.evacuations:
        table.add_row(f"evacuation {e['server']}", f"{e['source']}→{e['dest']} {e['nova_status']}, BMC "
                      f"{e['bmc_before_call']} before")  # fmt: skip
    for v in report.not_recovered:
        table.add_row(f"NOT recovered {v['id']}", str(v["why"]))
    for n in report.notifications:
        if n["reason"]:
            table.add_row(f"notification {n['id']}", f"{n['status']}: {n['reason']}")
    return table


def _wait(report: CloudDrillReport) -> str:
    if report.judge_wait_s is None:
        return "-"
    return f"{_num(report.judge_waited_s)} / {report.judge_wait_s:g}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
