"""The sequences bench/lab.py sets haven against, on the same lab and host: by hand, the oracle, Masakari.

Who calls it: bench/lab.py (run as a script, so this folder is on ``sys.path``). Each sequence boots
``vms`` HA servers on the host, powers its BMC off, starts the clock at that power-off and stops it
when Nova itself lists every one ACTIVE (no task) on another host; then it powers the host on,
returns it to service and deletes the servers, so the next run starts from the same lab.
- ``floor_run``: by hand, as an operator would without haven: wait for Nova's own "down", force the
  service down, evacuate all at once (no target host: Nova's scheduler picks).
- ``oracle_run``: the physical limit of the lab: force down and evacuate all at the instant of the
  power-off, with no detection at all, each server to a named host taken in turn from the other
  computes (Nova's scheduler, asked 20 times at once, sent all 20 to one host here: each
  destination admits its rebuilds one at a time, so spreading them is part of the limit).
- ``masakari_run``: Masakari 22.0.0 (API and engine from PyPI, haven.lab.masakari) with its shipped
  defaults, told of the failure as masakari-monitors' hostmonitor tells it (a ``COMPUTE_HOST``
  notification, event ``STOPPED``) at the power-off. Its defaults wait minutes; a run is capped at
  ``timeout_s`` and a run not finished by then has no time (counted apart, never as 0). Each run
  has a fresh Masakari (its own folder and databases), stopped at the end of the run: a recovery
  still going at the cap is cut there, so the next run starts clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from haven.cli.lab_controls import LabPower
from haven.cloud.openstack import OpenStackCloud, open_cloud
from haven.cloud.openstack.workload import Workload, open_workload
from haven.domain.cloud import TaskState, VmState
from haven.domain.errors import CloudError
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.drill.cloud_prep import HA_METADATA
from haven.lab.masakari import MasakariApi, MasakariCloud
from haven.lab.process import free_port
from haven.lab.state import LabState

POLL_S = 0.2
FLOOR_PHASES = ("nova down", "forced down", "evacuate calls", "all active")
ORACLE_PHASES = ("forced down", "evacuate calls", "all active")
MASAKARI_PHASES = ("notified", "first evacuation", "all active", "notification finished")
Times = dict[str, float | None]


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class Fleet:
    """``vms`` HA servers booted on ``host`` for one run, and the lab put back as it was after it."""

    def __init__(self, state: LabState, host: HostName, vms: int, who: str) -> None:
        self.state, self.host, self.vms, self.who = state, host, vms, who
        self.cloud = open_cloud("lab", max_workers=vms)
        self.workload = open_workload("lab")
        self.power = LabPower(state)
        self.booted: list[ServerId] = []

    async def boot(self) -> None:
        flavor = await self.workload.flavor_id(self.state.flavor)
        zone = (await self.cloud.get_host(self.host)).zone
        stamp = time.strftime("%H%M%S")
        for i in range(self.vms):
            name = f"haven-{self.who}-{stamp}-{i + 1}"
            self.booted.append(await self.workload.boot(
                name, self.host, zone, flavor, self.state.image_id, HA_METADATA
            ))  # fmt: skip
        await until(lambda: self.settled(on=self.host), 240, f"{self.vms} servers ACTIVE on {self.host}")
        say(f"{self.who}: {self.vms} servers ACTIVE on {self.host}; powering it off")

    async def settled(self, on: str | None = None, off: str | None = None) -> bool:
        return await settled(self.workload, self.booted, on=on, off=off)

    async def hosts(self) -> dict[str, int]:
        """How many of the servers each host holds (as Nova lists them): where the rebuilds went."""
        servers = await self.workload.servers(self.booted)
        counts: dict[str, int] = {}
        for server in servers.values():
            counts[str(server.host)] = counts.get(str(server.host), 0) + 1
        return dict(sorted(counts.items()))

    async def tidy(self, enable: bool = False) -> None:
        """Power the host on, unforce (and with ``enable`` enable) its service, delete the servers."""
        cloud, host = self.cloud, self.host
        try:
            if await self.power.power_status(host) is not BmcPower.ON:
                await self.power.power_on(host)
            await until(lambda: unforced(cloud, host), 180, f"Nova to accept {host} as no longer forced down")
            if enable:
                await cloud.enable_service(host)
            await until(lambda: service_up(cloud, host), 120, f"{host} up again")
            for server_id in self.booted:
                await self.workload.delete(server_id)
            await until(lambda: gone(self.workload, self.booted), 120, "the servers deleted")
        finally:
            self.workload.close()
            cloud.close()


async def floor_run(state: LabState, host: HostName, vms: int) -> Times:
    """The fastest by-hand sequence: wait for Nova's own verdict, force down, evacuate everything."""
    return await _by_hand(state, host, vms, "floor")


async def oracle_run(state: LabState, host: HostName, vms: int) -> Times:
    """The lab's physical limit: force down and evacuate all at the power-off itself, no detection."""
    return await _by_hand(state, host, vms, "oracle")


async def _by_hand(state: LabState, host: HostName, vms: int, who: str) -> Times:
    """The floor waits for Nova's down and lets Nova's scheduler pick; the oracle waits for nothing
    and names each server's host, taken in turn from the other computes."""
    fleet = Fleet(state, host, vms, who)
    times: Times = dict.fromkeys(FLOOR_PHASES if who == "floor" else ORACLE_PHASES)
    others = [HostName(h) for h in state.computes if h != host]
    try:
        await fleet.boot()
        t0 = time.time()
        await fleet.power.power_off(host)
        if who == "floor":

            async def nova_down() -> bool:
                return not (await fleet.cloud.get_host(host)).service_up

            await until(nova_down, 120, f"Nova to mark {host} down")
            times["nova down"] = time.time() - t0
        await fleet.cloud.force_down(host, True)
        times["forced down"] = time.time() - t0
        await asyncio.gather(*(
            fleet.cloud.evacuate(s, None if who == "floor" else others[i % len(others)])
            for i, s in enumerate(fleet.booted)
        ))  # fmt: skip
        times["evacuate calls"] = time.time() - t0
        await until(lambda: fleet.settled(off=host), 300, "every server ACTIVE elsewhere")
        times["all active"] = time.time() - t0
        say(f"{who}: all ACTIVE elsewhere {times['all active']:.1f} s after the power-off "
            f"({await fleet.hosts()})")  # fmt: skip
    finally:
        await fleet.tidy()
    return times


def masakari_cloud(state: LabState) -> MasakariCloud:
    """The lab's bus (from nova.conf) and admin (from clouds.yaml), as Masakari's engine needs them."""
    auth = json.loads(Path(state.files["clouds.yaml"]).read_text())["clouds"]["lab"]["auth"]
    nova_conf = Path(state.folder) / "nova" / "nova.conf"
    transport = next(
        line.split("=", 1)[1].strip()
        for line in nova_conf.read_text().splitlines()
        if line.startswith("transport_url")
    )
    return MasakariCloud(
        transport_url=transport, auth_url=auth["auth_url"], username=auth["username"],
        password=auth["password"], project=auth["project_name"], region=_region(state),
    )  # fmt: skip


def _region(state: LabState) -> str:
    return str(json.loads(Path(state.files["clouds.yaml"]).read_text())["clouds"]["lab"]["region_name"])


@contextlib.asynccontextmanager
async def masakari(state: LabState) -> AsyncIterator[MasakariApi]:
    """A fresh Masakari API and engine for the lab, one segment (recovery ``auto``) holding every compute."""
    folder = Path(state.folder) / f"masakari-{time.strftime('%H%M%S')}"
    api = MasakariApi(folder, free_port(), cloud=masakari_cloud(state), progress=lambda m: say(m))
    try:
        await asyncio.to_thread(api.start)
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            segment = _json(await client.post("/segments", json={"segment": {
                "name": "haven-bench", "recovery_method": "auto", "service_type": "COMPUTE",
            }}))["segment"]["uuid"]  # fmt: skip
            for host in state.computes:
                _json(await client.post(f"/segments/{segment}/hosts", json={"host": {
                    "name": host, "type": "COMPUTE", "control_attributes": "SSH",
                }}))  # fmt: skip
        say(f"masakari: segment {segment} holds {', '.join(state.computes)}")
        yield api
    finally:
        await asyncio.to_thread(api.stop)


def _json(answer: httpx.Response) -> Any:
    if answer.status_code >= 300:
        raise SystemExit(f"Masakari {answer.request.method} {answer.request.url}: "
                         f"{answer.status_code} {answer.text[:300]}")  # fmt: skip
    return answer.json()


async def masakari_run(state: LabState, host: HostName, vms: int, timeout_s: float) -> Times:
    """Masakari's defaults, notified as its hostmonitor would at the power-off; capped at ``timeout_s``."""
    fleet = Fleet(state, host, vms, "masakari")
    times: Times = dict.fromkeys(MASAKARI_PHASES)
    try:
        async with masakari(state) as api, httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            await fleet.boot()
            t0 = time.time()
            await fleet.power.power_off(host)
            notification = _json(await client.post("/notifications", json={"notification": {
                "type": "COMPUTE_HOST", "hostname": host,
                "generated_time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                "payload": {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"},
            }}))["notification"]["notification_uuid"]  # fmt: skip
            times["notified"] = time.time() - t0
            status = await _watch(fleet, client, notification, t0, times, timeout_s)
            done = times["all active"]
            shown = f"not within the {timeout_s:g} s cap" if done is None else f"{done:.1f} s"
            say(f"masakari: notification {status}; all ACTIVE elsewhere {shown} after the power-off"
                f" ({await fleet.hosts()})")  # fmt: skip
    finally:  # Masakari is stopped by now (a recovery past the cap is cut); the lab is put back
        await fleet.tidy(enable=True)  # Masakari disabled the service and leaves it so
    return times


async def _watch(
    fleet: Fleet, client: httpx.AsyncClient, notification: str, t0: float, times: Times, timeout_s: float
) -> str:
    status = "new"
    while time.time() - t0 < timeout_s:
        with contextlib.suppress(CloudError, httpx.HTTPError):
            if times["all active"] is None and await fleet.settled(off=fleet.host):
                times["all active"] = time.time() - t0
            if times["first evacuation"] is None:
                servers = await fleet.workload.servers(fleet.booted)
                if any(s.host != fleet.host or s.task_state is not TaskState.NONE for s in servers.values()):
                    times["first evacuation"] = time.time() - t0
            status = _json(await client.get(f"/notifications/{notification}"))["notification"]["status"]
            if status in ("finished", "error", "failed") and times["notification finished"] is None:
                times["notification finished"] = time.time() - t0
            if times["all active"] is not None and times["notification finished"] is not None:
                break
        await asyncio.sleep(1.0)
    return status


async def _settle_masakari(client: httpx.AsyncClient, fleet: Fleet, state: LabState) -> None:
    """Let Masakari's recovery end (it runs on past the cap), then end the host's maintenance."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        listed = _json(await client.get("/notifications", params={"status": "running"}))["notifications"]
        if not listed:
            break
        await asyncio.sleep(2.0)
    segments = _json(await client.get("/segments"))["segments"]
    for segment in segments:
        for host in _json(await client.get(f"/segments/{segment['uuid']}/hosts"))["hosts"]:
            if host["on_maintenance"]:
                _json(await client.put(f"/segments/{segment['uuid']}/hosts/{host['uuid']}",
                                       json={"host": {"on_maintenance": False}}))  # fmt: skip


async def settled(
    workload: Workload, ids: list[ServerId], on: str | None = None, off: str | None = None
) -> bool:
    servers = await workload.servers(ids)
    return len(servers) == len(ids) and all(
        s.vm_state is VmState.ACTIVE
        and s.task_state is TaskState.NONE
        and (on is None or s.host == on)
        and (off is None or s.host != off)
        for s in servers.values()
    )


async def unforced(cloud: OpenStackCloud, host: HostName) -> bool:
    try:
        await cloud.force_down(host, False)
    except CloudError:
        return False  # refused until the restarted compute cleaned up its evacuations
    return True


async def service_up(cloud: OpenStackCloud, host: HostName) -> bool:
    state = await cloud.get_host(host)
    return bool(state.service_up and not state.forced_down)


async def gone(workload: Workload, ids: list[ServerId]) -> bool:
    return not await workload.servers(ids)


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(CloudError):
            if await check():
                return
        if time.monotonic() > deadline:
            raise SystemExit(f"waited {timeout_s:g} s for {what}")
        await asyncio.sleep(POLL_S)
