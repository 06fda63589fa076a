"""A soak on the real Nova lab: N host-power-loss drills back to back, the failed host rotating (issue 17).

Each run is `haven drill host-power-loss --cloud lab --vms 20` (haven.drill.cloud_drill): 20 HA
servers booted on the host, its BMC powered off, haven's engine detects, fences, forces the service
down, evacuates and verifies; the judge reads Nova after haven's recovery is over and waits (at most
``--judge-wait`` s) until Nova shows every HA VM ACTIVE, no task, running, on another host; the host is
powered on and returned to service, the servers deleted. The verdict is the judge's, from Nova's and the
BMCs' own answers.

For every run that is not ``recovered`` (or that raised, or whose single look at Nova as haven's
recovery ended was stale), the soak keeps in ``--out``: the full JSON
report (with Nova's view of each server: vm_state, task_state, host, power_state, fault; and haven's
notification with its steps), haven's engine events, and Nova's view of every server and compute
service right after the run. A failed run is recorded, never fatal: the lab is tidied (BMCs on, the
drill's servers deleted, services back in service, each action recorded) and the next run starts.

Prints a progress line per run (with the load average: other work on the machine is the "under CPU
load" condition), then the count of each verdict and each distinct cause, and per-run recovery time
(the BMC power-off to Nova showing every HA VM recovered) median and max.

Run: .venv/bin/python bench/lab_soak.py [--runs 50] [--vms 20] [--computes 3] [--folder LAB]
     [--out DIR] [--max-minutes M] [--judge-wait 60]
Without --folder it starts its own lab (haven.lab.lab.up) in a temporary folder and stops exactly that
lab at the end, whatever happens. SIGTERM or SIGINT (or the file ``--stop-file``) ends the soak after the
current run (its clean-up included); a second SIGINT stops at once, still tearing the lab down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import openstack
from figures import spread

from haven.cli.cloud_drill import LIVENESS_CHANNELS
from haven.cli.clouds import choose_cloud, open_liveness
from haven.cli.lab_controls import LabBmcRecords, LabComputes, LabPower, running_lab
from haven.cloud.openstack.workload import open_workload
from haven.cloud.sim import CloudSpec
from haven.domain.clock import RealClock
from haven.domain.events import EngineEvent
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower
from haven.drill.cloud_drill import CloudDrill, run_cloud_drill
from haven.drill.cloud_judge import CloudDrillReport
from haven.drill.nova_view import JUDGE_WAIT_S
from haven.fencing.registry import build_fencer
from haven.lab import lab
from haven.lab.state import LabState
from haven.service.config import load_config

DRILL_PREFIX = "haven-drill-"
TIDY_WAIT_S = 180.0


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


@dataclass
class RunRecord:
    """One run, as the summary counts it (the full evidence of a run not recovered is in its own file)."""

    run: int
    host: str
    verdict: str
    causes: list[str]
    recovery_s: float | None  # the BMC power-off to Nova showing every HA VM recovered (the judge's read)
    haven_verified_s: float | None  # haven's own event: the last VM verified
    detect_s: float | None
    evacuate_calls_s: float | None
    judge_waited_s: float | None
    first_look_recovered: int | None  # recovered in the one list read as haven's recovery ended
    affected: int
    recovered: int
    lost: int
    running_twice: int
    unfenced: int
    evacuations: int
    wall_s: float
    load_before: str
    load_after: str
    evidence: str | None = None


@dataclass
class Stop:
    """Set by SIGTERM/SIGINT or the stop file: the soak ends after the current run."""

    file: Path
    asked: bool = False
    why: str = ""

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        if self.asked and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.asked, self.why = True, f"signal {signal.Signals(signum).name}"
        say(f"{self.why}: the soak stops after this run")

    def due(self) -> bool:
        if not self.asked and self.file.exists():
            self.asked, self.why = True, f"stop file {self.file}"
        return self.asked


@contextlib.contextmanager
def a_lab(folder: Path | None, computes: int) -> Iterator[LabState]:
    """The lab in ``folder``, or one started here and stopped here (exactly what ``up`` started)."""
    if folder is not None:
        yield running_lab(folder)
        return
    own = Path(tempfile.mkdtemp(prefix="haven-soak-lab-"))
    try:
        yield lab.up(own, computes, progress=lambda m: say(f"lab: {m}"))
    finally:
        say(f"stopping the soak's lab in {own}")
        stopped = lab.down(own)
        say(f"lab down: {len(stopped)} processes stopped")
        shutil.rmtree(own, ignore_errors=True)


# ---- one run ------------------------------------------------------------------------------------


async def drill_once(
    state: LabState, host: HostName, vms: int, judge_wait_s: float, events: list[EngineEvent]
) -> CloudDrillReport:
    """`haven drill host-power-loss --cloud lab` as the CLI runs it, with the engine's events kept."""
    config = load_config(Path(state.folder), Path(state.files["haven.toml"]), cloud_name="lab")
    chosen = choose_cloud(config, CloudSpec(), RealClock(), os.environ)
    fencer = build_fencer(config.fencing, os.environ)
    workload = open_workload("lab")
    records = LabBmcRecords(state)
    computes = LabComputes(Path(state.folder))
    try:
        async with open_liveness(chosen, config, fencer) as liveness:
            drill = CloudDrill(
                "host-power-loss", "lab", chosen.cloud, liveness, fencer, workload, state.flavor,
                state.image_id, power=LabPower(state), computes=computes, hangs=computes,
                bmc_records=records if records.kept() else None, vms=vms, host=host,
                settings=config.engine, judge_wait_s=judge_wait_s, on_event=events.append,
                progress=lambda m: say(f"  {m}"),
                liveness_channels=LIVENESS_CHANNELS[config.coordination.url is not None],
            )  # fmt: skip
            return await run_cloud_drill(drill)
    finally:
        workload.close()
        chosen.close()


def causes_of(report: CloudDrillReport) -> list[str]:
    """The distinct reasons a run is not ``recovered``, without ids (so equal causes count together)."""
    if report.verdict == "recovered":
        return []
    found = [f"VM not recovered: {generic(v['why'])}" for v in report.not_recovered]
    found += [generic(c) for c in report.checks if c.startswith(("SAFETY VIOLATED", "VERIFICATION WRONG"))]
    found += [generic(c) for c in report.checks if c.startswith(("gave up", "Nova did not", "compute-"))]
    found += [f"notification {n['status']}: {generic(str(n['reason']))}" for n in report.notifications
              if n["reason"]]  # fmt: skip
    if any(c.endswith("back in service (Nova: up, enabled, not forced down): False") for c in report.checks):
        found.append("the failed host was not back in service")
    return sorted(set(found)) or [
        f"verdict {report.verdict}: {generic(report.checks[-1] if report.checks else '')}"
    ]


def generic(text: str) -> str:
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    text = re.sub(r"compute-\d+", "compute-N", text)
    return re.sub(r"\d+(\.\d+)?", "#", text)


def event_dict(e: EngineEvent) -> dict[str, Any]:
    return {
        "kind": e.kind.value,
        "at": e.at,
        "host": e.host,
        "notification": e.notification_id,
        "detail": dict(e.detail),
    }


async def nova_now(state: LabState) -> dict[str, Any]:
    """Nova's view of every server and compute service, and every BMC's answer, right now."""
    conn = openstack.connect(cloud="lab")
    try:
        servers = [
            {
                "id": s.id,
                "name": s.name,
                "host": s.compute_host,
                "vm_state": s.vm_state,
                "task_state": s.task_state,
                "power_state": s.power_state,
                "status": s.status,
                "fault": (s.fault or {}).get("message") if isinstance(s.fault, dict) else s.fault,
            }
            for s in conn.compute.servers(all_projects=True)
        ]
        services = [
            {
                "host": s.host,
                "state": s.state,
                "status": s.status,
                "forced_down": s.is_forced_down,
                "disabled_reason": s.disabled_reason,
            }
            for s in conn.compute.services(binary="nova-compute")
        ]
    finally:
        conn.close()
    power = LabPower(state)
    bmcs = {h: (await power.power_status(HostName(h))).value for h in state.computes}
    return {"servers": servers, "compute_services": services, "bmcs": bmcs}


async def tidy(state: LabState) -> list[str]:
    """After a run that did not end cleanly: every BMC on, the drill's servers deleted, every compute
    service up, enabled and not forced down. Returns what it had to do (recorded as evidence)."""
    done: list[str] = []
    power = LabPower(state)
    for host in map(HostName, state.computes):
        if await power.power_status(host) is not BmcPower.ON:
            await power.power_on(host)
            done.append(f"powered {host} on")
    conn = openstack.connect(cloud="lab")
    try:
        left = [s for s in conn.compute.servers(all_projects=True) if s.name.startswith(DRILL_PREFIX)]
        for s in left:
            conn.compute.delete_server(s.id, ignore_missing=True)
        if left:
            done.append(f"deleted {len(left)} leftover drill servers")
        deadline = time.monotonic() + TIDY_WAIT_S
        while time.monotonic() < deadline:
            unwell = [c for c in conn.compute.services(binary="nova-compute")
                      if c.state != "up" or c.status != "enabled" or c.is_forced_down]  # fmt: skip
            if not unwell:
                break
            for c in unwell:
                with contextlib.suppress(openstack.exceptions.SDKException):
                    if c.is_forced_down:
                        conn.compute.update_service_forced_down(c, c.host, c.binary, False)
                        done.append(f"unset forced_down of {c.host}")
                    elif c.status != "enabled" and c.state == "up":
                        conn.compute.enable_service(c, c.host, c.binary)
                        done.append(f"enabled {c.host} ({c.disabled_reason})")
            await asyncio.sleep(5)
        else:
            done.append("compute services still not all in service after the tidy-up")
    finally:
        conn.close()
    return done


def one_run(state: LabState, run: int, host: HostName, args: argparse.Namespace, out: Path) -> RunRecord:
    load_before, started = load(), time.monotonic()
    events: list[EngineEvent] = []
    report: CloudDrillReport | None = None
    error = ""
    try:
        report = asyncio.run(drill_once(state, host, args.vms, args.judge_wait, events))
    except Exception as exc:  # a failed run is recorded, never fatal
        error = f"{type(exc).__name__}: {exc}"
        say(f"  run {run} raised {error}")
        trace = traceback.format_exc()
    wall = round(time.monotonic() - started, 1)
    if report is not None:
        record = RunRecord(
            run, host, report.verdict, causes_of(report), report.nova_all_active_s, report.recover_s,
            report.detect_s, report.evacuate_calls_s, report.judge_waited_s, report.first_look_recovered,
            report.ha_vms_affected, report.ha_vms_recovered, report.vms_lost, report.vms_running_twice,
            report.evacuated_unfenced, len(report.evacuations), wall, load_before, load(),
        )  # fmt: skip
    else:
        record = RunRecord(run, host, "error", [f"drill error: {generic(error)}"], None, None, None, None,
                           None, None, 0, 0, 0, 0, 0, 0, wall, load_before, load())  # fmt: skip
    # A recovered run whose single look as haven's recovery ended was stale is kept too: it is the
    # partial run of issue 17 as the judge before its fix would have judged it.
    stale = record.first_look_recovered is not None and record.first_look_recovered < record.affected
    if record.verdict != "recovered" or stale:
        evidence: dict[str, Any] = {"record": asdict(record), "events": [event_dict(e) for e in events]}
        if report is not None:
            evidence["report"] = report.to_dict()
        else:
            evidence["error"], evidence["traceback"] = error, trace
        with contextlib.suppress(Exception):
            evidence["nova_after_run"] = asyncio.run(nova_now(state))
        if record.verdict != "recovered":
            try:
                evidence["tidied"] = asyncio.run(tidy(state))
            except Exception as exc:
                evidence["tidied"] = [f"tidy-up failed: {type(exc).__name__}: {exc}"]
        path = out / f"run-{run:03d}-{record.verdict}{'-stale-first-look' if stale else ''}.json"
        path.write_text(json.dumps(evidence, indent=2, default=str))
        record.evidence = str(path)
    return record


# ---- the soak -----------------------------------------------------------------------------------


@dataclass
class Soak:
    records: list[RunRecord] = field(default_factory=list)

    def line(self, r: RunRecord, runs: int) -> str:
        verdicts = Counter(x.verdict for x in self.records)
        tally = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        ver = "-" if r.haven_verified_s is None else f"{r.haven_verified_s:.1f} s"
        look = (
            "" if r.first_look_recovered in (None, r.affected) else f", first look {r.first_look_recovered}"
        )
        why = f" ({'; '.join(r.causes)})" if r.causes else ""
        return (
            f"run {r.run}/{runs} {r.host}: {r.verdict}{why}; {r.recovered}/{r.affected} recovered, Nova "
            f"{rec}, haven verified {ver}, judge waited {r.judge_waited_s} s{look}; {r.evacuations} "
            f"evacuations; wall {r.wall_s:.0f} s; load {r.load_before} -> {r.load_after} | so far: {tally}"
        )

    def summary(self, args: argparse.Namespace, command: str, stopped: str) -> dict[str, Any]:
        rs = self.records
        recovery = spread(r.recovery_s for r in rs)
        verified = spread(r.haven_verified_s for r in rs)
        loads = [float(r.load_before.split()[0]) for r in rs]
        consecutive = longest = 0
        for r in rs:
            consecutive = consecutive + 1 if r.verdict == "recovered" else 0
            longest = max(longest, consecutive)
        return {
            "command": command,
            "runs": len(rs),
            "runs_asked": args.runs,
            "stopped": stopped,
            "vms_per_run": args.vms,
            "computes": args.computes,
            "verdicts": dict(Counter(r.verdict for r in rs)),
            "causes": dict(Counter(c for r in rs for c in r.causes)),
            "consecutive_recovered_at_end": consecutive,
            "longest_recovered_streak": longest,
            "evacuations": sum(r.evacuations for r in rs),
            "vms_affected": sum(r.affected for r in rs),
            "vms_lost": sum(r.lost for r in rs),
            "vms_running_twice": sum(r.running_twice for r in rs),
            "evacuated_unfenced": sum(r.unfenced for r in rs),
            "recovery_s": {
                "median": recovery.median,
                "max": recovery.max,
                "min": recovery.min,
                "missing": recovery.missing,
            },
            "haven_verified_s": {"median": verified.median, "max": verified.max, "missing": verified.missing},
            "judge_waited_s_max": max((r.judge_waited_s or 0.0 for r in rs), default=None),
            "runs_whose_first_look_was_stale": sum(
                1 for r in rs if r.first_look_recovered is not None and r.first_look_recovered < r.affected
            ),
            "load_1min": {
                "min": min(loads, default=None),
                "max": max(loads, default=None),
                "median": spread(loads).median,
            },
            "per_host": dict(Counter(r.host for r in rs)),
        }


def print_summary(s: dict[str, Any]) -> None:
    rec, ver = s["recovery_s"], s["haven_verified_s"]

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    print(f"\nsoak: {s['runs']} runs of {s['runs_asked']} ({s['stopped']}); {s['computes']} computes, "
          f"{s['vms_per_run']} HA VMs per run, failed host rotating {s['per_host']}")  # fmt: skip
    print(f"command: {s['command']}")
    print(f"verdicts: {s['verdicts']}; consecutive recovered: {s['longest_recovered_streak']} at most, "
          f"{s['consecutive_recovered_at_end']} at the end")  # fmt: skip
    for cause, n in sorted(s["causes"].items(), key=lambda kv: -kv[1]):
        print(f"  cause x{n}: {cause}")
    print(f"evacuations: {s['evacuations']} (HA VMs affected {s['vms_affected']}); lost {s['vms_lost']}, "
          f"running twice {s['vms_running_twice']}, unfenced {s['evacuated_unfenced']}")  # fmt: skip
    print(f"per-run recovery (BMC off -> Nova shows every HA VM ACTIVE, no task, running, elsewhere): "
          f"median {num(rec['median'])} s, max {num(rec['max'])} s, min {num(rec['min'])} s"
          + (f"; {rec['missing']} runs never got there" if rec["missing"] else ""))  # fmt: skip
    print(f"haven's own 'last VM verified': median {num(ver['median'])} s, max {num(ver['max'])} s")
    print(f"judge's wait after haven's recovery: max {num(s['judge_waited_s_max'])} s; runs whose single "
          f"look as the recovery ended was stale: {s['runs_whose_first_look_was_stale']}")  # fmt: skip
    ld = s["load_1min"]
    print(f"1-min load average at each run's start: min {num(ld['min'])}, median {num(ld['median'])}, "
          f"max {num(ld['max'])} (2 cores)")  # fmt: skip


def soak(state: LabState, args: argparse.Namespace, out: Path, stop: Stop, command: str) -> dict[str, Any]:
    s = Soak()
    hosts = [HostName(h) for h in state.computes]
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    stopped = "all runs done"
    with (out / "runs.jsonl").open("a") as runs_file:
        for run in range(1, args.runs + 1):
            if stop.due():
                stopped = f"stopped by {stop.why}"
                break
            if deadline is not None and time.monotonic() > deadline:
                stopped = f"stopped after --max-minutes {args.max_minutes:g}"
                break
            host = hosts[(run - 1) % len(hosts)]
            say(f"run {run}/{args.runs}: host-power-loss on {host}, {args.vms} HA VMs; load {load()}")
            record = one_run(state, run, host, args, out)
            s.records.append(record)
            runs_file.write(json.dumps(asdict(record)) + "\n")
            runs_file.flush()
            say(s.line(record, args.runs))
    summary = s.summary(args, command, stopped)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--computes", type=int, default=3, help="for the lab started here (default 3)")
    parser.add_argument("--folder", type=Path, help="a running lab's folder (default: start one here)")
    parser.add_argument("--out", type=Path, help="where runs.jsonl, summary.json and the evidence go")
    parser.add_argument("--max-minutes", type=float, help="start no run after this long")
    parser.add_argument("--judge-wait", type=float, default=JUDGE_WAIT_S)
    parser.add_argument("--stop-file", type=Path, default=Path("/tmp/lab-soak.stop"))
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="haven-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "bench/lab_soak.py", *sys.argv[1:]])
    stop = Stop(args.stop_file)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    say(f"soak: evidence in {out}; stop with SIGTERM or `touch {args.stop_file}`; load {load()}")
    with a_lab(args.folder, args.computes) as state:
        os.environ["OS_CLIENT_CONFIG_FILE"] = state.files["clouds.yaml"]
        summary = soak(state, args, out, stop, command)
    print_summary(summary)
    print(f"evidence: {out}")


if __name__ == "__main__":
    main()
