"""`haven drill fault [NAME] --cloud lab`: one fault of the catalogue injected on the lab, and judged.

Called by haven.cli.main for `haven drill fault`, its options in haven.cli.drill_args. ``--list``
prints the catalogue (haven.cli.fault_catalogue, which haven.cli.main calls without importing this
module and the lab); with a NAME, the fault is injected on the running lab (`haven lab up`) and
judged by haven.drill.faults_run: the lab proven whole, the fault injected, one canary round, the
explanation haven stored for the symptom ranked against the fault's true root cause, the fault healed
and the lab proven whole again. Several names (``a,b``) and ``--repeat N`` run ``N`` rounds, each
every fault once, in the order bench/explain.py uses (haven.drill.faults_run.plan): with several
faults, each round shuffled by ``--seed``. Exit 0 when every top explanation names its root cause and
the lab was healed; 1 otherwise (a miss, a skip, an injection that failed, a lab not healed); 2 for bad
input, checked before anything is changed.

haven.drill never imports haven.lab, so ``LabFaults``, the lab's handles an injection needs (its
process records, its hardware wiring, its BMCs, admin REST calls, its tiny image), lives here.
"""

from __future__ import annotations

import argparse
import asyncio
import configparser
import contextlib
import json
import logging
import re
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from haven.cli.drill_args import FAULT
from haven.cli.fault_catalogue import print_catalogue
from haven.cli.lab_controls import running_lab
from haven.domain.errors import NotFound, PermanentError, UserError
from haven.drill.faults import FAULTS, Fault, LabProcess, fault_named
from haven.drill.faults_network import rules_left
from haven.drill.faults_observe import observing
from haven.drill.faults_run import FaultRun, Result, RunSettings, plan
from haven.lab import glance, hardware
from haven.lab.bmc import BmcInfo, power_state, set_power
from haven.lab.keystone import Account
from haven.lab.labfiles import compute_pids
from haven.lab.state import LabState, ProcessRecord, alive, load_state, record
from haven.store import Store

SCENARIO = FAULT  # its options: haven.cli.drill_args
LAB = "lab"
EXIT_FAILED = 1
_MICROVERSIONS = {"compute": "compute 2.53", "placement": "placement 1.26"}  # 1.26: reserved may be total
_HOLDS = {"hang": hardware.hang_host, "down": hardware.hold_compute_down}


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.scenario != SCENARIO:
        raise UserError(
            f"a second name ({args.fault_name!r}) is only for `haven drill {SCENARIO} NAME`",
            f"run `haven drill {args.scenario}` alone",
        )
    if args.list:
        return print_catalogue(args.json, out)
    faults = _chosen(args)
    state = running_lab(args.lab_folder)
    started = time.monotonic()

    def say(message: str) -> None:
        if not args.json:
            err.print(f"[dim]{time.monotonic() - started:6.1f}s[/] {escape(message)}", highlight=False)

    settings = RunSettings(
        boot_timeout_s=args.boot_timeout, request_timeout_s=args.request_timeout,
        whole_timeout_s=args.whole_timeout,
    )  # fmt: skip
    # bench/explain.py's order: each round every fault once, shuffled by the seed when there are several
    order = plan([f.name for f in faults], args.repeat, 0, args.seed if len(faults) > 1 else None)
    # The report says what was seen; keystoneauth warns of every Keystone a fault made unreachable.
    loggers = [logging.getLogger(name) for name in ("haven", "keystoneauth")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        results = asyncio.run(_inject(LabFaults(state), order, settings, args.controlplane, say))
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    documents = [fault_json(FAULTS[r.fault], r) for r in results]
    if len(order) == 1 and args.json:
        print(json.dumps(documents[0], indent=2))
    elif len(order) == 1:
        _show(out, documents[0])
    elif args.json:
        print(json.dumps(_many_json(order, documents), indent=2))
    else:
        for document in documents:
            _show(out, document)
        out.print(_summary_table(_many_json(order, documents)))
    passed = all(r.top1 and r.healed and r.status == "run" for r in results)
    return 0 if passed and len(results) == len(order) else EXIT_FAILED


def _chosen(args: argparse.Namespace) -> list[Fault]:
    """The faults named (``a,b``), on the lab; every mistake a UserError before anything changes."""
    if not args.fault_name:
        raise UserError(
            f"name the fault to inject: `haven drill {SCENARIO} NAME --cloud lab`",
            f"choose one of: {', '.join(FAULTS)} (`haven drill {SCENARIO} --list` describes them)",
        )
    faults = [fault_named(name.strip()) for name in args.fault_name.split(",") if name.strip()]
    if len({f.name for f in faults}) != len(faults) or not faults:
        raise UserError(f"name each fault once: {args.fault_name!r}", "e.g. keystone-hung,glance-hung")
    if args.repeat < 1:
        raise UserError(f"--repeat must be at least 1, not {args.repeat}", "--repeat 5 runs 5 rounds")
    if args.cloud is None:
        raise UserError(
            f"`haven drill {SCENARIO}` injects real faults into the lab's processes: pass --cloud lab",
            "start the lab first with `haven lab up`",
        )
    if args.cloud != LAB:
        raise UserError(
            f"the fault catalogue runs only on the lab, not on cloud {args.cloud!r}",
            "its faults stop, kill and reconfigure the lab's own processes: use --cloud lab",
        )
    return faults


async def _inject(
    lab: LabFaults,
    order: list[tuple[int, str, int | None]],
    settings: RunSettings,
    controlplane: bool,
    say: Any,
) -> list[Result]:
    """Each injection of ``order`` in turn, on one store (the evidence of one stays for the next)."""
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="haven-fault-drill-") as tmp,
        Store.open(f"sqlite:///{tmp}/haven.db") as store,
    ):
        async with observing(lab, store, controlplane):
            run = FaultRun(lab, store, settings, say)
            for i, (round_, name, seed) in enumerate(order, 1):
                if len(order) > 1:
                    say(f"[{i}/{len(order)}] round {round_}: {name}")
                results.append(await run.inject(FAULTS[name], round_, seed))
    return results


def _many_json(order: list[tuple[int, str, int | None]], documents: list[dict[str, Any]]) -> dict[str, Any]:
    """Several injections: each one's document (with its round), and per fault its top-1 and top-3 hits."""
    per_fault: dict[str, dict[str, Any]] = {}
    for (round_, name, _seed), doc in zip(order, documents, strict=True):
        doc["round"] = round_
        mine = per_fault.setdefault(name, {"injections": 0, "top1": 0, "top3": 0, "misses": []})
        mine["injections"] += 1
        mine["top1"] += doc["top1_correct"]
        mine["top3"] += doc["top3_correct"]
        if not doc["top1_correct"]:
            mine["misses"].append(f"round {round_}: {doc['miss']}")
    return {
        "order": [name for _round, name, _seed in order],
        "injections": documents,
        "per_fault": per_fault,
        "top1_correct": sum(d["top1_correct"] for d in documents),
        "top3_correct": sum(d["top3_correct"] for d in documents),
        "healed": all(d["healed"] for d in documents),
    }


def _summary_table(many: dict[str, Any]) -> Table:
    n = len(many["injections"])
    table = Table(
        title=f"{n} injections: top 1 correct {many['top1_correct']}/{n}, top 3 {many['top3_correct']}/{n}"
    )
    for column in ("fault", "injections", "top 1", "top 3", "misses"):
        table.add_column(column)
    for name, f in many["per_fault"].items():
        table.add_row(
            name, str(f["injections"]), str(f["top1"]), str(f["top3"]), escape("; ".join(f["misses"]))
        )
    return table


def fault_json(fault: Fault, result: Result) -> dict[str, Any]:
    """One injection as `--json` prints it."""
    return {
        "fault": fault.name,
        "kind": fault.kind,
        "what": fault.what,
        "root_cause": fault.root,
        "status": result.status,
        "canary": result.canary,
        "symptom": result.symptom,
        "explanations": result.explanations,
        "ranked": result.ranked,
        "top1_correct": result.top1,
        "top3_correct": result.top3,
        "explained_after_s": result.explained_after_s,
        "summary": result.summary,
        "miss": result.reason,
        "healed": result.healed,
        "notes": result.notes,
        "settle_s": result.settle_s,
        "wall_s": result.wall_s,
    }


def _show(out: Console, doc: dict[str, Any]) -> None:
    def yes(flag: bool) -> str:
        return "[green]yes[/]" if flag else "[red]no[/]"

    after = "-" if doc["explained_after_s"] is None else f"{doc['explained_after_s']:.1f} s"
    out.print(f"[bold]{doc['fault']}[/] ({escape(doc['what'])}): root cause [bold]{doc['root_cause']}[/]")
    out.print(
        f"  canary under the fault: {escape(doc['canary'] or '-')}; symptom judged: {doc['symptom'] or '-'}"
    )
    table = Table(title="haven's explanations, best first")
    for column in ("#", "cause", "score", "evidence"):
        table.add_column(column)
    for i, e in enumerate(doc["explanations"], 1):
        cause = f"[bold]{e['node']}[/]" if e["node"] == doc["root_cause"] else e["node"]
        evidence = "\n".join(f"- {escape(x['text'])}" for x in e["evidence"]) or escape(e["text"])
        table.add_row(str(i), cause, f"{e['score']:.1f}", evidence)
    out.print(table)
    if doc["summary"]:
        out.print(f"  {escape(doc['summary'])}")
    out.print(
        f"  top 1 correct: {yes(doc['top1_correct'])}; top 3 correct: {yes(doc['top3_correct'])}; "
        f"explained {after} after the symptom; healed: {yes(doc['healed'])} ({doc['wall_s']:.0f} s in all)"
    )
    for line in ([doc["miss"]] if doc["miss"] else []) + doc["notes"]:
        out.print(f"  [yellow]{escape(line)}[/]")


class LabFaults:
    """The running lab's handles, as haven.drill.faults.FaultLab: blocking calls, from a worker thread."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        auth = json.loads(Path(state.files["clouds.yaml"]).read_text())["clouds"]["lab"]["auth"]
        account = Account(auth["auth_url"], auth["username"], auth["password"], auth["project_name"])
        self._session = account.session(timeout_s=15.0)
        self._password = Path(state.files["bmc-password"]).read_text().strip()

    @property
    def folder(self) -> Path:
        return Path(self.state.folder)

    @property
    def clouds_yaml(self) -> Path:
        return Path(self.state.files["clouds.yaml"])

    @property
    def computes(self) -> Sequence[str]:
        return list(self.state.computes)

    @property
    def flavor(self) -> str:
        return self.state.flavor

    @property
    def image_id(self) -> str:
        return self.state.image_id

    def _records(self) -> list[ProcessRecord]:
        return (load_state(self.folder) or self.state).processes

    def process(self, name: str) -> LabProcess:
        found = [e for e in self._records() if e.name == name]
        if not found:
            raise NotFound(f"the lab runs no {name!r} process")
        return LabProcess(name, found[-1].pid, found[-1].started, Path(found[-1].log))

    def alive(self, process: LabProcess) -> bool:
        return alive(ProcessRecord(process.name, process.pid, process.started, str(process.log)))

    def restarted(self, old: LabProcess, pid: int) -> None:
        state = load_state(self.folder) or self.state
        new = record(old.name, pid, old.log)
        state.processes = [
            new if (e.name, e.pid, e.started) == (old.name, old.pid, old.started) else e
            for e in state.processes
        ]
        state.save()
        self.state = state

    def hold_computes(self, how: str, held: bool) -> None:
        for host in self.state.computes:
            _HOLDS[how](self.folder, host, held)

    def _bmcs(self) -> list[BmcInfo]:
        return [BmcInfo(**info) for info in self.state.bmcs.values()]

    def power_computes(self, on: bool) -> None:
        for bmc in self._bmcs():
            set_power(bmc, self._password, "On" if on else "ForceOff")

    def call(self, service: str, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        headers = {"OpenStack-API-Version": _MICROVERSIONS[service]} if service in _MICROVERSIONS else {}
        answer = self._session.request(
            self.state.urls[service] + path, method, json=body, headers=headers, raise_exc=False
        )
        if answer.status_code >= 400:
            raise PermanentError(f"{service} {method} {path}: {answer.status_code} {answer.text[:200]}")
        return answer.json() if answer.content else None

    def replace_image(self) -> str:
        new_id = glance.ensure_tiny_image(self._session, self.state.urls["image"])
        state = load_state(self.folder) or self.state
        state.image_id = new_id
        state.save()
        self.state = state
        return new_id

    def port(self, service: str) -> int:
        if service == "database":  # Nova's and Placement's MariaDB, as nova.conf names it
            conf = (self.folder / "nova" / "nova.conf").read_text()
            found = re.search(r"^connection = mysql\+pymysql://[^@]+@127\.0\.0\.1:(\d+)/", conf, re.M)
        else:
            found = re.match(r"https?://127\.0\.0\.1:(\d+)(/|$)", self.state.urls.get(service, ""))
        if found is None:
            raise NotFound(f"the lab serves no {service!r} on a loopback port")
        return int(found[1])

    def image_data(self) -> Path:
        conf = configparser.ConfigParser(interpolation=None)
        conf.read(self.folder / "glance" / "glance-api.conf")
        return Path(conf.get("fs", "filesystem_store_datadir")) / self.image_id

    def whole(self) -> list[str]:
        wrong = [f"{e.name} not running" for e in self._records() if not alive(e)]
        pids = compute_pids(self.folder)
        wrong += [f"nova-compute of {h} not running" for h in self.state.computes if not pids.get(h)]
        wrong += [f"{h} held: {', '.join(p)}" for h, p in hardware.read_holds(self.folder).items()]
        wrong += [f"{e.name} stopped (a hung fault left in place? continue it: kill -CONT -{e.pid})"
                  for e in self._records() if alive(e) and _stopped(e.pid)]  # fmt: skip
        wrong += rules_left(self._ports())
        for bmc in self._bmcs():
            if (power := power_state(bmc, self._password)) != "On":
                wrong.append(f"{bmc.host} powered {power}")
        return wrong

    def _ports(self) -> list[int]:
        """The loopback ports of this lab's services and database (what a network fault acts on)."""
        found = []
        for service in [*self.state.urls, "database"]:
            with contextlib.suppress(NotFound, OSError):
                found.append(self.port(service))
        return found


def _stopped(pid: int) -> bool:
    """Whether the kernel shows ``pid`` stopped (SIGSTOP: state T)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError):
        return False
