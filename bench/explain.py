"""A fault catalogue on the real lab: canaries fail, the explainer ranks causes, AC@1 / AC@3.

Each fault is one an operator meets, with its true root cause a node of haven.topology: a control-plane
service hung (SIGSTOP of the lab's process group of that service, SIGCONT to heal) or killed (SIGKILL
of the group; healed by starting it again with the command line, environment and folder its process had,
and the lab's state file updated so ``haven lab down`` still stops it), the computes' nova-compute held
down or hung, the compute hosts powered off through their Redfish BMCs, Placement's inventory used up,
the canary image deactivated or deleted in Glance, every nova-compute disabled, Keystone slow (SIGSTOP/SIGCONT
cycles), the Neutron API hung. Faults whose evidence haven cannot see are kept in the catalogue and come
out as misses with their reason.

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
(it acts on nothing: the bench heals), with the lab's processes as its units (the lab has no systemd:
``LabUnits`` reads each process record) and three service probes: an SQL query on MariaDB, an AMQP round
trip on RabbitMQ, a Keystone token issued and validated; what it sees change is kept as evidence
(haven.evidence.controlplane).

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

Run: .venv/bin/python bench/explain.py [--folder LAB] [--repeat 1] [--control 0] [--seed N] [--jitter 5]
     [--only glance-hung,...] [--boot-timeout 40] [--controlplane] [--json] [--list] [--out REPORT]
     [--replay REPORT]
Without --folder it starts a lab (haven.lab.lab.up, 2 computes) in a temporary folder and stops it at
the end (about 5-7 minutes on a loaded 2-core machine), then about 1-2 minutes per injection.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import openstack
from openstack.connection import Connection

from haven.canary.model import CanarySettings, Outcome
from haven.canary.runner import CanaryRunner, Round
from haven.cloud.openstack.canary import open_canary
from haven.cloud.openstack.connection import clouds_yaml_file
from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.reconciler import Reconciler
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Series, Symptom
from haven.diagnosis.baselines import METHODS
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    Controller,
    ControlPlaneSettings,
    DomainName,
    ProbeKind,
    ProbeSpec,
    ServiceName,
    ServiceSpec,
    UnitActive,
    UnitStatus,
)
from haven.domain.errors import NotFound, PermanentError
from haven.domain.ids import HostName
from haven.explain.explainer import Explainer, ExplainSettings, RankInputs, prepare
from haven.lab import glance, lab, labfiles
from haven.lab.bmc import BmcInfo, power_state, set_power
from haven.lab.hardware import hang_host, hold_compute_down, read_holds
from haven.lab.state import LabState, ProcessRecord, alive, load_state, record, start_time
from haven.store import Store
from haven.topology import SERVER_BOOT, openstack_topology

Heal = Callable[[], None]


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# ---- the lab's handles ----------------------------------------------------------------------------


class LabHandle:
    """The lab's folder, state and an admin connection (Placement, Glance, quotas) for injections."""

    def __init__(self, state: LabState) -> None:
        self.state = state
        self.folder = Path(state.folder)
        with clouds_yaml_file(Path(state.files["clouds.yaml"])):
            self.conn: Connection = openstack.connect(cloud="lab", api_timeout=15.0)

    def entry(self, name: str) -> ProcessRecord:
        state = load_state(self.folder) or self.state
        found = [e for e in state.processes if e.name == name]
        if not found:
            raise RuntimeError(f"the lab runs no {name!r} process")
        return found[-1]

    def replace_entry(self, old: ProcessRecord, new: ProcessRecord) -> None:
        state = load_state(self.folder) or self.state
        state.processes = [new if e == old else e for e in state.processes]
        state.save()
        self.state = state

    def bmcs(self) -> list[BmcInfo]:
        return [BmcInfo(**info) for info in self.state.bmcs.values()]

    def bmc_password(self) -> str:
        return Path(self.state.files["bmc-password"]).read_text().strip()

    def whole(self) -> list[str]:
        """What is not whole: lab processes gone, computes not running, holds left, hosts off."""
        wrong = [f"{e.name} not running" for e in (load_state(self.folder) or self.state).processes
                 if not alive(e)]  # fmt: skip
        pids = labfiles.compute_pids(self.folder)
        wrong += [f"nova-compute of {h} not running" for h in self.state.computes if not pids.get(h)]
        wrong += [f"{h} held: {', '.join(p)}" for h, p in read_holds(self.folder).items()]
        password = self.bmc_password()
        wrong += [f"{b.host} powered {power_state(b, password)}" for b in self.bmcs()
                  if power_state(b, password) != "On"]  # fmt: skip
        return wrong


# ---- the control plane, observe-only (--controlplane) ----------------------------------------------


class LabUnits:
    """The lab's processes as the reconciler's units: a unit is a process record's name, active while its
    pid lives (a SIGSTOPped one too: systemd would say so), its invocation its pid and kernel start."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        stat = Path("/proc/stat").read_text().split()
        self._boot = float(stat[stat.index("btime") + 1])
        self._tick = os.sysconf("SC_CLK_TCK")

    async def status(self, unit: str) -> UnitStatus:
        state = load_state(self.folder)
        found = [e for e in (state.processes if state else []) if e.name == unit]
        if not found:
            raise NotFound(f"the lab runs no {unit}")
        entry = found[-1]
        invocation = f"{entry.pid}:{entry.started}"
        if start_time(entry.pid) != entry.started:
            return UnitStatus(UnitActive.FAILED, "dead", invocation_id=invocation)
        since = self._boot + entry.started / self._tick
        return UnitStatus(UnitActive.ACTIVE, "running", invocation_id=invocation, active_since=since)

    async def start(self, unit: str) -> None:
        raise PermanentError("the bench heals the lab, haven does not")

    stop = restart = start


def lab_control_plane(state: LabState) -> tuple[ControlPlaneConfig, dict[str, str]]:
    """The lab's services as [controlplane] would declare them (one controller), and the probes' secrets."""
    conf = (Path(state.folder) / "nova" / "nova.conf").read_text()
    db = re.search(r"^connection = mysql\+pymysql://(\w+):(\w+)@[\d.]+:(\d+)/nova\?", conf, re.M)
    mq = re.search(r"^transport_url = rabbit://(\w+):(\w+)@[\d.]+:(\d+)/", conf, re.M)
    clouds = json.loads(Path(state.files["clouds.yaml"]).read_text())["clouds"]["lab"]["auth"]
    if db is None or mq is None:
        raise SystemExit("--controlplane: the lab's nova.conf names no database or transport_url")
    keystone_port = int(clouds["auth_url"].rsplit(":", 1)[1].split("/")[0])

    def probe(
        kind: ProbeKind, port: int, user: str, env: str, project: str = "", timeout_s: float = 2.0
    ) -> ProbeSpec:
        return ProbeSpec(kind, port, user=user, password_env=env, project=project, timeout_s=timeout_s,
                         period_s=2.0, startup_grace_s=10.0)  # fmt: skip

    def spec(name: str, unit: str, probe_: ProbeSpec | None = None) -> ServiceSpec:
        catalogued = CATALOGUE[ServiceName(name)]
        return ServiceSpec(ServiceName(name), unit, 1, probe=probe_, depends_on=catalogued.depends_on)

    services = (
        spec("mariadb", "mariadb", probe(ProbeKind.SQL, int(db[3]), db[1], "LAB_DB_PW", "nova")),
        spec("rabbitmq", "rabbitmq-server", probe(ProbeKind.AMQP, int(mq[3]), mq[1], "LAB_MQ_PW")),
        # A token issued and validated takes up to 6 s on the loaded 2-core lab: the canary's own 10 s.
        spec("keystone", "keystone", probe(ProbeKind.KEYSTONE, keystone_port, clouds["username"],
                                           "LAB_KS_PW", clouds["project_name"], timeout_s=10.0)),
        *(spec(n, n) for n in ("nova-api", "nova-conductor", "nova-scheduler", "placement-api",
                               "glance-api")),
    )  # fmt: skip
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=1.0),
        (Controller(HostName("lab"), DomainName("lab"), "127.0.0.1"),),
        services,
    )
    return config, {"LAB_DB_PW": db[2], "LAB_MQ_PW": mq[2], "LAB_KS_PW": clouds["password"]}


@contextlib.asynccontextmanager
async def observing(state: LabState, store: Store, on: bool) -> Any:
    """The reconciler over the lab, observe-only (its leader epoch is None: it plans, never acts)."""
    if not on:
        yield
        return
    config, secrets = lab_control_plane(state)
    prober = NetworkProber(environ=secrets)
    units = {HostName("lab"): LabUnits(Path(state.folder))}
    reconciler = Reconciler(config, units, None, prober, store, RealClock(), leader_epoch=lambda: None)
    task = asyncio.create_task(reconciler.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await prober.close()


# ---- faults -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    name: str
    root: str  # the true root cause: a node of haven.topology
    what: str
    inject: Callable[[LabHandle], Heal]
    settle_s: float = 0.0  # how long the fault lasts before the canary round


def hung(process: str) -> Callable[[LabHandle], Heal]:
    def inject(handle: LabHandle) -> Heal:
        group = handle.entry(process).pid  # every lab service runs in its own session: pid = group
        os.killpg(group, signal.SIGSTOP)
        return lambda: os.killpg(group, signal.SIGCONT)

    return inject


def _process_image(pid: int) -> tuple[list[str], dict[str, str], str]:
    """The command line, environment and folder ``pid`` was started with, to start it again.

    Servers that retitle themselves are read back: oslo.service's ``nova-conductor: master process
    [ARGV]`` holds its argv; gunicorn's ``gunicorn: master [gunicorn]`` was started as the gunicorn of
    the venv its Python modules are loaded from (haven.lab.wsgi starts it with no arguments).
    """
    proc = Path(f"/proc/{pid}")
    argv = [a.decode() for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
    env = dict(
        item.decode().split("=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item
    )
    title = argv[0] if len(argv) == 1 else ""
    if ": master process [" in title:
        argv = title.split("[", 1)[1].rstrip("]").split()
    elif title.startswith("gunicorn: master"):
        maps = (proc / "maps").read_text()
        venvs = {line.split()[-1].split("/lib/python")[0] for line in maps.splitlines()
                 if "/site-packages/" in line}  # fmt: skip
        gunicorns = sorted(v + "/bin/gunicorn" for v in venvs if Path(v, "bin", "gunicorn").exists())
        if len(gunicorns) != 1:
            raise RuntimeError(f"cannot tell which gunicorn runs {pid}: {gunicorns}")
        argv = gunicorns
    cwd = os.readlink(proc / "cwd")
    if not env:  # retitled over its environment too: the lab gave it only its config dir (wsgi.serve)
        served = Path(cwd, "gunicorn.conf.py").exists()
        env = {**os.environ, **(_config_dir(Path(cwd)) if served else {})}
    if not Path(argv[0]).exists():
        raise RuntimeError(f"cannot start {pid} again: {argv[0]!r} is no file")
    return argv, env, cwd


def _config_dir(serving: Path) -> dict[str, str]:
    """The OS_<PROJECT>_CONFIG_DIR a WSGI app served from ``serving`` reads (haven.lab.wsgi.serve)."""
    conf = (serving / "gunicorn.conf.py").read_text()
    project = conf.split('wsgi_app = "', 1)[1].split(".", 1)[0]  # "glance.wsgi.api:application"
    folder = next(f for f in (serving, serving.parent) if list(f.glob(f"{project}*.conf")))
    return {f"OS_{project.upper()}_CONFIG_DIR": str(folder)}


def killed(process: str) -> Callable[[LabHandle], Heal]:
    """SIGKILL the service's process group; heal: start it again as the lab had started it."""

    def inject(handle: LabHandle) -> Heal:
        entry = handle.entry(process)
        argv, env, cwd = _process_image(entry.pid)
        os.killpg(entry.pid, signal.SIGKILL)

        def heal() -> None:
            deadline = time.monotonic() + 10.0
            while alive(entry) and time.monotonic() < deadline:
                time.sleep(0.1)
            with open(entry.log, "ab") as out:
                started = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                           start_new_session=True)  # fmt: skip
            handle.replace_entry(entry, record(entry.name, started.pid, Path(entry.log)))

        return heal

    return inject


def computes(action: Callable[[Path, str, bool], None]) -> Callable[[LabHandle], Heal]:
    def inject(handle: LabHandle) -> Heal:
        for host in handle.state.computes:
            action(handle.folder, host, True)

        def heal() -> None:
            for host in handle.state.computes:
                action(handle.folder, host, False)

        return heal

    return inject


def powered_off(handle: LabHandle) -> Heal:
    password = handle.bmc_password()
    for bmc in handle.bmcs():
        set_power(bmc, password, "ForceOff")

    def heal() -> None:
        for bmc in handle.bmcs():
            set_power(bmc, password, "On")

    return heal


_PLACEMENT_MV = "1.26"  # reserved may equal total from 1.26 on


def placement_full(handle: LabHandle) -> Heal:
    """Every compute's memory inventory reserved whole: Placement has no room for any server."""
    placement = handle.conn.placement
    kept: dict[str, dict[str, Any]] = {}
    providers = placement.get("/resource_providers").json()["resource_providers"]
    for rp in providers:
        path = f"/resource_providers/{rp['uuid']}/inventories/MEMORY_MB"
        answer = placement.get(path)
        if answer.status_code != 200:
            continue
        inventory = answer.json()
        kept[path] = inventory
        body = {**inventory, "reserved": inventory["total"]}
        placement.put(path, json=body, microversion=_PLACEMENT_MV).raise_for_status()

    def heal() -> None:
        for path, inventory in kept.items():
            now = placement.get(path).json()
            body = {**inventory, "resource_provider_generation": now["resource_provider_generation"]}
            placement.put(path, json=body, microversion=_PLACEMENT_MV).raise_for_status()

    return heal


def image_deactivated(handle: LabHandle) -> Heal:
    image = handle.conn.image
    path = f"/images/{handle.state.image_id}/actions"
    image.post(f"{path}/deactivate").raise_for_status()

    def heal() -> None:
        image.post(f"{path}/reactivate").raise_for_status()

    return heal


def computes_disabled(handle: LabHandle) -> Heal:
    """Every nova-compute service disabled in Nova (a maintenance never ended): no host to schedule on."""
    compute = handle.conn.compute
    services = compute.get("/os-services", params={"binary": "nova-compute"}, microversion="2.53")
    ids = [str(s["id"]) for s in services.json()["services"]]
    for service_id in ids:
        body = {"status": "disabled", "disabled_reason": "bench: maintenance never ended"}
        compute.put(f"/os-services/{service_id}", json=body, microversion="2.53").raise_for_status()

    def heal() -> None:
        for service_id in ids:
            body = {"status": "enabled"}
            compute.put(f"/os-services/{service_id}", json=body, microversion="2.53").raise_for_status()

    return heal


def image_deleted(handle: LabHandle) -> Heal:
    """The canary image deleted from Glance; heal: the lab's tiny image uploaded again (a new id)."""
    image = handle.conn.image
    image.delete(f"/images/{handle.state.image_id}").raise_for_status()

    def heal() -> None:
        new_id = glance.ensure_tiny_image(handle.conn.session, handle.state.urls["image"])
        state = load_state(handle.folder) or handle.state
        state.image_id = new_id
        state.save()
        handle.state = state

    return heal


def slow(process: str, stopped_s: float = 4.0, running_s: float = 0.5) -> Callable[[LabHandle], Heal]:
    """The service frozen ``stopped_s`` then running ``running_s``, over and over: slow, not dead."""

    def inject(handle: LabHandle) -> Heal:
        group = handle.entry(process).pid
        done = threading.Event()

        def cycle() -> None:
            while not done.is_set():
                os.killpg(group, signal.SIGSTOP)
                done.wait(stopped_s)
                os.killpg(group, signal.SIGCONT)
                done.wait(running_s)

        worker = threading.Thread(target=cycle, daemon=True)
        worker.start()

        def heal() -> None:
            done.set()
            worker.join(10.0)
            os.killpg(group, signal.SIGCONT)

        return heal

    return inject


_DOWN_S = 12.0  # beyond the lab's service_down_time (10 s): Nova's own list says down
CATALOG: tuple[Fault, ...] = (
    Fault("keystone-hung", "keystone", "Keystone SIGSTOPped", hung("keystone")),
    Fault("keystone-slow", "keystone", "Keystone stopped 4 s / running 0.5 s in turn", slow("keystone")),
    Fault("nova-api-hung", "nova-api", "Nova's API SIGSTOPped", hung("nova-api")),
    Fault("scheduler-hung", "nova-scheduler", "nova-scheduler SIGSTOPped", hung("nova-scheduler"), _DOWN_S),
    Fault("conductor-hung", "nova-conductor", "nova-conductor SIGSTOPped", hung("nova-conductor"), _DOWN_S),
    Fault("placement-hung", "placement-api", "Placement SIGSTOPped", hung("placement-api")),
    Fault("glance-hung", "glance-api", "Glance SIGSTOPped", hung("glance-api")),
    Fault("neutron-hung", "neutron-server", "the Neutron API SIGSTOPped", hung("network-stub")),
    Fault("database-hung", "mariadb", "MariaDB SIGSTOPped", hung("mariadb")),
    Fault("rabbitmq-hung", "rabbitmq", "RabbitMQ SIGSTOPped", hung("rabbitmq-server"), _DOWN_S),
    Fault("computes-hung", "nova-compute", "every host's nova-compute SIGSTOPped (hang_host)",
          computes(hang_host), _DOWN_S),
    Fault("computes-down", "nova-compute", "every host's nova-compute killed and held down",
          computes(hold_compute_down), _DOWN_S),
    Fault("hosts-powered-off", "nova-compute", "every compute host powered off through its BMC",
          powered_off, _DOWN_S),
    Fault("placement-full", "placement-api", "every compute's MEMORY_MB reserved whole in Placement",
          placement_full),
    Fault("image-deactivated", "glance-api", "the canary image deactivated in Glance", image_deactivated),
    Fault("image-deleted", "glance-api", "the canary image deleted from Glance", image_deleted),
    Fault("computes-disabled", "nova-compute", "every nova-compute service disabled in Nova",
          computes_disabled),
    Fault("keystone-killed", "keystone", "Keystone SIGKILLed", killed("keystone")),
    Fault("nova-api-killed", "nova-api", "Nova's API SIGKILLed", killed("nova-api")),
    Fault("scheduler-killed", "nova-scheduler", "nova-scheduler SIGKILLed", killed("nova-scheduler"),
          _DOWN_S),
    Fault("conductor-killed", "nova-conductor", "nova-conductor SIGKILLed", killed("nova-conductor"),
          _DOWN_S),
    Fault("placement-killed", "placement-api", "Placement SIGKILLed", killed("placement-api")),
    Fault("glance-killed", "glance-api", "Glance SIGKILLed", killed("glance-api")),
    Fault("database-killed", "mariadb", "MariaDB SIGKILLed", killed("mariadb")),
    Fault("rabbitmq-killed", "rabbitmq", "RabbitMQ SIGKILLed", killed("rabbitmq-server"), _DOWN_S),
)  # fmt: skip
FAULTS = {fault.name: fault for fault in CATALOG}
NO_FAULT = Fault(
    "no-fault", "", "nothing injected: a control period as long as an injection", lambda handle: lambda: None,
    _DOWN_S,
)  # fmt: skip


# ---- one injection ------------------------------------------------------------------------------------


@dataclass
class Result:
    fault: str
    root: str
    status: str = "run"  # run | skipped (lab not whole) | error (the injection itself failed)
    canary: str = ""  # the canary's outcome under the fault, and the probes that failed
    symptom: str = ""  # the record judged
    ranked: list[str] = field(default_factory=list)
    explained_after_s: float | None = None
    summary: str = ""
    healed: bool = True
    notes: list[str] = field(default_factory=list)
    # every method's ranking of the same evidence (haven.diagnosis.baselines), and that evidence
    methods: dict[str, list[str]] = field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    round: int = 1  # which repeat (--repeat): every fault once per round, each round in its own order
    seed: int | None = None  # this injection's own seed (its settle jitter)
    settle_s: float = 0.0  # how long the fault lasted before the canary round (the fault's + jitter)
    # A no-fault control period (nothing injected): every symptom it raised (an alarm), and each method's
    # ranking of a boot failure supposed at its end (what each would blame on the evidence then held).
    alarms: list[str] = field(default_factory=list)
    blamed: list[str] = field(default_factory=list)  # haven's top cause of each alarm (none: "")
    supposed: dict[str, list[str]] = field(default_factory=dict)
    supposed_inputs: dict[str, Any] | None = None

    @property
    def control(self) -> bool:
        return self.fault == NO_FAULT.name

    @property
    def top1(self) -> bool:
        return bool(self.ranked) and self.ranked[0] == self.root

    @property
    def top3(self) -> bool:
        return self.root in self.ranked[:3]

    @property
    def reason(self) -> str:
        if self.control:
            said = [f"{a} blamed {b or 'nothing'}" for a, b in zip(self.alarms, self.blamed, strict=True)]
            return f"false alarm: {'; '.join(said)}" if said else ""
        if self.top1:
            return ""
        if self.status != "run":
            return "; ".join(self.notes) or self.status
        if not self.symptom:
            return "no symptom: the canary saw nothing fail"
        if not self.ranked:
            return "nothing ranked: no evidence on any candidate"
        return f"ranked {', '.join(self.ranked[:3])} first"


def inputs_json(symptom: Symptom, found: RankInputs) -> dict[str, Any]:
    """One symptom's ranker input as JSON (kept in the report, read back by ``--replay``)."""
    graph = found.graph
    return {
        "symptom": dataclasses.asdict(symptom),
        "graph": {"depends_on": {k: list(v) for k, v in graph.depends_on.items()},
                  "labels": dict(graph.labels), "phases": {k: list(v) for k, v in graph.phases.items()},
                  "leaves": {k: list(v) for k, v in graph.leaves.items()}},
        "events": [{**dataclasses.asdict(e), "kind": e.kind.value} for e in found.events],
        "series": [{**dataclasses.asdict(s), "points": [list(p) for p in s.points]} for s in found.series],
    }  # fmt: skip


def inputs_from_json(data: dict[str, Any]) -> tuple[Graph, Symptom, list[Series], list[NodeEvent]]:
    kept = data["graph"]
    graph = Graph(kept["depends_on"], kept["labels"], kept["phases"], kept.get("leaves", {}))
    events = [NodeEvent(e["node"], EvidenceKind(e["kind"]), e["at"], e["detail"], e["scope"])
              for e in data["events"]]  # fmt: skip
    series = [Series(s["node"], s["metric"], tuple((p[0], p[1]) for p in s["points"]), s["unit"])
              for s in data["series"]]  # fmt: skip
    return graph, Symptom(**data["symptom"]), series, events


def rank_all(data: dict[str, Any]) -> dict[str, list[str]]:
    """Every method's ranking (haven's first) of one recorded input."""
    graph, symptom, series, events = inputs_from_json(data)
    graph, events = prepare(graph, events)  # this code's own preparation (a recording's is kept as it was)
    settings = ExplainSettings().rank  # the explainer's own
    return {name: method(graph, symptom, series, events, settings) for name, method in METHODS.items()}


class RecordingExplainer(Explainer):
    """The explainer, keeping each symptom's ranker input as it read it (before the ranking)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inputs: dict[str, dict[str, Any]] = {}

    async def gather(self, record: ExplanationRecord) -> RankInputs:
        found = await super().gather(record)
        self.inputs[record.id] = inputs_json(record.symptom, found)
        return found


class Bench:
    def __init__(self, handle: LabHandle, store: Store, args: argparse.Namespace) -> None:
        self.handle = handle
        self.store = store
        self.args = args
        self.clock = RealClock()
        self.explainer = RecordingExplainer(store, openstack_topology(CATALOGUE.values()), self.clock)
        self.settings = CanarySettings(
            flavor=handle.state.flavor, image=handle.state.image_id, poll_s=0.5,
            boot_timeout_s=args.boot_timeout, delete_timeout_s=30.0, endpoint_timeout_s=args.endpoint_timeout,
            slow_s=args.boot_timeout,
        )  # fmt: skip
        self.symptoms: list[ExplanationRecord] = []
        self.proven = False  # the last fault's heal was proven whole by a passing canary round

    async def _explain(self, record: ExplanationRecord) -> ExplanationRecord:
        self.symptoms.append(record)
        return await self.explainer.open_and_explain(record)

    async def round(self) -> Round:
        """One canary round on a fresh connection (a hung API's sockets die with it), bounded."""
        cloud = open_canary("lab", clouds_yaml=Path(self.handle.state.files["clouds.yaml"]),
                            timeout_s=self.args.request_timeout)  # fmt: skip
        try:
            settings = dataclasses.replace(self.settings, image=self.handle.state.image_id)  # a new one
            runner = CanaryRunner(cloud, self.store, self.clock, settings, self._explain)
            return await asyncio.wait_for(runner.round(), self.args.round_timeout)
        finally:
            cloud.close()

    async def prove_whole(self) -> list[str]:
        """Within --whole-timeout: every lab process alive, no hold, all probes and boots passing."""
        deadline = time.monotonic() + self.args.whole_timeout
        wrong: list[str] = []
        while time.monotonic() < deadline:
            wrong = await asyncio.to_thread(self.handle.whole)
            if not wrong:
                try:
                    found = await self.round()
                except (TimeoutError, Exception) as exc:  # a round that fails is not whole: wait on
                    wrong = [f"canary round: {type(exc).__name__} {exc}"]
                else:
                    if found.runs and found.ok:
                        return []
                    wrong = [f"probe {p.name} failed" for p in found.probes if not p.ok] + [
                        f"canary {r.outcome}: {r.error}" for r in found.runs if r.outcome is not Outcome.OK
                    ] or ["no canary boot ran"]
            await asyncio.sleep(5.0)
        return wrong

    async def inject(self, fault: Fault, round_: int = 1, seed: int | None = None) -> Result:
        """One injection (or, for NO_FAULT, one control period); ``seed`` jitters how long the fault lasts
        before the canary round (0 to --jitter s more), so the repeats of a fault differ in timing too."""
        jitter = random.Random(seed).uniform(0.0, self.args.jitter) if seed is not None else 0.0
        result = Result(
            fault.name, fault.root, round=round_, seed=seed, settle_s=round(fault.settle_s + jitter, 2)
        )
        self.symptoms = []
        # The previous fault's heal was just proven by a whole canary round: its processes, holds and
        # BMCs are checked again (cheap), not a second round.
        proven, self.proven = self.proven, False
        wrong = await asyncio.to_thread(self.handle.whole) if proven else await self.prove_whole()
        if wrong:
            result.status = "skipped"
            result.notes.append(f"lab not whole before it: {'; '.join(wrong[:3])}")
            return result
        heal: Heal | None = None
        try:
            heal = await asyncio.to_thread(fault.inject, self.handle)
            say(f"{fault.name}: injected ({fault.what}); round in {result.settle_s:g} s")
            await asyncio.sleep(result.settle_s)
            try:
                found = await self.round()
            except TimeoutError:
                result.notes.append(f"the canary round took over {self.args.round_timeout:g} s")
                found = None
            self._judge(result, found)
            if fault is NO_FAULT:
                await self._judge_control(result)
        except Exception as exc:  # the injection itself failed: reported, the bench goes on
            result.status = "error"
            result.notes.append(f"{type(exc).__name__}: {exc}")
        finally:
            if heal is not None:
                try:
                    await asyncio.to_thread(heal)
                except Exception as exc:
                    result.notes.append(f"heal failed: {type(exc).__name__}: {exc}")
            wrong = await self.prove_whole()
            self.proven = not wrong
            if wrong:
                result.healed = False
                result.notes.append(
                    f"not healed within {self.args.whole_timeout:g} s: {'; '.join(wrong[:3])}"
                )
        say(f"{fault.name}: canary {result.canary}; judged {result.symptom or '-'}; ranked "
            f"{result.ranked[:3]}; {result.summary}; {'; '.join(result.notes)}")  # fmt: skip
        return result

    async def _judge_control(self, result: Result) -> None:
        """A control period: each symptom raised is an alarm, with haven's top cause of it (a false alarm
        names one); and a boot failure supposed now (no phase: no narrowing) ranked by every method on the
        evidence held now, to see what each would blame when nothing is wrong."""
        for found in sorted(self.symptoms, key=lambda s: s.symptom.at):
            record = self.store.get_explanation(found.id)
            ranked = [e.node for e in record.diagnosis.explanations] if record.diagnosis else []
            result.alarms.append(record.source)
            result.blamed.append(ranked[0] if ranked else "")
        now = self.clock.now()
        symptom = Symptom(SERVER_BOOT, now, "boot failed (supposed)", None)
        supposed = ExplanationRecord(f"supposed:{now}", "supposed", SERVER_BOOT, symptom, now)
        result.supposed_inputs = inputs_json(symptom, await self.explainer.gather(supposed))
        result.supposed = rank_all(result.supposed_inputs)

    def _judge(self, result: Result, found: Round | None) -> None:
        if found is not None:
            failed_probes = [p.name for p in found.probes if not p.ok]
            outcomes = [str(r.outcome) for r in found.runs] or ["no boot"]
            result.canary = ",".join(outcomes) + (
                f" (failed: {','.join(failed_probes)})" if failed_probes else ""
            )
        boots = [s for s in self.symptoms if s.source == "canary"]
        probes = sorted(
            (s for s in self.symptoms if s.source.startswith("probe:")), key=lambda s: s.symptom.at
        )
        if not boots and not probes:
            return
        chosen = (boots or probes)[0]
        record = self.store.get_explanation(chosen.id)
        result.symptom = record.source
        if record.diagnosis is not None and record.explained_at is not None:
            result.ranked = [e.node for e in record.diagnosis.explanations]
            result.explained_after_s = round(record.explained_at - record.symptom.at, 2)
            result.summary = record.diagnosis.summary
        result.inputs = self.explainer.inputs.get(record.id)
        if result.inputs is not None:
            result.methods = rank_all(result.inputs)


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


def plan(names: list[str], runs: int, controls: int, seed: int | None) -> list[tuple[int, str, int | None]]:
    """The injections in order, as (round, fault, its own seed): ``runs`` rounds, each every fault once
    (stopped early, every fault has run as often, give or take one), with ``controls`` no-fault periods
    spread over the rounds; with ``seed``, each round in its own shuffled order and each injection its
    own seed (its settle jitter), so the repeats of a fault differ in order, timing and what ran before."""
    rng = random.Random(seed)
    order: list[tuple[int, str, int | None]] = []
    for round_ in range(1, runs + 1):
        wanted = controls * round_ // runs - controls * (round_ - 1) // runs  # this round's share
        batch = [*names, *[NO_FAULT.name] * wanted]
        if seed is not None:
            rng.shuffle(batch)
        order += [(round_, name, None if seed is None else rng.randrange(2**31)) for name in batch]
    return order


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    names = args.only.split(",") if args.only else [f.name for f in CATALOG]
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown fault(s) {', '.join(unknown)}: known are {', '.join(FAULTS)} (--list)")
    order = plan(names, args.runs, args.control, args.seed)
    results = []
    with (
        a_lab(args.folder) as state,
        tempfile.TemporaryDirectory() as tmp,
        Store.open(f"sqlite:///{tmp}/haven.db") as store,
    ):
        bench = Bench(LabHandle(state), store, args)
        async with observing(state, store, args.controlplane):
            for i, (round_, name, seed) in enumerate(order, 1):
                say(f"[{i}/{len(order)}] round {round_}: {name} (seed {seed})")
                results.append(await bench.inject(FAULTS.get(name, NO_FAULT), round_, seed))
                if args.out:
                    args.out.write_text(json.dumps(report(results), indent=2) + "\n")
    return report(results)


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
    parser.add_argument("--out", type=Path, help="also write the JSON report here after each fault")
    parser.add_argument("--list", action="store_true", help="the catalogue, then exit")
    parser.add_argument(
        "--controlplane", action="store_true",
        help="also run haven's control-plane reconciler over the lab, observe-only (SQL, AMQP, Keystone)",
    )  # fmt: skip
    parser.add_argument(
        "--replay", type=Path,
        help="no lab: rank again, with this code, the evidence recorded in an --out report, every method",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.runs < 1 or args.control < 0 or args.jitter < 0:
        parser.error("--repeat must be at least 1, --control and --jitter at least 0")
    if args.list:
        for fault in CATALOG:
            print(f"{fault.name:<20} {fault.root:<16} {fault.what}")
        return
    started = time.monotonic()
    found = replay(args.replay) if args.replay else asyncio.run(main_async(args))
    found["wall_s"] = round(time.monotonic() - started, 1)
    if args.out and args.replay:
        args.out.write_text(json.dumps(found, indent=2) + "\n")
    if args.json:
        print(json.dumps(found, indent=2))
        return
    show(found)


def replay(path: Path) -> dict[str, Any]:
    """A recorded report ranked again from its kept evidence (no lab): each result's ``ranked`` is what
    this code's ranker says now; ``explained_after_s`` and the canary's outcome are the recording's."""
    try:
        rows = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"--replay {path}: not a bench/explain.py report ({exc})") from None
    names = {f.name for f in dataclasses.fields(Result)}
    results = []
    for row in rows:
        result = Result(**{k: v for k, v in row.items() if k in names})
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
