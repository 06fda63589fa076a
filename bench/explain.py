"""A fault catalogue on the real lab: canaries fail, the explainer ranks causes, AC@1 / AC@3.

Each fault is one an operator meets, with its true root cause a node of haven.topology: a control-plane
service hung (SIGSTOP of the lab's process group of that service, SIGCONT to heal) or killed (SIGKILL
of the group; healed by starting it again with the command line, environment and folder its process had,
and the lab's state file updated so ``haven lab down`` still stops it), the computes' nova-compute held
down or hung, the compute hosts powered off through their Redfish BMCs, Placement's inventory used up,
the canary image deactivated or deleted in Glance, every nova-compute disabled, Keystone slow (SIGSTOP/SIGCONT
cycles), the Neutron API hung. Faults whose evidence haven cannot see are kept in the catalogue and come
out as misses with their reason.

The catalogue (haven.drill.faults) and one injection (haven.drill.faults_run, below) are haven's own,
also run one at a time by `haven drill fault NAME --cloud lab`; this script runs them in rounds and
reports the accuracy over them.

The injections run in ``--repeat`` rounds (alias ``--runs``), each round every fault once, with the
``--control`` no-fault periods spread over the rounds (``plan``); with ``--seed`` each round has its own
shuffled order and each injection its own seed, which lengthens its settle time by 0 to ``--jitter`` s, so
the repeats of one fault differ in order, timing and what ran before them (a bench stopped early has run
every fault as often, give or take one). For each injection:

1. the lab is proven whole (every process it started alive, no hold left, a round whose probes and
   boots all pass) within ``--whole-timeout``; a lab that is not whole skips the fault (reported);
2. the fault is injected and, after its settle time (Nova's service list calls a silent service down
   after the lab's ``service_down_time`` = 10 s), one canary round runs (token, server list, each
   catalog endpoint, Nova's service list, the zones, one boot per zone with ``--boot-timeout``), bounded
   by ``--round-timeout``; a read that fails is the canary's symptom or evidence, never the bench's end;
3. the symptom judged is the failed canary boot's explanation when a boot failed, else the first failed
   probe's (token, server list, zones); no symptom at all is a miss ("no symptom");
4. the fault is healed (whatever happened) and the lab proven whole again; a fault that cannot be healed
   within ``--whole-timeout`` is reported, and the next faults skip while the lab is not whole.

No Prometheus: the evidence is what the canary sees (probes, endpoints, Nova's service list) plus what
haven stored. With ``--controlplane``, haven's control-plane reconciler also runs over the lab, observe-only
(it acts on nothing: the bench heals; haven.drill.faults_observe), with the lab's processes as its units
(the lab has no systemd: ``LabUnits`` reads each process record) and three service probes: an SQL query
on MariaDB, an AMQP round trip on RabbitMQ, a Keystone token issued and validated; what it sees change
is kept as evidence (haven.evidence.controlplane).

``--until HH:MM`` (UTC) starts no injection after that time, so a long run ends with its last fault
healed; ``--append`` keeps the injections already in ``--out`` and numbers this run's rounds after
them, so several sessions can add rounds to one report (give each its own ``--seed``). Each result
keeps the 1-minute load average at its start and end (``load``).

A **no-fault control period** (``--control``) is an injection of nothing, as long as one (12 s plus the
jitter, then one canary round): every symptom it raises is an alarm, a false alarm when haven's explanation
names a cause; and a boot failure is supposed at its end (no phase: no narrowing) and ranked by every
method on the evidence held then, which shows what each would blame when nothing is wrong.

Prints per injection: the canary's outcome, the top three causes, AC@1 (the top cause is the root), AC@3
(one of the top three is), the seconds from the symptom to its stored explanation, the miss's reason;
then per fault and overall AC@1 / AC@3 as hits of the injections judged with a 95 % Wilson interval,
for haven and every baseline, the median time to an explanation, and the control periods' alarms. Each
judged symptom's ranker input (graph, events, series) is kept in the report and ranked by the baselines
too (haven.diagnosis.baselines: z-score only, points only, earliest onset), with their AC@1 / AC@3 on the
same evidence; ``--replay REPORT``
ranks a report's kept evidence again with this code (no lab), to see what a ranker change does to it.

A **long no-fault control** (``--control-minutes N``, instead of the injections) is the issue's "no-fault
control period of at least 30 minutes": the real ``haven serve`` on the lab (``haven --config LAB/haven.toml
serve --cloud lab`` with its own database and a ``[canary]`` every ``--control-interval`` s: its canary
boots, token and server-list probes and its explainer), and beside it API traffic (a server list every
``--control-traffic`` s), for N minutes with nothing injected. Then, from serve's own store: every symptom
it recorded, the incidents they make (haven.explain.incidents, the alerts haven sends to Alertmanager:
one per root cause named, plus every symptom with no cause), haven's own alerts raised in the period,
the canary rounds and the load. 0 incidents is the issue's target.

Run: .venv/bin/python bench/explain.py [--folder LAB] [--repeat 1] [--control 0] [--seed N] [--jitter 5]
     [--only glance-hung,...] [--boot-timeout 40] [--controlplane] [--json] [--list] [--out REPORT]
     [--replay REPORT] [--append] [--until HH:MM]
     .venv/bin/python bench/explain.py --folder LAB --control-minutes 30 [--control-interval 60]
     [--control-traffic 10] [--out REPORT]
Without --folder it starts a lab (haven.lab.lab.up, 2 computes) in a temporary folder and stops it at
the end (about 5-7 minutes on a loaded 2-core machine), then about 1-2 minutes per injection.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from haven.canary.runner import PROBE, recent_runs
from haven.cli.fault_drill import LabFaults
from haven.diagnosis.baselines import METHODS
from haven.drill.faults import CATALOG, FAULTS, NO_FAULT
from haven.drill.faults_observe import observing
from haven.drill.faults_run import FaultRun, Result, RunSettings, plan, rank_all
from haven.explain.incidents import CAUSE, ROLE, IncidentSettings, incident_alerts, root_of
from haven.lab import lab
from haven.lab.state import LabState, load_state
from haven.store import Store


def write_report(path: Path, found: dict[str, Any]) -> None:
    """The JSON report to ``path``, gzipped when its name ends in ``.gz`` (a recording keeps every
    injection's evidence: 71 MB of JSON for 83 injections on 2026-12-07, 2.7 MB gzipped)."""
    text = json.dumps(found, indent=2) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def read_report(path: Path) -> Any:
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.suffix == ".gz" else data)


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# ---- the report ---------------------------------------------------------------------------------------


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval (95 % by default) of a proportion ``hits / n``; None when n is 0."""
    if n == 0:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / (1 + z * z / n)
    return round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)


def share(hits: int, n: int) -> dict[str, Any]:
    """``hits`` of ``n`` as a figure with its 95 % Wilson interval."""
    return {"hits": hits, "n": n, "rate": round(hits / n, 3) if n else None, "ci95": wilson(hits, n)}


def _accuracy(judged: list[Result], ranked: Callable[[Result], list[str]]) -> dict[str, Any]:
    return {
        "ac1": share(sum(bool(ranked(r)) and ranked(r)[0] == r.root for r in judged), len(judged)),
        "ac3": share(sum(r.root in ranked(r)[:3] for r in judged), len(judged)),
    }


def report(results: list[Result]) -> dict[str, Any]:
    """Per fault and overall, for haven and each baseline on the same evidence: AC@1 and AC@3 as hits of
    the injections judged, with 95 % Wilson intervals; the no-fault control periods' false alarms."""
    faults = [r for r in results if not r.control]
    controls = [r for r in results if r.control and r.status == "run"]
    judged = [r for r in faults if r.status == "run"]
    after = [r.explained_after_s for r in judged if r.explained_after_s is not None]
    rows = []
    for r in results:
        row = asdict(r)
        row.update(top1=r.top1, top3=r.top3, reason=r.reason, control=r.control)
        rows.append(row)

    def by_method(name: str) -> Callable[[Result], list[str]]:
        return lambda r: r.ranked if name == "haven" else r.methods.get(name, [])

    per_fault: dict[str, Any] = {}
    for name in dict.fromkeys(r.fault for r in faults):
        mine = [r for r in judged if r.fault == name]
        per_fault[name] = {
            "root": next(r.root for r in faults if r.fault == name),
            "injections": sum(r.fault == name for r in faults),
            "judged": len(mine),
            "methods": {m: _accuracy(mine, by_method(m)) for m in METHODS},
            "top1_seen": dict(collections.Counter(r.ranked[0] if r.ranked else "-" for r in mine)),
            "misses": [f"round {r.round}: {r.reason}" for r in mine if not r.top1],
        }
    # Over the controls: an alarm is a symptom raised with nothing injected; haven's false alarm is one
    # it explained with a cause. A supposed boot failure at each period's end is ranked by every method.
    control = {
        "periods": len(controls),
        "alarmed": share(sum(bool(r.alarms) for r in controls), len(controls)),
        "false_alarms": share(sum(any(r.blamed) for r in controls), len(controls)),
        "alarms": sum(len(r.alarms) for r in controls),
        "supposed_blames": {m: share(sum(bool(r.supposed.get(m)) for r in controls), len(controls))
                            for m in METHODS},
        "supposed_top1": {m: dict(collections.Counter(r.supposed[m][0] if r.supposed.get(m) else "-"
                                                      for r in controls)) for m in METHODS},
    }  # fmt: skip
    overall = {m: _accuracy(judged, by_method(m)) for m in METHODS}
    return {
        "faults": len(per_fault),
        "injections": len(faults),
        "judged": len(judged),
        "ac1": overall["haven"]["ac1"]["rate"],
        "ac3": overall["haven"]["ac3"]["rate"],
        "explained_after_s_median": statistics.median(after) if after else None,
        "not_healed": [r.fault for r in results if not r.healed],
        "skipped": [f"round {r.round}: {r.fault}: {r.reason}" for r in results if r.status != "run"],
        "methods": overall,  # the same evidence ranked by each method (haven.diagnosis.baselines)
        "per_fault": per_fault,
        "control": control,
        "results": rows,
    }


@contextlib.contextmanager
def a_lab(folder: Path | None) -> Iterator[LabState]:
    if folder is not None:
        state = load_state(folder)
        if state is None:
            raise SystemExit(f"no lab in {folder}: start one with `haven lab up --folder {folder}`")
        yield state
        return
    own = Path(tempfile.mkdtemp(prefix="haven-bench-explain-"))
    try:
        yield lab.up(own, 2, progress=lambda m: say(f"lab: {m}"))
    finally:
        lab.down(own)
        shutil.rmtree(own, ignore_errors=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = args.only.split(",") if args.only else [f.name for f in CATALOG]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(unknown)}: known are {', '.join(FAULTS)} (--list)")
    results = recorded(args.out) if args.append else []
    done = max((r.round for r in results), default=0)  # --append: the new rounds come after the recorded
    planned = plan(names, args.runs, args.control, args.seed)
    order = [(done + round_, name, seed) for round_, name, seed in planned]
    if results:
        say(f"--append: {len(results)} recorded in {args.out} (rounds 1-{done}); adding {len(order)}")
    with (
        a_lab(args.folder) as state,
        tempfile.TemporaryDirectory() as tmp,
        Store.open(f"sqlite:///{tmp}/haven.db") as store,
    ):
        handle = LabFaults(state)
        settings = RunSettings(
            boot_timeout_s=args.boot_timeout, request_timeout_s=args.request_timeout,
            endpoint_timeout_s=args.endpoint_timeout, round_timeout_s=args.round_timeout,
            whole_timeout_s=args.whole_timeout, jitter_s=args.jitter,
        )  # fmt: skip
        bench = FaultRun(handle, store, settings, say)
        async with observing(handle, store, args.controlplane):
            for i, (round_, name, seed) in enumerate(order, 1):
                if args.until is not None and time.time() >= args.until:
                    say(f"--until: {time.strftime('%H:%M', time.gmtime(args.until))} UTC passed; "
                        f"{len(order) - i + 1} injections not started")  # fmt: skip
                    break
                say(f"[{i}/{len(order)}] round {round_}: {name} (seed {seed})")
                results.append(await bench.inject(FAULTS.get(name, NO_FAULT), round_, seed))
                if args.out:
                    write_report(args.out, report(results))
    return report(results)


# ---- the long no-fault control: the real haven serve on the lab, nothing injected -------------------------

HAVEN = Path(sys.executable).with_name("haven")


def serve_toml(state: LabState, interval_s: float) -> str:
    """The lab's haven.toml (`haven lab up` wrote it) with a ``[canary]`` every ``interval_s``."""
    lab_toml = Path(state.files["haven.toml"]).read_text().rstrip("\n")
    return (
        f"{lab_toml}\n[canary]  # bench/explain.py --control-minutes\n"
        f'flavor = "{state.flavor}"\nimage = "{state.image_id}"\nnetwork = "none"\n'
        f"interval_s = {interval_s}\n"
    )


def control_period(state: LabState, minutes: float, interval_s: float, traffic_s: float) -> dict[str, Any]:
    """``haven serve`` on the lab with its canary and API traffic beside it for ``minutes``, no fault
    injected; what it raised, read from serve's own store (module docstring)."""
    home = Path(tempfile.mkdtemp(prefix="haven-bench-control-"))
    config = home / "haven.toml"
    config.write_text(serve_toml(state, interval_s))
    config.chmod(0o600)  # it holds the BMCs' password, as the lab's own
    db = f"sqlite:///{home / 'haven.db'}"
    argv = [str(HAVEN), "--home", str(home), "--config", str(config), "--db", db, "serve", "--cloud", "lab"]
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": state.files["clouds.yaml"]}
    handle = LabFaults(state)
    traffic: collections.Counter[str] = collections.Counter()
    loads: list[float] = []
    say(f"control: haven serve on the lab for {minutes:g} min (canary every {interval_s:g} s, a server list "
        f"every {traffic_s:g} s), nothing injected; serve's log in {home / 'serve.log'}")  # fmt: skip
    with (home / "serve.log").open("w") as log:
        serve = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    started_at = time.time()
    started = time.monotonic()
    next_load = started
    try:
        while time.monotonic() < started + minutes * 60:
            if serve.poll() is not None:
                raise SystemExit(f"haven serve stopped ({serve.returncode}): see {home / 'serve.log'}")
            began = time.monotonic()
            if began >= next_load:
                loads.append(os.getloadavg()[0])
                next_load += 60.0
                say(f"control: {(began - started) / 60:.0f} of {minutes:g} min, load {loads[-1]:.1f}, "
                    f"server lists {dict(traffic)}")  # fmt: skip
            try:
                handle.call("compute", "GET", "/servers")
                traffic["ok"] += 1
            except Exception as exc:  # counted: API traffic that failed is part of what the period saw
                traffic[f"failed: {type(exc).__name__}"] += 1
            time.sleep(max(0.0, traffic_s - (time.monotonic() - began)))
    finally:
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
    ended_at = time.time()
    found = control_found(home / "haven.db", started_at, ended_at)
    found.update(
        minutes=minutes, canary_interval_s=interval_s, traffic_every_s=traffic_s, server_lists=dict(traffic),
        load_1min={"min": min(loads), "median": statistics.median(loads), "max": max(loads)},
        serve_exit=serve.returncode, serve_home=str(home),
    )  # fmt: skip
    return found


def control_found(db: Path, start: float, end: float) -> dict[str, Any]:
    """What serve's store holds from ``start`` to ``end``: symptoms, incidents, haven's alerts, canaries."""
    with Store.open(f"sqlite:///{db}") as store:
        records = [r for r in store.list_explanations(limit=100_000) if start <= r.symptom.at <= end]
        alerts = [a for a in store.list_alerts(active_only=False) if start <= a.raised_at <= end]
        runs = [r for r in recent_runs(store, limit=100_000) if start <= r.started_at <= end]
        probes = [p for p in store.list_canaries(PROBE, limit=100_000) if start <= p["at"] <= end]
    # The alerts haven would send at the end for every symptom of the period (kept active that long) and
    # for haven's own alerts raised in it, cleared or not: the incidents are the causes and the symptoms
    # with no cause (each notified as itself); haven's own alerts too.
    everything = [dataclasses.replace(a, cleared_at=None) for a in alerts]
    sent = incident_alerts(records, everything, end, IncidentSettings(active_s=end - start + 1.0))
    causes = [a.labels["cause"] for a in sent if a.labels.get(ROLE) == CAUSE]
    uncaused = [a.labels["symptom"] for a in sent if a.labels.get("alertname") == "HavenSymptom"
                and not a.labels.get("cause")]  # fmt: skip
    symptoms = []
    for record in sorted(records, key=lambda r: r.symptom.at):
        root = root_of(record)
        symptoms.append({"id": record.id, "at": record.symptom.at, "what": record.symptom.what,
                         "root": root.node if root else "", "summary": record.diagnosis.summary
                         if record.diagnosis else ""})  # fmt: skip
    return {
        "incidents": len(causes) + len(uncaused) + len(alerts),
        "root_causes": causes,
        "symptoms_without_cause": uncaused,
        "haven_alerts": [f"{a.kind.value} {a.host or ''}: {a.message}" for a in alerts],
        "symptoms": symptoms,
        "canary_boots": dict(collections.Counter(str(r.outcome) for r in runs)),
        "probes": dict(collections.Counter(f"{p['name']} {'ok' if p['ok'] else 'failed'}" for p in probes)),
    }


def show_control(found: dict[str, Any]) -> None:
    load = found["load_1min"]
    print(f"no-fault control: haven serve on the lab for {found['minutes']:g} min, canary every "
          f"{found['canary_interval_s']:g} s, a server list every {found['traffic_every_s']:g} s "
          f"(load {load['min']:.1f} to {load['max']:.1f}, median {load['median']:.1f})")  # fmt: skip
    causes, uncaused = found["root_causes"] or "none", found["symptoms_without_cause"] or "none"
    print(f"  incidents: {found['incidents']} (root causes {causes}; symptoms without a cause {uncaused}; "
          f"haven's alerts {len(found['haven_alerts'])})")  # fmt: skip
    print(f"  symptoms recorded: {len(found['symptoms'])}")
    for s in found["symptoms"]:
        at = time.strftime("%H:%M:%S", time.localtime(s["at"]))
        print(f"    {at} {s['id']}: {s['summary'] or s['what']}")
    for alert in found["haven_alerts"]:
        print(f"    haven alert: {alert}")
    print(f"  canary boots {found['canary_boots']}; probes {found['probes']}; "
          f"server lists {found['server_lists']}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="a running lab (default: start one)")
    parser.add_argument(
        "--repeat", "--runs", dest="runs", type=int, default=1,
        help="injections of each fault (default 1), in as many rounds, each round in its own order",
    )  # fmt: skip
    parser.add_argument(
        "--control", type=int, default=0,
        help="no-fault control periods (nothing injected, as long as an injection), spread over the rounds",
    )  # fmt: skip
    parser.add_argument(
        "--jitter", type=float, default=5.0,
        help="with --seed: each injection lasts 0 to this many s more before its canary round (default 5)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=int, help="shuffle the order with this seed (default: catalogue order)"
    )
    parser.add_argument("--only", help="comma-separated fault names")
    parser.add_argument("--boot-timeout", type=float, default=40.0)
    parser.add_argument("--request-timeout", type=float, default=10.0, help="each OpenStack request")
    parser.add_argument(
        "--endpoint-timeout", type=float, default=3.0, help="each catalog endpoint's version document"
    )
    parser.add_argument("--round-timeout", type=float, default=240.0, help="one canary round")
    parser.add_argument("--whole-timeout", type=float, default=240.0, help="the lab proven whole")
    parser.add_argument(
        "--out", type=Path, help="also write the JSON report here after each fault (gzipped: a name in .gz)"
    )
    parser.add_argument(
        "--append", action="store_true",
        help="keep the injections already in --out and add this run's rounds after them (a later session "
        "adding rounds to one report; use another --seed)",
    )  # fmt: skip
    parser.add_argument(
        "--until", metavar="HH:MM", type=lambda text: until_utc(text, time.time()),
        help="start no injection after this time (UTC): the bench ends with the last one healed",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="the catalogue, then exit")
    parser.add_argument(
        "--controlplane", action="store_true",
        help="also run haven's control-plane reconciler over the lab, observe-only (SQL, AMQP, Keystone)",
    )  # fmt: skip
    parser.add_argument(
        "--replay", type=Path,
        help="no lab: rank again, with this code, the evidence recorded in an --out report, every method",
    )  # fmt: skip
    parser.add_argument(
        "--control-minutes", type=float, default=0.0, metavar="N",
        help="instead of injections: haven serve on the lab (--folder) with its canary and API traffic for N "
        "minutes, nothing injected; count what it raised",
    )  # fmt: skip
    parser.add_argument("--control-interval", type=float, default=60.0, metavar="S",
                        help="with --control-minutes: a canary round every S s (default 60)")  # fmt: skip
    parser.add_argument("--control-traffic", type=float, default=10.0, metavar="S",
                        help="with --control-minutes: a server list every S s (default 10)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.runs < 1 or args.control < 0 or args.jitter < 0:
        parser.error("--repeat must be at least 1, --control and --jitter at least 0")
    if args.list:
        for fault in CATALOG:
            print(f"{fault.name:<20} {fault.kind:<9} {fault.root:<16} {fault.what}")
        return
    if args.control_minutes:
        if args.folder is None or args.control_interval < 1 or args.control_traffic <= 0:
            parser.error("--control-minutes needs --folder (a running lab), --control-interval >= 1 and "
                         "--control-traffic > 0")  # fmt: skip
        with a_lab(args.folder) as state:
            found = control_period(state, args.control_minutes, args.control_interval, args.control_traffic)
        if args.out:
            write_report(args.out, found)
        if args.json:
            print(json.dumps(found, indent=2))
        else:
            show_control(found)
        return
    started = time.monotonic()
    found = replay(args.replay) if args.replay else asyncio.run(main_async(args))
    found["wall_s"] = round(time.monotonic() - started, 1)
    if args.out and args.replay:
        write_report(args.out, found)
    if args.json:
        print(json.dumps(found, indent=2))
        return
    show(found)


def recorded(path: Path | None, what: str = "--append") -> list[Result]:
    """The injections an ``--out`` report holds, as they were recorded (nothing ranked again); none when
    the file does not exist yet (``--append`` to a new report starts it)."""
    if path is None:
        raise SystemExit(f"{what} needs --out REPORT")
    if what == "--append" and not path.exists():
        return []
    try:
        rows = read_report(path)["results"]
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise SystemExit(f"{what} {path}: not a bench/explain.py report ({exc})") from None
    names = {f.name for f in dataclasses.fields(Result)}
    return [Result(**{k: v for k, v in row.items() if k in names}) for row in rows]


def until_utc(text: str, now: float) -> float:
    """``HH:MM`` (UTC) as the next such time from ``now`` (epoch seconds)."""
    try:
        hours, minutes = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HH:MM (UTC)") from None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise argparse.ArgumentTypeError(f"{text!r} is not HH:MM (UTC)")
    day = now - now % 86400
    at = day + hours * 3600 + minutes * 60
    return at if at > now else at + 86400


def replay(path: Path) -> dict[str, Any]:
    """A recorded report ranked again from its kept evidence (no lab): each result's ``ranked`` is what
    this code's ranker says now; ``explained_after_s`` and the canary's outcome are the recording's."""
    results = []
    for result in recorded(path, "--replay"):
        if result.inputs is not None:
            result.methods = rank_all(result.inputs)
            result.ranked = result.methods["haven"]
        if result.supposed_inputs is not None:
            result.supposed = rank_all(result.supposed_inputs)
        results.append(result)
    return report(results)


def _figure(f: dict[str, Any]) -> str:
    if not f["n"]:
        return "-"
    low, high = f["ci95"]
    return f"{f['hits']}/{f['n']} = {f['rate']:.2f} [{low:.2f}-{high:.2f}]"


def show(found: dict[str, Any]) -> None:
    head = f"{'fault':<20} {'rnd':>3} {'root cause':<15} {'canary':<28} {'top 3':<44} {'@1':>2} {'@3':>2}"
    print(f"{head} {'expl.':>6}  miss")
    for r in found["results"]:
        after = "-" if r["explained_after_s"] is None else f"{r['explained_after_s']:.1f}"
        top = ",".join(r["ranked"][:3]) or "-"
        marks = (
            "    "
            if r["fault"] == NO_FAULT.name
            else f"{'y' if r['top1'] else '-':>2} {'y' if r['top3'] else '-':>2}"
        )
        print(
            f"{r['fault']:<20} {r.get('round', 1):>3} {r['root'] or '-':<15} {r['canary'][:28]:<28} "
            f"{top[:44]:<44} {marks} {after:>6}  {r['reason']}"
        )
    print(
        "\nper fault: haven's AC@1 and AC@3 as hits/judged = rate [95 % Wilson interval]; the baselines' AC@1"
    )
    for name, f in found.get("per_fault", {}).items():
        ours = f["methods"]["haven"]
        others = ", ".join(
            f"{m} {x['ac1']['hits']}/{x['ac1']['n']}" for m, x in f["methods"].items() if m != "haven"
        )
        print(f"  {name:<20} AC@1 {_figure(ours['ac1']):<26} AC@3 {_figure(ours['ac3']):<26} {others}")
    median = found["explained_after_s_median"]
    print(
        f"\noverall: {found['faults']} faults, {found['injections']} injections ({found['judged']} judged), "
        f"median symptom→explanation {'-' if median is None else f'{median:.1f} s'}, "
        f"not healed {found['not_healed'] or 'none'}, skipped {found.get('skipped') or 'none'}, "
        f"{found['wall_s']} s"
    )
    for name, figures in found.get("methods", {}).items():
        print(f"  {name:<7} AC@1 {_figure(figures['ac1'])}, AC@3 {_figure(figures['ac3'])} (same evidence)")
    control = found.get("control")
    if control and control["periods"]:
        print(
            f"no-fault control: {control['periods']} periods, with an alarm {_figure(control['alarmed'])}, "
            f"a false alarm (an alarm haven blamed on a cause) {_figure(control['false_alarms'])}; "
            f"a boot failure supposed at each period's end blamed on something by:"
        )
        for name, figures in control["supposed_blames"].items():
            print(f"  {name:<7} {_figure(figures)}  top 1: {control['supposed_top1'][name]}")


if __name__ == "__main__":
    main()
