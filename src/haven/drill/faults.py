"""The fault catalogue: faults an operator meets, injectable on a running lab, each with its true root cause.

Called by `haven drill fault` (haven.cli.fault_drill) and bench/explain.py, through
haven.drill.faults_run (one injection: inject, canary, judge, heal). Each fault's root cause is a
node of haven.topology, so the explainer's ranking can be judged against it. haven.drill never
imports haven.lab: an injection acts through ``FaultLab``, the lab's handles, which the CLI hands
in (haven.cli.fault_drill.LabFaults). Injections block (signals, /proc, REST): call them in a
worker thread. Each returns its ``Heal``, which undoes it.

Kinds: a control-plane service hung (SIGSTOP of the lab's process group of that service, SIGCONT
to heal), killed (SIGKILL of the group; healed by starting it again with the command line,
environment and folder it had, haven.drill.faults_process), slow (SIGSTOP/SIGCONT in turn); the
computes' nova-compute hung, held down, powered off through the BMCs or disabled in Nova;
Placement's room used up; the canary image deactivated or deleted in Glance.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from haven.domain.errors import UserError
from haven.drill.faults_network import failing_route, image_data_gone, lossy, slow_http, slow_link, slow_tcp
from haven.drill.faults_process import keep_started, process_image
from haven.drill.faults_resources import cpu_starved, crash_looping, disk_alarm, memory_alarm, queue_backlog

Heal = Callable[[], None]


@dataclass(frozen=True)
class LabProcess:
    """One of the lab's services as the lab recorded it: its process group leader and its log."""

    name: str
    pid: int  # every lab service runs in its own session: pid = process group
    started: int  # the kernel's start time of pid (clock ticks since boot)
    log: Path


class FaultLab(Protocol):
    """What an injection needs of a running lab (blocking calls; haven.cli.fault_drill implements it)."""

    @property
    def folder(self) -> Path: ...

    @property
    def clouds_yaml(self) -> Path: ...

    @property
    def computes(self) -> Sequence[str]: ...

    @property
    def flavor(self) -> str: ...

    @property
    def image_id(self) -> str: ...

    def process(self, name: str) -> LabProcess:
        """The lab's newest record of the service ``name``; an error when it runs none."""

    def alive(self, process: LabProcess) -> bool:
        """Whether that very process (pid and start time) still lives."""

    def restarted(self, old: LabProcess, pid: int) -> None:
        """The lab's record of ``old`` replaced by ``pid`` (so `haven lab down` stops the new one)."""

    def hold_computes(self, how: str, held: bool) -> None:
        """Every host's nova-compute ``how`` = "hang" (SIGSTOP) or "down" (killed, kept down), or let run."""

    def power_computes(self, on: bool) -> None:
        """Every compute host powered on or off through its BMC."""

    def call(self, service: str, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """An admin REST call on ``service`` (compute, placement, image); its JSON (None if empty)."""

    def replace_image(self) -> str:
        """The lab's tiny image uploaded again and recorded as the lab's image; its new id."""

    def whole(self) -> list[str]:
        """What is not whole: processes gone, computes not running, holds left, hosts off."""

    def port(self, service: str) -> int:
        """The loopback TCP port ``service`` listens on: a catalog type (image, placement...) or database."""

    def image_data(self) -> Path:
        """The file holding the canary image's data in Glance's file store."""


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str  # hung | killed | slow | computes | capacity | image | network | route | store | none
    root: str  # the true root cause: a node of haven.topology
    what: str
    inject: Callable[[FaultLab], Heal]
    settle_s: float = 0.0  # how long the fault lasts before the canary round


def hung(process: str) -> Callable[[FaultLab], Heal]:
    def inject(lab: FaultLab) -> Heal:
        group = lab.process(process).pid
        os.killpg(group, signal.SIGSTOP)
        return lambda: os.killpg(group, signal.SIGCONT)

    return inject


def killed(process: str) -> Callable[[FaultLab], Heal]:
    """SIGKILL the service's process group; heal: start it again as the lab had started it."""

    def inject(lab: FaultLab) -> Heal:
        entry = lab.process(process)
        argv, env, cwd = process_image(entry.pid)
        os.killpg(entry.pid, signal.SIGKILL)

        def heal() -> None:
            deadline = time.monotonic() + 10.0
            while lab.alive(entry) and time.monotonic() < deadline:
                time.sleep(0.1)
            with open(entry.log, "ab") as out:
                started = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                           start_new_session=True)  # fmt: skip
            keep_started(started)  # reaped once it has ended
            lab.restarted(entry, started.pid)

        return heal

    return inject


def slow(process: str, stopped_s: float = 4.0, running_s: float = 0.5) -> Callable[[FaultLab], Heal]:
    """The service frozen ``stopped_s`` then running ``running_s``, over and over: slow, not dead."""

    def inject(lab: FaultLab) -> Heal:
        group = lab.process(process).pid
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


def computes_held(how: str) -> Callable[[FaultLab], Heal]:
    def inject(lab: FaultLab) -> Heal:
        lab.hold_computes(how, True)
        return lambda: lab.hold_computes(how, False)

    return inject


def powered_off(lab: FaultLab) -> Heal:
    lab.power_computes(False)
    return lambda: lab.power_computes(True)


_PLACEMENT_MV = "1.26"  # reserved may equal total from 1.26 on (FaultLab.call's placement microversion)


def placement_full(lab: FaultLab) -> Heal:
    """Every compute's memory inventory reserved whole: Placement has no room for any server."""
    kept: dict[str, dict[str, Any]] = {}
    for rp in lab.call("placement", "GET", "/resource_providers")["resource_providers"]:
        path = f"/resource_providers/{rp['uuid']}/inventories/MEMORY_MB"
        inventory = lab.call("placement", "GET", path)
        kept[path] = inventory
        lab.call("placement", "PUT", path, {**inventory, "reserved": inventory["total"]})

    def heal() -> None:
        for path, inventory in kept.items():
            now = lab.call("placement", "GET", path)
            body = {**inventory, "resource_provider_generation": now["resource_provider_generation"]}
            lab.call("placement", "PUT", path, body)

    return heal


def image_deactivated(lab: FaultLab) -> Heal:
    path = f"/v2/images/{lab.image_id}/actions"
    lab.call("image", "POST", f"{path}/deactivate")
    return lambda: lab.call("image", "POST", f"{path}/reactivate")


def computes_disabled(lab: FaultLab) -> Heal:
    """Every nova-compute service disabled in Nova (a maintenance never ended): no host to schedule on."""
    services = lab.call("compute", "GET", "/os-services?binary=nova-compute")["services"]
    ids = [str(s["id"]) for s in services]
    for service_id in ids:
        body = {"status": "disabled", "disabled_reason": "haven drill fault: maintenance never ended"}
        lab.call("compute", "PUT", f"/os-services/{service_id}", body)

    def heal() -> None:
        for service_id in ids:
            lab.call("compute", "PUT", f"/os-services/{service_id}", {"status": "enabled"})

    return heal


def image_deleted(lab: FaultLab) -> Heal:
    """The canary image deleted from Glance; heal: the lab's tiny image uploaded again (a new id)."""
    lab.call("image", "DELETE", f"/v2/images/{lab.image_id}")

    def heal() -> None:
        lab.replace_image()

    return heal


DOWN_S = 12.0  # beyond the lab's service_down_time (10 s): Nova's own list says down
CATALOG: tuple[Fault, ...] = (
    Fault("keystone-hung", "hung", "keystone", "Keystone SIGSTOPped", hung("keystone")),
    Fault("keystone-slow", "slow", "keystone", "Keystone stopped 4 s / running 0.5 s in turn",
          slow("keystone")),
    Fault("nova-api-hung", "hung", "nova-api", "Nova's API SIGSTOPped", hung("nova-api")),
    Fault("scheduler-hung", "hung", "nova-scheduler", "nova-scheduler SIGSTOPped", hung("nova-scheduler"),
          DOWN_S),
    Fault("conductor-hung", "hung", "nova-conductor", "nova-conductor SIGSTOPped", hung("nova-conductor"),
          DOWN_S),
    Fault("placement-hung", "hung", "placement-api", "Placement SIGSTOPped", hung("placement-api")),
    Fault("glance-hung", "hung", "glance-api", "Glance SIGSTOPped", hung("glance-api")),
    Fault("neutron-hung", "hung", "neutron-server", "the Neutron API SIGSTOPped", hung("network-stub")),
    Fault("database-hung", "hung", "mariadb", "MariaDB SIGSTOPped", hung("mariadb")),
    Fault("rabbitmq-hung", "hung", "rabbitmq", "RabbitMQ SIGSTOPped", hung("rabbitmq-server"), DOWN_S),
    Fault("computes-hung", "computes", "nova-compute", "every host's nova-compute SIGSTOPped (hang_host)",
          computes_held("hang"), DOWN_S),
    Fault("computes-down", "computes", "nova-compute", "every host's nova-compute killed and held down",
          computes_held("down"), DOWN_S),
    Fault("hosts-powered-off", "computes", "nova-compute", "every compute host powered off through its BMC",
          powered_off, DOWN_S),
    Fault("placement-full", "capacity", "placement-api",
          "every compute's MEMORY_MB reserved whole in Placement", placement_full),
    Fault("image-deactivated", "image", "glance-api", "the canary image deactivated in Glance",
          image_deactivated),
    Fault("image-deleted", "image", "glance-api", "the canary image deleted from Glance", image_deleted),
    Fault("computes-disabled", "computes", "nova-compute", "every nova-compute service disabled in Nova",
          computes_disabled),
    Fault("keystone-killed", "killed", "keystone", "Keystone SIGKILLed", killed("keystone")),
    Fault("nova-api-killed", "killed", "nova-api", "Nova's API SIGKILLed", killed("nova-api")),
    Fault("scheduler-killed", "killed", "nova-scheduler", "nova-scheduler SIGKILLed",
          killed("nova-scheduler"), DOWN_S),
    Fault("conductor-killed", "killed", "nova-conductor", "nova-conductor SIGKILLed",
          killed("nova-conductor"), DOWN_S),
    Fault("placement-killed", "killed", "placement-api", "Placement SIGKILLed", killed("placement-api")),
    Fault("glance-killed", "killed", "glance-api", "Glance SIGKILLed", killed("glance-api")),
    Fault("database-killed", "killed", "mariadb", "MariaDB SIGKILLed", killed("mariadb")),
    Fault("rabbitmq-killed", "killed", "rabbitmq", "RabbitMQ SIGKILLed", killed("rabbitmq-server"), DOWN_S),
    # haven.drill.faults_network: a proxy or a loss rule on one service's port
    Fault("glance-slow", "network", "glance-api", "every request to Glance delayed 8 s (a delaying proxy)",
          slow_http("image", 8.0)),
    Fault("nova-api-glance-slow", "network", "glance-api",
          "every request from Nova's API to Glance delayed 8 s (other clients not)", slow_link(
              "nova-api", "image", 8.0)),
    # 40 % failed nothing on the lab (twice): loopback TCP retransmits after 200 ms, so every request
    # still came through within the canary's timeouts; at 80 % a connection's SYN alone is lost 4 times
    # in a row 41 % of the time (its 4th retry is 15 s later): Glance's clients time out.
    Fault("glance-lossy", "network", "glance-api", "80 % of the packets to Glance's port dropped",
          lossy("image", 0.8)),
    Fault("database-slow", "network", "mariadb", "everything sent to MariaDB delayed 0.5 s (each query)",
          slow_tcp("database", 0.5)),
    Fault("placement-candidates-500", "route", "placement-api",
          "Placement answers 500 to GET /allocation_candidates", failing_route(
              "placement", "GET", r".*/allocation_candidates")),
    Fault("glance-download-500", "route", "glance-api", "Glance answers 500 to an image download",
          failing_route("image", "GET", r".*/v2/images/[^/]+/file")),
    Fault("glance-store-gone", "store", "glance-api",
          "the canary image's data gone from Glance's store (its record still active)", image_data_gone),
    # haven.drill.faults_resources: a crash loop, RabbitMQ's alarms and backlog, CPU starvation
    Fault("glance-crashloop", "crashloop", "glance-api", "Glance killed 3 s after each start, every 5 s",
          crash_looping("glance-api")),
    Fault("rabbitmq-memory-alarm", "alarm", "rabbitmq", "RabbitMQ's memory watermark set below its use",
          memory_alarm, 2.0),
    Fault("rabbitmq-disk-full", "disk", "rabbitmq", "RabbitMQ's data on a small tmpfs filled past its "
          "disk_free_limit", disk_alarm, DOWN_S),
    Fault("conductor-backlog", "backlog", "rabbitmq",
          "a storm of 20,000 database reads cast to nova-conductor (minutes of its work)",
          queue_backlog("conductor", 20_000)),
    Fault("placement-cpu-starved", "cpu", "placement-api", "Placement's processes held to 0.1 % of one CPU "
          "(a cgroup)", cpu_starved("placement-api")),
)  # fmt: skip
FAULTS = {fault.name: fault for fault in CATALOG}
NO_FAULT = Fault(
    "no-fault", "none", "", "nothing injected: a control period as long as an injection",
    lambda lab: lambda: None, DOWN_S,
)  # fmt: skip


def fault_named(name: str) -> Fault:
    """The catalogue's fault ``name``; an error naming the valid ones otherwise."""
    try:
        return FAULTS[name]
    except KeyError:
        raise UserError(
            f"no fault named {name!r} in the catalogue",
            f"choose one of: {', '.join(FAULTS)} (`haven drill fault --list` describes them)",
        ) from None


def catalogue_rows() -> list[dict[str, Any]]:
    """The catalogue as rows (name, kind, root cause, what, settle time): `--list` prints them."""
    return [{"name": f.name, "kind": f.kind, "root_cause": f.root, "what": f.what, "settle_s": f.settle_s}
            for f in CATALOG]  # fmt: skip
