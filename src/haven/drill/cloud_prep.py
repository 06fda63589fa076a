"""Preparing a drill on a real cloud, and waiting on it: the hosts, the drill's servers, polling.

Called by haven.drill.cloud_drill (and bench/lab.py, for its by-hand floor sequence). The
protocols say what the drill needs of the hardware; the CLI hands in the lab's or the
configured BMCs (haven.drill never imports haven.lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from haven.cloud.base import Cloud
from haven.cloud.openstack.workload import Workload
from haven.domain.cloud import Host, Server, TaskState, VmState
from haven.domain.errors import CloudError, HavenError, UserError
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower

HA_METADATA = {"HA_Enabled": "True"}
POLL_S = 0.5
BOOT_TIMEOUT_S = 180.0
# A compute restarted a moment ago puts builds it finds in progress to ERROR, and one enabled again a
# moment ago may keep its resource provider's COMPUTE_STATUS_DISABLED trait until its next periodic
# update (a minute): "No valid host". Such builds are deleted and booted again for this long.
BOOT_RETRY_FOR_S = 120.0
BOOT_RETRY_PAUSE_S = 5.0
DELETE_TIMEOUT_S = 90.0
SETTLE_S = 60.0  # how long a drill waits for every compute service to be in service before it starts


class PowerControl(Protocol):
    """A host's BMC as the drill uses it to cut and restore power (a Fencer is one)."""

    async def power_off(self, host: HostName) -> None: ...

    async def power_on(self, host: HostName) -> None: ...

    async def power_status(self, host: HostName) -> BmcPower: ...


class ComputeControl(Protocol):
    """The lab's hardware wiring: a host's nova-compute crashed and kept down, then let run again."""

    async def hold_down(self, host: HostName) -> None: ...

    async def release(self, host: HostName) -> None: ...


@dataclass(frozen=True, slots=True)
class HostProcess:
    """One process of a host as the lab's wiring runs it: its pid (None: not running), frozen or not."""

    name: str
    pid: int | None
    frozen: bool = False

    @property
    def running(self) -> bool:
        return self.pid is not None and not self.frozen

    def __str__(self) -> str:
        state = "down" if self.pid is None else ("frozen" if self.frozen else "running")
        return f"{self.name} {state}" + (f" (pid {self.pid})" if self.pid is not None else "")


class HangControl(Protocol):
    """The lab's hardware wiring: a host hung while powered (its processes frozen), then let run."""

    async def hang(self, host: HostName) -> None:
        """Freeze the host's processes (SIGSTOP), its BMC left On; return once all are frozen."""

    async def release_hang(self, host: HostName) -> None:
        """Let them continue (SIGCONT); a power-off has already ended the hang (and killed them)."""

    async def processes(self, host: HostName) -> Sequence[HostProcess]: ...


class BmcRecords(Protocol):
    """The BMCs' own records of their power, read without Redfish or haven's fencer: a witness."""

    async def power_status(self, host: HostName) -> BmcPower: ...

    async def off_at(self, host: HostName, after: float) -> float | None:
        """When the BMC recorded the host powered off at or after ``after`` (epoch seconds), if it did."""


async def settled_hosts(cloud: Cloud, say: Callable[[str], None]) -> Sequence[Host]:
    """The hosts, once every compute service is up, enabled and not forced down (or SETTLE_S passed).

    A host powered on again a moment ago (the last drill, a test) reports up within seconds.
    """
    deadline = time.monotonic() + SETTLE_S
    while True:
        hosts = await cloud.list_hosts()
        unwell = [h.name for h in hosts if not in_service(h)]
        if not unwell or time.monotonic() >= deadline:
            return hosts
        say(f"waiting for {', '.join(unwell)} to be up, enabled and not forced down")
        await asyncio.sleep(2 * POLL_S)


def in_service(host: Host) -> bool:
    return host.service_up and host.service_enabled and not host.forced_down


async def choose_host(hosts: Sequence[Host], wanted: HostName | None, power: PowerControl) -> Host:
    healthy = [h for h in hosts if in_service(h)]
    if wanted is not None and wanted not in {h.name for h in hosts}:
        raise UserError(
            f"no compute host {wanted!r} in this cloud", f"hosts: {', '.join(h.name for h in hosts)}"
        )
    unwell = sorted({h.name for h in hosts} - {h.name for h in healthy})
    if unwell:
        raise UserError(
            f"not every compute service is up and enabled ({', '.join(unwell)}): a drill needs them all",
            "wait until they are up, enabled and not forced down (`openstack compute service list`)",
        )
    if len(healthy) < 2:
        raise UserError("a drill needs at least two compute hosts (one fails, one takes its VMs)")
    for host in [h for h in healthy if h.name == wanted] if wanted else healthy:
        try:
            if await power.power_status(host.name) is BmcPower.ON:
                return host
        except CloudError:
            continue  # no BMC configured for it
    raise UserError(
        f"no compute host {'named ' + wanted + ' ' if wanted else ''}has a BMC that answers On",
        "configure its BMC in the [fencing] section ([[fencing.hosts]]) and check that it answers",
    )


async def boot(
    workload: Workload, host: Host, flavor_name: str, image: str, vms: int, say: Callable[[str], None]
) -> list[ServerId]:
    """``vms`` HA servers booted on ``host``, once all are ACTIVE there; none left behind on failure.

    Builds that go to ERROR (see BOOT_RETRY_FOR_S) are deleted and booted again, with Nova's reason
    shown; after BOOT_RETRY_FOR_S the drill fails with it.
    """
    flavor = await workload.flavor_id(flavor_name)
    say(f"booting {vms} HA servers on {host.name}")
    stamp = time.strftime("%H%M%S")
    booted: list[ServerId] = []
    errored: list[ServerId] = []

    async def built() -> bool:
        servers = await workload.servers(booted)
        errored[:] = [s.id for s in servers.values() if s.vm_state is VmState.ERROR]
        done = [s for s in servers.values() if settled_on(s, host.name)]
        return len(servers) == len(booted) and len(done) + len(errored) == len(booted)

    give_up = time.monotonic() + BOOT_RETRY_FOR_S
    try:
        attempt = 0
        while True:
            attempt += 1
            while len(booted) < vms:
                name = f"haven-drill-{stamp}-{attempt}-{len(booted) + 1}"
                booted.append(await workload.boot(name, host.name, host.zone, flavor, image, HA_METADATA))
            await until(None, built, BOOT_TIMEOUT_S, f"{vms} servers ACTIVE on {host.name}")
            if not errored:
                say(f"{vms} servers ACTIVE on {host.name}")
                return booted
            why = await workload.fault(errored[0])
            if time.monotonic() >= give_up:
                raise HavenError(f"servers kept going to ERROR while booting on {host.name}: {why}")
            say(f"{len(errored)} server(s) went to ERROR on {host.name} ({why}): booting them again")
            booted[:] = [s for s in booted if s not in errored]
            await delete(workload, list(errored))
            await asyncio.sleep(BOOT_RETRY_PAUSE_S)
    except BaseException:
        await delete(workload, booted)
        raise


async def delete(workload: Workload, ids: list[ServerId]) -> int:
    for server_id in ids:
        await workload.delete(server_id)

    async def gone() -> bool:
        return not await workload.servers(ids)

    await until(None, gone, DELETE_TIMEOUT_S, "the drill's servers deleted", required=False)
    return len(ids) - len(await workload.servers(ids))


async def until(
    loop: asyncio.Task[None] | None,
    check: Callable[[], Awaitable[bool]],
    timeout_s: float,
    what: str,
    *,
    required: bool = True,
) -> bool:
    """Poll ``check`` every POLL_S until true; False (or an error if ``required``) after ``timeout_s``.

    A cloud that does not answer for a moment is polled again; an engine loop that died is raised.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if loop is not None and loop.done():
            loop.result()  # the engine's loop failed: raise its error
            raise HavenError("the engine stopped during the drill")
        with contextlib.suppress(CloudError):
            if await check():
                return True
        if time.monotonic() >= deadline:
            if required:
                raise HavenError(f"waited {timeout_s:g} s for {what}")
            return False
        await asyncio.sleep(POLL_S)


async def sleep_watching(loop: asyncio.Task[None], seconds: float) -> None:
    async def never() -> bool:
        return False

    await until(loop, never, seconds, "warm-up", required=False)


def settled_on(server: Server, host: HostName) -> bool:
    return server.vm_state is VmState.ACTIVE and server.task_state is TaskState.NONE and server.host == host
