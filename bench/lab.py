"""Host death to every HA VM verified ACTIVE elsewhere, on the real Nova lab; prints figures, asserts nothing.

Each run, twice on the same lab and host, 20 HA servers (``--vms``) booted on it first:
- haven: `haven drill host-power-loss --cloud lab` (haven.drill.cloud_drill): the host's BMC
  powered off, then haven detects (Nova's service state, as `haven serve` does), fences
  through Redfish, forces the service down, plans, evacuates and verifies; the phase times
  are haven's own events, the clock starts at the BMC power-off;
- the Nova floor, by hand: the BMC powered off, wait until Nova marks the service down,
  force it down, evacuate all in parallel (``--vms`` threads, no target host), wait until
  Nova lists every one ACTIVE on another host. The host is powered on, unforced and its
  servers deleted after each run.
The goal (issue 3) is haven ≤ 15 s; the ratio haven / floor says what haven adds to Nova. It
compares like with like: both times are the moment Nova itself lists every HA VM ACTIVE on another
host ("nova all active" for haven, as its drill report observes Nova; "all active" for the floor),
never haven's own "verified" event (which is printed too, as haven's own view). A run that never
got there is counted apart ("n of N runs ..."), never as 0 s (bench/figures.py).

Run: .venv/bin/python bench/lab.py [--folder LAB] [--runs 5] [--vms 20] [--host compute-1]
Without --folder it starts a lab (haven.lab.lab.up, 2 computes) in a temporary folder and
stops it at the end. About 2.5 min per run (both sequences) on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

from figures import Spread, ratio, spread

from haven.cli.cloud_drill import LIVENESS_CHANNELS
from haven.cli.clouds import choose_cloud, open_liveness
from haven.cli.lab_controls import LabPower, running_lab
from haven.cloud.openstack import OpenStackCloud, open_cloud
from haven.cloud.openstack.workload import Workload, open_workload
from haven.cloud.sim import CloudSpec
from haven.domain.clock import RealClock
from haven.domain.cloud import TaskState, VmState
from haven.domain.errors import CloudError
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower
from haven.drill.cloud_drill import CloudDrill, run_cloud_drill
from haven.drill.cloud_prep import HA_METADATA
from haven.fencing.registry import build_fencer
from haven.lab import lab
from haven.lab.state import LabState
from haven.service.config import load_config

POLL_S = 0.2
HAVEN_PHASES = ("confirmed", "fenced", "forced down", "evacuate calls", "verified")
FLOOR_PHASES = ("nova down", "forced down", "evacuate calls", "all active")


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def a_lab(folder: Path | None) -> Iterator[LabState]:
    if folder is not None:
        yield running_lab(folder)
        return
    own = Path(tempfile.mkdtemp(prefix="haven-bench-lab-"))
    try:
        yield lab.up(own, 2, progress=lambda m: say(f"lab: {m}"))
    finally:
        lab.down(own)
        shutil.rmtree(own, ignore_errors=True)


async def haven_run(state: LabState, host: HostName, vms: int) -> tuple[dict[str, float | None], str]:
    config = load_config(Path(state.folder), Path(state.files["haven.toml"]), cloud_name="lab")
    chosen = choose_cloud(config, CloudSpec(), RealClock(), os.environ)
    fencer = build_fencer(config.fencing, os.environ)
    workload = open_workload("lab")
    try:
        async with open_liveness(chosen, config, fencer) as liveness:  # as `haven serve` detects
            drill = CloudDrill(
                "host-power-loss", "lab", chosen.cloud, liveness, fencer, workload, state.flavor,
                state.image_id, power=LabPower(state), vms=vms, host=host, settings=config.engine,
                progress=lambda m: say(f"haven: {m}"),
                liveness_channels=LIVENESS_CHANNELS[config.coordination.url is not None],
            )  # fmt: skip
            report = await run_cloud_drill(drill)
    finally:
        workload.close()
        chosen.close()
    if report.verdict != "recovered":
        say(f"haven: verdict {report.verdict}: {report.checks}")
    ends = {p.name: p.end_s for p in report.phases}
    return {
        "confirmed": ends.get("confirmed"),
        "fenced": ends.get("fenced"),
        "forced down": ends.get("forced down"),
        "evacuate calls": report.evacuate_calls_s,
        "verified": report.recover_s,
        "nova all active": report.nova_all_active_s,
    }, f"liveness from {report.liveness}"


async def floor_run(state: LabState, host: HostName, vms: int) -> dict[str, float | None]:
    """The fastest by-hand sequence: wait for Nova's own verdict, force down, evacuate everything."""
    cloud = open_cloud("lab", max_workers=vms)
    workload = open_workload("lab")
    power = LabPower(state)
    booted: list[ServerId] = []
    times: dict[str, float | None] = dict.fromkeys(FLOOR_PHASES)
    try:
        flavor = await workload.flavor_id(state.flavor)
        zone = (await cloud.get_host(host)).zone
        stamp = time.strftime("%H%M%S")
        for i in range(vms):
            name = f"haven-floor-{stamp}-{i + 1}"
            booted.append(await workload.boot(name, host, zone, flavor, state.image_id, HA_METADATA))
        await until(lambda: settled(workload, booted, on=host), 240, f"{vms} servers ACTIVE on {host}")
        say(f"floor: {vms} servers ACTIVE on {host}; powering it off")
        t0 = time.time()
        await power.power_off(host)

        async def nova_down() -> bool:
            return not (await cloud.get_host(host)).service_up

        await until(nova_down, 120, f"Nova to mark {host} down")
        times["nova down"] = time.time() - t0
        await cloud.force_down(host, True)
        times["forced down"] = time.time() - t0
        await asyncio.gather(*(cloud.evacuate(s, None) for s in booted))
        times["evacuate calls"] = time.time() - t0
        await until(lambda: settled(workload, booted, off=host), 300, "every server ACTIVE elsewhere")
        times["all active"] = time.time() - t0
        say(f"floor: all ACTIVE elsewhere {times['all active']:.1f} s after the power-off")
    finally:
        if await power.power_status(host) is not BmcPower.ON:
            await power.power_on(host)
        await until(lambda: unforced(cloud, host), 180, f"Nova to accept {host} as no longer forced down")
        await until(lambda: service_up(cloud, host), 120, f"{host} up again")
        for server_id in booted:
            await workload.delete(server_id)
        await until(lambda: gone(workload, booted), 120, "the servers deleted")
        workload.close()
        cloud.close()
    return times


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


def summary(name: str, runs: list[dict[str, float | None]], keys: tuple[str, ...]) -> dict[str, Spread]:
    print(f"\n{name} ({len(runs)} runs; seconds after the BMC power-off):")
    print(f"  {'phase':<16} {'median':>8} {'min':>8} {'max':>8}   runs")
    spreads = {}
    for key in keys:
        found = spreads[key] = spread(r.get(key) for r in runs)
        missed = f"   ({found.missing} of {found.runs} runs never got there)" if found.missing else ""
        if found.median is None or found.min is None or found.max is None:
            print(f"  {key:<16} {'-':>8}{missed}")
            continue
        listed = " ".join(f"{v:.1f}" for v in found.measured)
        print(f"  {key:<16} {found.median:8.2f} {found.min:8.2f} {found.max:8.2f}   {listed}{missed}")
    return spreads


def comparison(haven: Mapping[str, Spread], floor: Mapping[str, Spread]) -> list[str]:
    """The lines that set haven against the floor: the ratio of like with like, and what each time is."""
    nova_view, floor_view, own = haven.get("nova all active"), floor.get("all active"), haven.get("verified")
    lines = []
    if nova_view is not None and floor_view is not None:
        lines.append(f"as Nova lists every HA VM ACTIVE elsewhere (median): haven {_s(nova_view)}, "
                     f"floor {_s(floor_view)}")  # fmt: skip
        like = ratio(nova_view, floor_view)
        lines.append(
            f"ratio haven / floor, both as Nova lists them: {'-' if like is None else f'{like:.2f}'}"
        )
    if own is not None:
        lines.append(f"haven's own 'verified' event (haven's view, not in the ratio): median {_s(own)}")
    return lines


def _s(found: Spread) -> str:
    return "-" if found.median is None else f"{found.median:.2f} s"


async def bench(state: LabState, runs: int, vms: int, host: HostName, floor: bool) -> None:
    havens: list[dict[str, float | None]] = []
    liveness = ""
    floors: list[dict[str, float | None]] = []
    for run in range(1, runs + 1):
        say(f"run {run}/{runs}: haven")
        result, liveness = await haven_run(state, host, vms)
        havens.append(result)
        say(f"run {run}: haven verified all {vms} at {havens[-1]['verified']} s")
        if floor:
            say(f"run {run}/{runs}: the Nova floor by hand")
            floors.append(await floor_run(state, host, vms))
    print(f"\nlab: {len(state.computes)} computes, {vms} HA servers on {host}, {runs} runs; {liveness}")
    h = summary("haven (host death -> every HA VM verified ACTIVE elsewhere)", havens,
                (*HAVEN_PHASES, "nova all active"))  # fmt: skip
    if floor:
        f = summary(
            "Nova floor by hand (wait for Nova's down, force down, evacuate all)", floors, FLOOR_PHASES
        )
        print()
        for text in comparison(h, f):
            print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="a running lab's folder (default: start one)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vms", type=int, default=20)
    parser.add_argument("--host", default="compute-1")
    parser.add_argument("--no-floor", action="store_true", help="measure haven only")
    args = parser.parse_args()
    with a_lab(args.folder) as state:
        os.environ["OS_CLIENT_CONFIG_FILE"] = state.files["clouds.yaml"]
        asyncio.run(bench(state, args.runs, args.vms, HostName(args.host), not args.no_floor))


if __name__ == "__main__":
    main()
