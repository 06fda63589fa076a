"""haven's control-plane reconciler over a lab, observe-only: its probes and units kept as evidence.

Called by haven.drill.faults_run when a fault drill or bench/explain.py runs with ``--controlplane``.
The reconciler plans and acts on nothing (its leader epoch is None: the drill heals), with the lab's
processes as its units (the lab has no systemd: ``LabUnits`` reads each process record) and three
service probes: an SQL query on MariaDB, an AMQP round trip on RabbitMQ, a Keystone token issued and
validated; what it sees change is kept as evidence (haven.evidence.controlplane).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.reconciler import Reconciler
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
from haven.domain.errors import PermanentError, UserError
from haven.domain.ids import HostName
from haven.drill.faults import FaultLab
from haven.drill.faults_resources import rabbitmqctl
from haven.evidence.broker import NOVA_QUEUES, BrokerSeen, look, watch_broker
from haven.store import Store


class LabUnits:
    """The lab's processes as the reconciler's units: a unit is a process record's name, active while its
    pid lives (a SIGSTOPped one too: systemd would say so), its invocation its pid and kernel start."""

    def __init__(self, lab: FaultLab) -> None:
        self.lab = lab
        stat = Path("/proc/stat").read_text().split()
        self._boot = float(stat[stat.index("btime") + 1])
        self._tick = os.sysconf("SC_CLK_TCK")

    async def status(self, unit: str) -> UnitStatus:
        entry = self.lab.process(unit)  # NotFound when the lab runs none
        invocation = f"{entry.pid}:{entry.started}"
        if not self.lab.alive(entry):
            return UnitStatus(UnitActive.FAILED, "dead", invocation_id=invocation)
        since = self._boot + entry.started / self._tick
        return UnitStatus(UnitActive.ACTIVE, "running", invocation_id=invocation, active_since=since)

    async def start(self, unit: str) -> None:
        raise PermanentError("the fault drill heals the lab, haven does not")

    stop = restart = start


def lab_control_plane(lab: FaultLab) -> tuple[ControlPlaneConfig, dict[str, str]]:
    """The lab's services as [controlplane] would declare them (one controller), and the probes' secrets."""
    conf = (lab.folder / "nova" / "nova.conf").read_text()
    db = re.search(r"^connection = mysql\+pymysql://(\w+):(\w+)@[\d.]+:(\d+)/nova\?", conf, re.M)
    mq = re.search(r"^transport_url = rabbit://(\w+):(\w+)@[\d.]+:(\d+)/", conf, re.M)
    clouds = json.loads(lab.clouds_yaml.read_text())["clouds"]["lab"]["auth"]
    if db is None or mq is None:
        raise UserError(
            "--controlplane: the lab's nova.conf names no database or transport_url",
            "start the lab again with `haven lab up`",
        )
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
async def observing(lab: FaultLab, store: Store, on: bool) -> AsyncIterator[None]:
    """RabbitMQ's alarms and Nova's queues watched (haven.evidence.broker, always; the queues' unacknowledged
    messages through the lab's rabbitmqctl), and with ``on`` the
    reconciler over the lab, observe-only (its leader epoch is None: it plans, never acts)."""
    async with watching_broker(lab, store), reconciling(lab, store, on):
        yield


@contextlib.asynccontextmanager
async def watching_broker(lab: FaultLab, store: Store) -> AsyncIterator[None]:
    """The lab's broker looked at every 2 s through AMQP, as haven would through [diagnosis] transport_url."""
    conf = (lab.folder / "nova" / "nova.conf").read_text()
    url = re.search(r"^transport_url = (rabbit://\S+)$", conf, re.M)
    if url is None:
        yield
        return
    unacked: dict[str, int] = {}
    read: list[float] = []  # when ``unacked`` was read (the last run of rabbitmqctl)

    def looker(at: str) -> BrokerSeen:
        return dataclasses.replace(look(at), unacked=dict(unacked), unacked_at=read[-1] if read else None)

    tasks = [asyncio.create_task(watch_broker(url[1], store, RealClock(), looker=looker)),
             asyncio.create_task(_poll_unacked(lab, unacked, read))]  # fmt: skip
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


# One rabbitmqctl run takes about 7 s of an Erlang VM's start on the loaded lab. Every 10 s (20 s until
# the seventh session): a backlog is dated at the last reading that saw its queue short, and the computes
# whose reports wait behind it go down a few seconds after it began; read every 20 s, that reading could
# be nearly 30 s older than their silence (27 s in one lab run), the ranker's onset tolerance.
UNACKED_EVERY_S = 10.0


async def _poll_unacked(
    lab: FaultLab,
    into: dict[str, int],
    read: list[float],
    every_s: float = UNACKED_EVERY_S,
    reader: Callable[[FaultLab], dict[str, int]] | None = None,
) -> None:
    """Until cancelled: Nova's queues' unacknowledged messages, read with the lab broker's own rabbitmqctl
    (``reader``: ``queue_unacked``) every ``every_s`` into ``into``. The lab runs neither RabbitMQ's
    management API nor its Prometheus plugin (where a deployment reads ``rabbitmq_queue_messages_unacked``,
    a default metric of haven's), and AMQP does not tell: this is the lab's stand-in for them.

    A run that fails, or leaves out a queue the last reading had, is no reading: the last one stands, with
    its time in ``read``. Its counts cleared, a queue's unknown count was taken as 0 (haven.evidence.broker
    adds it to the ready ones): on the lab (2026-12-07, night) one failed run under load ended a backlog
    of 9,117 unacknowledged messages for 16 s ("down to 0 messages"), the backlog came back dated after
    the computes it had silenced, and they were ranked over RabbitMQ."""
    reader = reader or queue_unacked
    while True:
        try:
            found: dict[str, int] | None = await asyncio.to_thread(reader, lab)
        except Exception:  # the broker hung, restarting or the run timed out: the last reading stands
            found = None
        if found is not None and set(into) <= set(found):
            into.clear()
            into.update(found)
            read[:] = [time.time()]  # the counts were read by now (a backlog seen short began after this)
        await asyncio.sleep(every_s)


def queue_unacked(lab: FaultLab, queues: tuple[str, ...] = NOVA_QUEUES) -> dict[str, int]:
    """Each of ``queues``' messages delivered and not acknowledged, from the lab broker's rabbitmqctl."""
    out = rabbitmqctl(lab, "list_queues", "name", "messages_unacknowledged", "--formatter", "json",
                      timeout_s=30.0)  # fmt: skip
    return unacked_of(out, queues)


def unacked_of(out: str, queues: tuple[str, ...] = NOVA_QUEUES) -> dict[str, int]:
    """``rabbitmqctl list_queues name messages_unacknowledged --formatter json``'s answer, for ``queues``."""
    rows = json.loads(out or "[]")
    return {
        str(r["name"]): int(r.get("messages_unacknowledged") or 0) for r in rows if r.get("name") in queues
    }


@contextlib.asynccontextmanager
async def reconciling(lab: FaultLab, store: Store, on: bool) -> AsyncIterator[None]:
    if not on:
        yield
        return
    config, secrets = lab_control_plane(lab)
    prober = NetworkProber(environ=secrets)
    units = {HostName("lab"): LabUnits(lab)}
    reconciler = Reconciler(config, units, None, prober, store, RealClock(), leader_epoch=lambda: None)
    task = asyncio.create_task(reconciler.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await prober.close()
