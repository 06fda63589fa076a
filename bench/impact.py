"""The measured impact matrix: which user operations stop when one lab service stops, next to haven's.

For each service of the real lab (haven.lab.lab: MariaDB, RabbitMQ, Keystone, Placement, Glance, the
Neutron stand-in, Nova's API, conductor, scheduler and both computes), the script:
1. boots the server a delete will remove, while everything runs;
2. SIGSTOPs that service: exactly its process group(s), found in the lab's own records (lab.json; the
   computes in the power wiring's status.json). A stopped process keeps its port open and answers
   nothing: the hung replica, the harder case for a client's timeouts;
3. runs every user operation at once, each in its own thread with its own short timeout, as a user
   would (openstacksdk with a token taken before the stop, and a fresh token request for
   ``token-issue``): works (within 3 s and 3x its baseline), slow (works, later), fails (an error, or no
   answer within its timeout);
4. SIGCONTs the service and checks the lab is whole again (a token, a server list, both computes up,
   an image list, a Placement query) before the next one.
A baseline pass (nothing stopped) runs first and again at the end. Then it prints the observed matrix,
haven's prediction (haven.topology.impact, every replica of the service lost, over the catalogue with
the lab's own declarations, LAB_DEPENDS_ON; ``--catalogue``: the plain catalogue) and the
disagreements. The raw observations are saved (``--save``) so that ``--compare FILE``
prints the comparison again against the current model without touching a lab.

Run: .venv/bin/python bench/impact.py [--folder LAB] [--save impact.json] [--only keystone,mariadb]
     .venv/bin/python bench/impact.py --compare impact.json [--catalogue] [--markdown]
The saved run of 2026-12-06 is tests/topology/impact_lab_matrix.json (test_impact_matrix.py holds the
model to it).
Without --folder it starts a lab (2 computes) in a temporary folder and stops it at the end. About
1 min per service plus the lab's start on a 2-core machine; run it once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openstack
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from haven.controlplane.catalogue import CATALOGUE
from haven.domain.controlplane import ServiceName, ServiceSpec
from haven.lab import lab
from haven.lab.labfiles import compute_pids
from haven.lab.state import LabState, alive, load_state
from haven.topology import openstack_topology
from haven.topology.impact import Effect, ServiceLoss, impact
from haven.topology.openstack import (
    FLAVOR_LIST,
    HYPERVISOR_LIST,
    IMAGE_LIST,
    IMAGE_UPLOAD,
    PLACEMENT_QUERY,
    SERVER_BOOT,
    SERVER_CONSOLE,
    SERVER_DELETE,
    SERVER_LIST,
    SERVER_SHOW,
    TOKEN_ISSUE,
)

# The lab's process names (lab.json) and the topology's node each one is.
SERVICES = {
    "mariadb": "mariadb",
    "rabbitmq-server": "rabbitmq",
    "keystone": "keystone",
    "placement-api": "placement-api",
    "glance-api": "glance-api",
    "network-stub": "neutron-server",
    "nova-api": "nova-api",
    "nova-conductor": "nova-conductor",
    "nova-scheduler": "nova-scheduler",
    "nova-compute": "nova-compute",  # every compute host's, from the power wiring's records
}
API_TIMEOUT_S = 20.0  # one request (the machine is shared: a healthy lab answers in 0.1-3 s under load)
BOOT_TIMEOUT_S = 60.0  # to ACTIVE
DELETE_TIMEOUT_S = 45.0  # to gone
SLOW_S = 5.0


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    result: str  # "works", "slow", "fails"
    seconds: float
    detail: str = ""


class User:
    """The lab's admin as a client: one openstacksdk connection per operation, each holding a token."""

    def __init__(self, state: LabState) -> None:
        cloud = json.loads(Path(state.files["clouds.yaml"]).read_text())["clouds"]["lab"]
        self.auth = cloud["auth"]
        self.region = cloud["region_name"]
        self.image_id = state.image_id
        self.conns: dict[str, openstack.connection.Connection] = {}
        self.flavor_id = ""
        self.kept: str = ""  # a server for show and console output

    def connect(self) -> openstack.connection.Connection:
        conn = openstack.connection.Connection(
            auth=self.auth, region_name=self.region, identity_api_version="3",
            compute_api_version="2.53", api_timeout=API_TIMEOUT_S,
        )  # fmt: skip
        conn.authorize()
        return conn

    def prepare(self, state: LabState) -> None:
        for name in OPERATIONS:
            self.conns[name] = self.connect()
        admin = self.conns[SERVER_LIST]
        self.flavor_id = admin.compute.find_flavor(state.flavor, ignore_missing=False).id
        if not self.kept:
            self.kept = self.boot("impact-kept", BOOT_TIMEOUT_S * 2, admin)

    def warm(self) -> None:
        """A token taken (again) by every connection, used once on its API (caches as a user's are)."""
        for name in OPERATIONS:
            self.conns[name] = self.connect()
        reads = _ops(self, "", [])
        for name in (SERVER_LIST, SERVER_SHOW, FLAVOR_LIST, HYPERVISOR_LIST, IMAGE_LIST, PLACEMENT_QUERY):
            reads[name]()
        list(self.conns[SERVER_BOOT].compute.servers(limit=1))
        list(self.conns[SERVER_DELETE].compute.servers(limit=1))
        list(self.conns[SERVER_CONSOLE].compute.servers(limit=1))
        list(self.conns[IMAGE_UPLOAD].image.images(limit=1))

    def boot(self, name: str, timeout_s: float, conn: openstack.connection.Connection) -> str:
        server = conn.compute.create_server(
            name=name, image_id=self.image_id, flavor_id=self.flavor_id, networks="none"
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = conn.compute.get_server(server.id)
            if current.status == "ACTIVE":
                return str(server.id)
            if current.status == "ERROR":
                raise RuntimeError(f"ERROR: {(current.fault or {}).get('message', '')}")
            time.sleep(0.5)
        raise TimeoutError(f"not ACTIVE within {timeout_s:.0f} s")

    def delete(self, server_id: str, timeout_s: float, conn: openstack.connection.Connection) -> None:
        conn.compute.delete_server(server_id)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if conn.compute.find_server(server_id) is None:
                return
            time.sleep(0.5)
        raise TimeoutError(f"not gone within {timeout_s:.0f} s")

    def token(self) -> None:
        auth = v3.Password(**self.auth)
        ks_session.Session(auth=auth, timeout=API_TIMEOUT_S).get_token()


def _ops(user: User, victim: str, made: list[str]) -> dict[str, Callable[[], object]]:
    c = user.conns

    def boot() -> None:
        made.append(f"impact-boot-{time.monotonic_ns()}")
        user.boot(made[-1], BOOT_TIMEOUT_S, c[SERVER_BOOT])

    def upload() -> None:
        image = c[IMAGE_UPLOAD].image.create_image(
            name="impact-upload", data=b"\0" * 4096, disk_format="raw", container_format="bare"
        )
        made.append(f"image:{image.id}")
        if c[IMAGE_UPLOAD].image.get_image(image.id).status != "active":
            raise RuntimeError("uploaded image not active")

    return {
        TOKEN_ISSUE: user.token,
        SERVER_LIST: lambda: list(c[SERVER_LIST].compute.servers()),
        SERVER_SHOW: lambda: c[SERVER_SHOW].compute.get_server(user.kept),
        FLAVOR_LIST: lambda: list(c[FLAVOR_LIST].compute.flavors()),
        HYPERVISOR_LIST: lambda: list(c[HYPERVISOR_LIST].compute.hypervisors()),
        SERVER_CONSOLE: lambda: c[SERVER_CONSOLE].compute.get_server_console_output(user.kept, length=5),
        SERVER_BOOT: boot,
        SERVER_DELETE: lambda: user.delete(victim, DELETE_TIMEOUT_S, c[SERVER_DELETE]),
        IMAGE_LIST: lambda: list(c[IMAGE_LIST].image.images()),
        IMAGE_UPLOAD: upload,
        PLACEMENT_QUERY: lambda: list(c[PLACEMENT_QUERY].placement.resource_providers()),
    }


OPERATIONS = (
    TOKEN_ISSUE, SERVER_LIST, SERVER_SHOW, FLAVOR_LIST, HYPERVISOR_LIST, SERVER_CONSOLE, SERVER_BOOT,
    SERVER_DELETE, IMAGE_LIST, IMAGE_UPLOAD, PLACEMENT_QUERY,
)  # fmt: skip


def _timed(call: Callable[[], object]) -> tuple[bool, float, str]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:  # any error the user would see is the observation
        return False, time.monotonic() - started, f"{type(exc).__name__}: {str(exc)[:160]}"
    return True, time.monotonic() - started, ""


def run_all(user: User, victim: str, made: list[str], baseline: dict[str, float]) -> dict[str, Outcome]:
    ops = _ops(user, victim, made)
    with ThreadPoolExecutor(len(ops)) as pool:
        futures = {name: pool.submit(_timed, call) for name, call in ops.items()}
        results = {name: f.result() for name, f in futures.items()}
    out: dict[str, Outcome] = {}
    for name, (ok, seconds, detail) in results.items():
        slow = ok and seconds > max(SLOW_S, 3 * baseline.get(name, seconds))
        out[name] = Outcome("slow" if slow else "works" if ok else "fails", round(seconds, 2), detail)
    return out


def groups(state: LabState, folder: Path, process: str) -> list[int]:
    """The process groups to signal for ``process``: from the lab's records, alive and never a stranger."""
    if process == "nova-compute":
        return [pid for pid in compute_pids(folder).values() if pid]
    return [entry.pid for entry in state.processes if entry.name == process and alive(entry)]


def signal_groups(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)


def whole(user: User, timeout_s: float = 90.0) -> str:
    """ "" once the lab answers again (token, servers, both computes up, images, Placement), else why not."""
    deadline = time.monotonic() + timeout_s
    why = ""
    while time.monotonic() < deadline:
        try:
            user.token()
            conn = user.connect()
            list(conn.compute.servers())
            states = [s.state for s in conn.compute.services() if s.binary == "nova-compute"]
            list(conn.image.images())
            list(conn.placement.resource_providers())
            if states and all(s == "up" for s in states):
                return ""
            why = f"computes {states}"
        except Exception as exc:
            why = f"{type(exc).__name__}: {str(exc)[:120]}"
        time.sleep(2)
    return why or "timed out"


def cleanup(user: User, made: list[str]) -> None:
    conn = user.connect()
    for item in made:
        with contextlib.suppress(Exception):
            if item.startswith("image:"):
                conn.image.delete_image(item.removeprefix("image:"))
            else:
                for server in conn.compute.servers(name=item):
                    conn.compute.delete_server(server)
    made.clear()


def measure(state: LabState, folder: Path, only: list[str]) -> dict[str, Any]:
    user = User(state)
    user.prepare(state)
    made: list[str] = []
    observed: dict[str, dict[str, Any]] = {}

    def one(label: str, process: str | None) -> None:
        user.warm()
        victim = user.boot(f"impact-victim-{len(observed)}", BOOT_TIMEOUT_S * 2, user.conns[SERVER_LIST])
        base = {k: v["seconds"] for k, v in observed.get("baseline", {}).get("ops", {}).items()}
        pids = groups(state, folder, process) if process else []
        if process and not pids:
            raise RuntimeError(f"no live process {process} in the lab's records")
        say(f"{label}: SIGSTOP {pids}" if pids else f"{label}: nothing stopped")
        signal_groups(pids, signal.SIGSTOP)
        try:
            time.sleep(1.0)
            results = run_all(user, victim, made, base)
        finally:
            signal_groups(pids, signal.SIGCONT)
        back = whole(user)
        say(f"{label}: " + ", ".join(f"{k} {v.result} {v.seconds}s" for k, v in results.items())
            + (f"; NOT whole again: {back}" if back else "; whole again"))  # fmt: skip
        observed[label] = {
            "process": process, "groups": pids, "whole_again": not back, "not_whole": back,
            "ops": {k: vars(v) for k, v in results.items()},
        }  # fmt: skip
        cleanup(user, made)
        with contextlib.suppress(Exception):
            conn = user.connect()
            if conn.compute.find_server(victim) is not None:
                user.delete(victim, DELETE_TIMEOUT_S, conn)
        if back:
            raise RuntimeError(f"the lab is not whole after {label}: {back}")

    one("baseline", None)
    if any(o["result"] == "fails" for o in observed["baseline"]["ops"].values()):
        say("the baseline has failures: once more (a loaded machine)")
        one("baseline", None)
        failed = [k for k, o in observed["baseline"]["ops"].items() if o["result"] == "fails"]
        if failed:
            raise RuntimeError(f"operations fail with nothing stopped: {failed}")
    for process, node in SERVICES.items():
        if not only or node in only or process in only:
            one(node, process)
    one("baseline-after", None)
    return {
        "measured_at": time.time(), "operations": list(OPERATIONS), "depends_on": LAB_DEPENDS_ON,
        "services": observed,
    }  # fmt: skip


# ---- the comparison with haven's model -------------------------------------------------------------


# How the lab differs from the catalogue, declared as an operator would in haven.toml
# ([controlplane.services.keystone] depends_on = []): the lab's Keystone and Glance keep their data in
# SQLite files (haven.lab.keystone, haven.lab.glance), not in MariaDB; its Neutron is a stand-in
# (haven.lab.netstub) with no database, no bus and no token check.
LAB_DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "keystone": (),
    "glance-api": ("keystone",),
    "neutron-server": (),
}


def lab_specs() -> list[ServiceSpec]:
    return [
        dataclasses.replace(spec, depends_on=tuple(ServiceName(d) for d in LAB_DEPENDS_ON[name]))
        if name in LAB_DEPENDS_ON
        else spec
        for name, spec in CATALOGUE.items()
    ]


def predicted(service: str, lab_declared: bool = True) -> dict[str, str]:
    topology = openstack_topology(lab_specs() if lab_declared else CATALOGUE.values())
    found = impact(topology, [ServiceLoss(service, 0, 1)])
    return {row.name: row.effect.value for row in found.operations}


def _agrees(pred: str, seen: str) -> bool:
    if pred == Effect.STOPS.value:
        return seen == "fails"
    return seen in ("works", "slow")


def compare(
    raw: dict[str, Any], lab_declared: bool = True, markdown: bool = False
) -> list[tuple[str, str, str, str, str]]:
    ops: list[str] = raw["operations"]
    width = max(len(o) for o in ops)
    disagreements: list[tuple[str, str, str, str, str]] = []
    model = "the lab as declared (LAB_DEPENDS_ON)" if lab_declared else "the plain catalogue"
    print(f"\nobserved, with haven's prediction from {model} where they differ")
    print("(works/slow agree with 'works' and 'degraded', fails with 'stops'):")
    if markdown:
        print("| stopped | " + " | ".join(ops) + " |")
        print("|---" * (len(ops) + 1) + "|")
    else:
        print("service".ljust(16) + " ".join(o[:14].ljust(14) for o in ops))
    for service, seen in raw["services"].items():
        pred = predicted(service, lab_declared) if not service.startswith("baseline") else {}
        cells = []
        for op in ops:
            got = seen["ops"][op]["result"]
            mark = f"{got} {seen['ops'][op]['seconds']:.1f}s" if markdown else got[0].upper()
            p = pred.get(op)
            if p is not None and not _agrees(p, got):
                mark = f"**{mark}** (pred. {p})" if markdown else f"{mark} (pred {p})"
                disagreements.append((service, op, p, got, seen["ops"][op]["detail"]))
            cells.append(mark if markdown else mark.ljust(14))
        if markdown:
            print(f"| {service} | " + " | ".join(cells) + " |")
        else:
            print(service.ljust(16) + " ".join(cells))
    if not markdown:
        print(f"\nhaven's prediction ({model}): stops / degraded / works")
        for service in raw["services"]:
            if not service.startswith("baseline"):
                pred = predicted(service, lab_declared)
                print(service.ljust(16) + " ".join(pred[op].ljust(14) for op in ops))
    print(f"\n{len(disagreements)} disagreement(s):")
    for service, op, p, got, detail in disagreements:
        print(f"  {service:16} {op:{width}} predicted {p:8} observed {got:6} {detail}")
    return disagreements


@contextlib.contextmanager
def a_lab(folder: Path | None) -> Iterator[tuple[LabState, Path]]:
    if folder is not None:
        state = load_state(folder)
        if state is None:
            raise SystemExit(f"no lab in {folder}")
        yield state, folder
        return
    own = Path(tempfile.mkdtemp(prefix="haven-bench-impact-"))
    try:
        yield lab.up(own, 2, progress=lambda m: say(f"lab: {m}")), own
    finally:
        lab.down(own)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="a running lab (haven lab up); default: start one")
    parser.add_argument("--save", type=Path, default=Path("impact.json"), help="the raw observations")
    parser.add_argument("--only", default="", help="comma-separated services (default: all)")
    parser.add_argument("--compare", type=Path, help="print the comparison of saved observations; no lab")
    parser.add_argument("--catalogue", action="store_true", help="compare with the catalogue, not the lab's")
    parser.add_argument("--markdown", action="store_true", help="the matrix as a Markdown table")
    args = parser.parse_args()
    # Started in the background, Python ignores SIGINT: a stop must still continue what it stopped.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.compare:
        compare(json.loads(args.compare.read_text()), not args.catalogue, args.markdown)
        return 0
    only = [s for s in args.only.split(",") if s]
    started = time.monotonic()
    with a_lab(args.folder) as (state, folder):
        say(f"lab ready ({state.up_in_s} s to start); machine load {os.getloadavg()}")
        raw = measure(state, folder, only)
    raw["seconds"] = round(time.monotonic() - started, 1)
    args.save.write_text(json.dumps(raw, indent=2) + "\n")
    say(f"saved {args.save} ({raw['seconds']} s in all)")
    compare(raw)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
