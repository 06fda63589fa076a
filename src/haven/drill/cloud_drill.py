"""Drills on a real cloud: haven's engine against real Nova and real BMCs, with a real fault.

Called by `haven drill SCENARIO --cloud NAME` (haven.cli.cloud_drill), the lab tests and
bench/lab.py. The caller hands in the cloud, the liveness source, the fencer, a Workload (to
boot and delete the drill's own servers) and the hardware controls of haven.drill.cloud_prep
(a PowerControl: the hosts' BMCs; a ComputeControl: the lab's nova-compute wiring, needed by
nova-compute-crash only; a HangControl and BmcRecords, the BMCs' own power records, needed by
host-hang only). haven.drill never imports haven.lab: the lab's controls come from the CLI.

host-hang: the host's processes are frozen (SIGSTOP) while its BMC stays On. haven must
confirm it dead only once nova-compute also missed its report, power it off through its BMC
(the lab's wiring then kills the frozen processes) and only then evacuate; the witness reads
the BMC's own record just before each evacuate call, and once more at the end.

One drill: pick a healthy host with a BMC, boot ``vms`` HA servers on it, start an engine
(real clock, a temporary SQLite store, a segment per zone) on a WitnessedCloud, inject the
fault, wait for the outcome as Nova reports it, undo the fault, wait until haven returned
the host to service, delete the servers. The verdict is haven.drill.cloud_judge's, from
Nova's and the BMCs' own answers. The host is powered on again and the servers deleted
whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from haven.cloud.base import Cloud, LivenessSource
from haven.cloud.openstack.workload import Workload
from haven.domain.clock import RealClock
from haven.domain.cloud import Host, Server
from haven.domain.errors import CloudError, HavenError, UserError
from haven.domain.events import EngineEvent, EventKind, EventSink, discard_events
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.domain.settings import EngineSettings
from haven.drill.cloud_judge import CloudDrillReport, Observed, judge
from haven.drill.cloud_prep import (
    POLL_S,
    BmcRecords,
    ComputeControl,
    HangControl,
    PowerControl,
    boot,
    choose_host,
    delete,
    settled_hosts,
    sleep_watching,
    until,
)
from haven.drill.nova_view import JUDGE_WAIT_S, look_until_recovered, recovered_elsewhere
from haven.drill.report import EventRecorder
from haven.drill.witness import WitnessedCloud
from haven.fencing.base import Fencer
from haven.recovery.workflows import FORCE_DOWN
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import serve_forever
from haven.store import Store

HOST_POWER_LOSS = "host-power-loss"
HOST_HANG = "host-hang"
NOVA_COMPUTE_CRASH = "nova-compute-crash"
CLOUD_SCENARIOS = (HOST_POWER_LOSS, NOVA_COMPUTE_CRASH, HOST_HANG)
WARM_UP_S = 2.0
RESTART_S = 60.0  # for a host's processes to run again once it is powered on


@dataclass
class CloudDrill:
    scenario: str
    cloud_name: str
    cloud: Cloud
    liveness: LivenessSource
    fencer: Fencer  # haven's, as configured
    workload: Workload
    flavor: str
    image: str
    power: PowerControl | None = None  # the hosts' BMCs for injecting; default: the fencer
    computes: ComputeControl | None = None
    hangs: HangControl | None = None
    bmc_records: BmcRecords | None = None  # the witness's reader when given; else ``power`` (Redfish)
    vms: int = 3
    host: HostName | None = None
    settings: EngineSettings | None = None
    give_up_s: float = 300.0  # for the outcome, and again for the host's return to service
    judge_wait_s: float = JUDGE_WAIT_S  # once haven's recovery is over, for Nova to show it (the judge)
    liveness_channels: str = "Nova"  # what ``liveness`` reads, for the report
    progress: Callable[[str], None] = field(default=lambda _message: None)
    on_event: EventSink = discard_events


async def run_cloud_drill(drill: CloudDrill) -> CloudDrillReport:
    if drill.scenario not in CLOUD_SCENARIOS:
        raise UserError(
            f"scenario {drill.scenario!r} cannot run on a real cloud",
            f"on a real cloud choose one of: {', '.join(CLOUD_SCENARIOS)}",
        )
    if drill.scenario == NOVA_COMPUTE_CRASH and drill.computes is None:
        raise UserError(
            f"{NOVA_COMPUTE_CRASH} needs control of the hosts' nova-compute, which only the lab gives",
            "run it with --cloud lab (`haven lab up`); on other clouds run host-power-loss",
        )
    if drill.scenario == HOST_HANG and (drill.hangs is None or drill.bmc_records is None):
        raise UserError(
            f"{HOST_HANG} needs to freeze a host's processes and the BMCs' own power records, "
            "which only the lab gives",
            "run it with --cloud lab, on a lab started by this version of haven (`haven lab up`)",
        )
    if drill.vms < 1:
        raise UserError(f"--vms must be at least 1 on a real cloud, got {drill.vms}")
    power: PowerControl = drill.power or drill.fencer
    say = drill.progress
    hosts = await settled_hosts(drill.cloud, say)
    failed = await choose_host(hosts, drill.host, power)
    say(f"{drill.scenario} on {failed.name} of {drill.cloud_name} ({len(hosts)} compute hosts)")
    observed = Observed(failed=failed.name, hosts=len(hosts), liveness=drill.liveness_channels)
    observed.report_interval_s = (drill.settings or EngineSettings()).detection.nova_report_interval_s
    if drill.bmc_records is not None:
        observed.witness = "the BMCs' own power records (not Redfish, not haven's fencer)"
    if drill.scenario == NOVA_COMPUTE_CRASH and drill.liveness_channels == "Nova":
        observed.notes.append(
            "liveness from Nova alone (no [coordination]: no haven agents): a crashed nova-compute "
            "then looks like a dead host, and haven fences it"
        )
    started = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="haven-drill-"))
            store = stack.enter_context(Store.open(f"sqlite:///{Path(tmp) / 'drill.db'}"))
            segments_per_zone(store, hosts)
            observed.booted = await boot(drill.workload, failed, drill.flavor, drill.image, drill.vms, say)
            report = await _with_engine(drill, power, store, failed, observed.booted, observed)
    finally:
        await _clean_up(drill, power, failed.name, observed.booted, observed)
    report.servers_deleted = observed.deleted
    report.wall_s = round(time.monotonic() - started, 3)
    return report


async def _with_engine(
    drill: CloudDrill,
    power: PowerControl,
    store: Store,
    failed: Host,
    booted: list[ServerId],
    observed: Observed,
) -> CloudDrillReport:
    clock = RealClock()
    witness = WitnessedCloud(drill.cloud, drill.bmc_records or power, dict.fromkeys(booted, failed.name))
    recorder = EventRecorder(drill.on_event)
    engine = Engine(witness, drill.liveness, drill.fencer, store, clock, drill.settings, on_event=recorder)
    observed.witnessed = witness.evacuations  # live: the recovery's wait reads it (a copy is kept at the end)
    engine.start()
    stop = asyncio.Event()
    loop = asyncio.create_task(serve_forever(engine, clock, stop, max_wait_s=POLL_S))
    try:
        await sleep_watching(loop, WARM_UP_S)
        affected = [s.id for s in await drill.cloud.list_servers(failed.name) if s.ha_enabled]
        observed.fault_at = clock.now()
        if drill.scenario == HOST_POWER_LOSS:
            await _power_loss(drill, power, engine, loop, failed.name, affected, recorder, observed)
        elif drill.scenario == HOST_HANG:
            await _hang(drill, power, engine, loop, failed.name, affected, recorder, observed)
        else:
            await _compute_crash(drill, engine, loop, failed.name, recorder, observed)
        await _wait_returned(drill, engine, loop, failed.name, observed)
    finally:
        stop.set()
        await loop
    observed.evacuations = await drill.workload.evacuations(None, observed.fault_at)
    observed.witnessed = list(witness.evacuations)
    return judge(drill.scenario, drill.cloud_name, affected, recorder, store, observed)


async def _power_loss(
    drill: CloudDrill,
    power: PowerControl,
    engine: Engine,
    loop: asyncio.Task[None],
    host: HostName,
    affected: list[ServerId],
    recorder: EventRecorder,
    observed: Observed,
) -> None:
    say = drill.progress
    recorder(
        EngineEvent(EventKind.FAULT_INJECTED, observed.fault_at, detail={"description": f"{host} BMC off"})
    )
    observed.injected = f"power off of {host} through its BMC ({len(affected)} HA VMs on it)"
    say(f"powering {host} off through its BMC; {len(affected)} HA VMs on it")
    await power.power_off(host)
    observed.powered_off = True
    await until(loop, lambda: _bmc_is(power, host, BmcPower.OFF), 60.0, f"{host}'s BMC to report Off")
    observed.bmc_off_at = time.time()
    say(f"{host}'s BMC reports Off; waiting for haven to recover its VMs")
    await _wait_recovered(drill, engine, loop, host, affected, recorder, observed)
    observed.live_fenced = await _live_hosts_off(drill, power, exclude=host)
    say(f"powering {host} on again")
    await power.power_on(host)
    observed.powered_off = False
    observed.power_on_at = time.time()


async def _hang(
    drill: CloudDrill,
    power: PowerControl,
    engine: Engine,
    loop: asyncio.Task[None],
    host: HostName,
    affected: list[ServerId],
    recorder: EventRecorder,
    observed: Observed,
) -> None:
    assert drill.hangs is not None and drill.bmc_records is not None
    say, records = drill.progress, drill.bmc_records
    recorder(
        EngineEvent(EventKind.FAULT_INJECTED, observed.fault_at, detail={"description": f"{host} hangs"})
    )
    observed.injected = (
        f"{host} hangs while powered: its nova-compute and haven agent frozen (SIGSTOP), "
        f"its BMC left On ({len(affected)} HA VMs on it)"
    )
    say(f"freezing {host}'s processes (SIGSTOP), its BMC left On; {len(affected)} HA VMs on it")
    observed.hung = True
    await drill.hangs.hang(host)
    frozen = ", ".join(str(p) for p in await drill.hangs.processes(host))
    observed.notes.append(f"hung: {frozen}; BMC (own record): {(await records.power_status(host)).value}")
    say(f"{host} hangs ({frozen}); waiting for haven to confirm it dead, fence it and recover its VMs")

    async def confirmed() -> bool:
        # nova-compute's last report as Nova stamps it, read until haven confirms the host dead:
        # haven's force-down (after the fence) stamps the service too, so a reading after it is no report.
        if any(e.kind is EventKind.HOST_CONFIRMED_DEAD and e.host == host for e, _ in recorder.events):
            return True
        reported = await drill.workload.reported_at(host)
        if not _forcing_down(recorder, host):
            observed.last_report_at = reported
        return False

    if await until(loop, confirmed, drill.give_up_s, f"{host} confirmed dead", required=False):
        await _wait_recovered(drill, engine, loop, host, affected, recorder, observed)
    else:
        observed.notes.append(f"haven did not confirm {host} dead within {drill.give_up_s:g} s")
    # The final check, from the BMC's own record: powered off when, and still off now.
    observed.bmc_off_at = await records.off_at(host, observed.fault_at)
    observed.bmc_at_end = await records.power_status(host)
    observed.live_fenced = await _live_hosts_off(drill, power, exclude=host)
    say(f"{host}: BMC's own record says {observed.bmc_at_end.value}; powering it on again")
    hangs = drill.hangs
    await hangs.release_hang(host)  # if haven never powered it off: SIGCONT
    observed.hung = False
    await power.power_on(host)
    observed.power_on_at = time.time()

    async def running() -> bool:
        return all(p.running for p in await hangs.processes(host))

    if await until(loop, running, RESTART_S, f"{host}'s processes running", required=False):
        now = ", ".join(str(p) for p in await hangs.processes(host))
        observed.notes.append(f"after power on: {now}")
        say(f"{host} powered on: {now}")
    else:
        observed.notes.append(f"{host}'s processes were not all running {RESTART_S:g} s after power on")


async def _wait_recovered(
    drill: CloudDrill,
    engine: Engine,
    loop: asyncio.Task[None],
    host: HostName,
    affected: list[ServerId],
    recorder: EventRecorder,
    observed: Observed,
) -> None:
    """Until haven opened and closed its notification for ``host`` and every HA VM is recovered
    elsewhere (or the recovery ended without), or ``give_up_s``; then the judge's own wait: Nova read
    again, each read sent after that moment, until it shows every HA VM recovered or ``judge_wait_s``.

    The list read in the poll that saw the recovery over was sent before that check, so it may show
    Nova as it was before haven's last verification: it is kept as ``first_look``, never judged.
    """

    async def over() -> bool:
        opened = any(e.kind is EventKind.NOTIFICATION_CREATED and e.host == host for e, _ in recorder.events)
        asked = {w.server_id for w in observed.witnessed}  # an evacuation whose answer was lost counts too
        if not set(affected) <= asked and not (opened and not engine.open_notifications()):
            # Nova cannot list every VM recovered before each was asked: no read of every server
            # (about 1 s of nova-api's time on the lab) competes with haven's own calls meanwhile,
            # as the oracle's and by-hand floors' watchers start once their calls are made.
            return False
        servers = await drill.workload.servers(affected)
        observed.first_look = servers
        if observed.all_active_at is None and _all_active_elsewhere(servers, affected, host):
            observed.all_active_at = time.time()
            took = observed.all_active_at - observed.fault_at
            drill.progress(f"every HA VM recovered on another host (Nova), {took:.1f} s after the fault")
        return (
            opened
            and not engine.open_notifications()
            and (observed.all_active_at is not None or _recovery_ended(recorder, host))
        )

    ended = await until(loop, over, drill.give_up_s, "the recovery", required=False)
    if not ended:
        observed.notes.append(f"gave up waiting for the recovery after {drill.give_up_s:g} s")

    async def poll(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
        return await until(loop, check, timeout_s, "Nova to show every HA VM recovered", required=False)

    wait_s = drill.judge_wait_s
    if ended and affected and not set(affected) & {w.server_id for w in observed.witnessed}:
        # haven's recovery is over (its notification closed) and no evacuate call for any of them
        # passed the witness (a failed fence stops the recovery before it): Nova cannot show one
        # recovered elsewhere, so the judge reads it once, no wait. Not when the wait above gave up:
        # haven may still be fencing, and its evacuations may yet come within the judge's wait.
        wait_s = 0.0
        observed.notes.append(
            f"no evacuate call for any HA VM of {host} reached Nova (the witness's record): the judge read "
            f"Nova once instead of waiting up to {drill.judge_wait_s:g} s for it to show them recovered"
        )
    look = await look_until_recovered(lambda: drill.workload.servers(affected), poll, affected, host, wait_s)
    observed.look = look
    observed.final = look.last if look.last is not None else dict(observed.first_look)
    if look.all_recovered_at is not None:
        if observed.all_active_at is None:
            observed.all_active_at = look.all_recovered_at
            took = look.all_recovered_at - observed.fault_at
            drill.progress(f"every HA VM recovered on another host (Nova), {took:.1f} s after the fault")
    else:
        observed.notes.append(
            f"Nova did not show every HA VM recovered within {wait_s:g} s after haven's "
            f"recovery was over ({look.reads} reads)"
        )


async def _compute_crash(
    drill: CloudDrill,
    engine: Engine,
    loop: asyncio.Task[None],
    host: HostName,
    recorder: EventRecorder,
    observed: Observed,
) -> None:
    assert drill.computes is not None
    say = drill.progress
    recorder(
        EngineEvent(EventKind.FAULT_INJECTED, observed.fault_at, detail={"description": f"{host} crash"})
    )
    observed.injected = f"nova-compute of {host} killed and kept down (host powered on)"
    say(f"killing nova-compute on {host} and keeping it down")
    await drill.computes.hold_down(host)
    observed.held = True

    async def disabled() -> bool:
        state = await drill.cloud.get_host(host)
        if not state.service_enabled and observed.disabled_at is None:
            observed.disabled_at, observed.disabled_reason = time.time(), state.disabled_reason
        return observed.disabled_at is not None and not engine.open_notifications()

    if await until(loop, disabled, drill.give_up_s, f"{host}'s service disabled", required=False):
        say(f"{host} disabled by haven: {observed.disabled_reason!r}")
    else:
        observed.notes.append(f"{host} was not disabled within {drill.give_up_s:g} s")
    observed.final = await drill.workload.servers(observed.booted)
    power = drill.power or drill.fencer
    observed.live_fenced = await _live_hosts_off(drill, power, exclude=None)
    say(f"letting nova-compute on {host} run again")
    await drill.computes.release(host)
    observed.held = False
    if host in observed.live_fenced:  # haven powered the live host off: undo that too
        await power.power_on(host)
    observed.power_on_at = time.time()


async def _wait_returned(
    drill: CloudDrill, engine: Engine, loop: asyncio.Task[None], host: HostName, observed: Observed
) -> None:
    """Until Nova lists ``host`` in service again (up, enabled, not forced down, reporting since the
    fault was undone), and haven has nothing open for it.

    Judged from Nova: the fault left the host forced down or disabled by haven (or only powered off,
    when the fence failed), so only haven's return to service (unset forced-down and enable after a
    power loss, a PROCESS STARTED notification after a crash) and a reporting compute make it so.
    """

    async def back() -> bool:
        if any(n.hostname == host for n in engine.open_notifications()):
            return False
        # Nova may still count a compute up that it has not yet missed: a report since is the proof.
        reported = await drill.workload.reported_at(host)
        if reported is None or reported <= observed.power_on_at:
            return False
        state = await drill.cloud.get_host(host)
        return state.service_up and state.service_enabled and not state.forced_down

    if await until(loop, back, drill.give_up_s, f"{host} back in service", required=False):
        observed.returned_at = time.time()
        drill.progress(f"{host} back in service, {observed.returned_at - observed.power_on_at:.1f} s after")
    else:
        observed.notes.append(f"{host} was not back in service {drill.give_up_s:g} s after the fault ended")


# ---- clean-up ----------------------------------------------------------------------------------


async def _clean_up(
    drill: CloudDrill, power: PowerControl, host: HostName, booted: list[ServerId], observed: Observed
) -> None:
    """Whatever happened: the host powered on (or its compute released), the drill's servers deleted."""
    with contextlib.suppress(HavenError):
        if observed.held and drill.computes is not None:
            await drill.computes.release(host)
        if observed.hung and drill.hangs is not None:
            await drill.hangs.release_hang(host)
        if observed.powered_off or await power.power_status(host) is BmcPower.OFF:
            await power.power_on(host)
    if booted:
        drill.progress(f"deleting the {len(booted)} servers the drill booted")
        observed.deleted = await delete(drill.workload, booted)


# ---- reading the cloud -------------------------------------------------------------------------


async def _bmc_is(power: PowerControl, host: HostName, wanted: BmcPower) -> bool:
    return await power.power_status(host) is wanted


async def _live_hosts_off(drill: CloudDrill, power: PowerControl, exclude: HostName | None) -> list[str]:
    """Hosts other than the failed one whose BMC reports Off: powered off though they had not failed."""
    off = []
    for host in await drill.cloud.list_hosts():
        if host.name == exclude:
            continue
        with contextlib.suppress(CloudError):
            if await power.power_status(host.name) is BmcPower.OFF:
                off.append(str(host.name))
    return off


def _all_active_elsewhere(servers: dict[ServerId, Server], ids: Sequence[ServerId], failed: HostName) -> bool:
    return all(s in servers and recovered_elsewhere(servers[s], failed) for s in ids)


def _forcing_down(recorder: EventRecorder, host: HostName) -> bool:
    return any(
        e.kind is EventKind.STEP_STARTED and e.host == host and e.detail.get("kind") == FORCE_DOWN
        for e, _ in recorder.events
    )


def _recovery_ended(recorder: EventRecorder, host: HostName) -> bool:
    return any(e.kind is EventKind.NOTIFICATION_FINISHED and e.host == host for e, _ in recorder.events)
