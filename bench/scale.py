"""Benchmarks for the core issue's performance targets; prints figures, asserts nothing.

Run: .venv/bin/python bench/scale.py            (about a minute on a 2-core machine)

A drill that never detected (or never recovered) is counted and reported apart ("n of N runs did
not detect"), never as 0 s, and left out of the medians (bench/figures.py).
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from figures import seconds, spread

from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.detection.detector import Membership, detect
from haven.domain.clock import VirtualClock
from haven.domain.liveness import HostLiveness
from haven.domain.settings import DetectionSettings, EngineSettings, RecoverySettings
from haven.drill.run import DrillOptions, run_drill
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.store import Store

HOSTS, VMS = 10_000, 200_000


def line(name: str, value: str) -> None:
    print(f"  {name:<58} {value}")


async def steady_state_pass() -> None:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=HOSTS, vms=VMS), clock)
    with Store.open("sqlite://") as store:
        segments_per_zone(store, await cloud.list_hosts())
        engine = Engine(cloud, cloud, SimFencer(cloud), store, clock)
        engine.start()
        samples = []
        for _ in range(200):
            clock.advance_to(engine.next_wake())
            start = time.perf_counter()
            await engine.tick()
            samples.append(time.perf_counter() - start)
        line(
            "steady-state engine tick, 10,000 healthy hosts (median)",
            f"{statistics.median(samples) * 1e3:.3f} ms",
        )
        # The worst case: every host reported (as if liveness had no change tracking at all).
        now = clock.now()
        readings = [HostLiveness(h, now - 0.2, now - 0.2) for h in cloud.host_names()]
        membership = Membership({h: "s" for h in cloud.host_names()}, {"s": HOSTS})  # type: ignore[dict-item]
        full = []
        for _ in range(20):
            start = time.perf_counter()
            detect(readings, membership, {}, now, DetectionSettings())
            full.append(time.perf_counter() - start)
        line("detection over all 10,000 hosts' readings (median)", f"{statistics.median(full) * 1e3:.2f} ms")


async def rack_loss(parallel: int) -> None:
    settings = EngineSettings(recovery=RecoverySettings(max_parallel_evacuations=parallel))
    options = DrillOptions("rack-loss", hosts=HOSTS, vms=VMS, ha_fraction=1.0, settings=settings)
    report = await run_drill(options)
    line(f"rack loss, {report.ha_vms_affected} HA VMs, max {parallel} evacuations in flight", report.verdict)
    line("  CPU from the failure to every evacuation issued", f"{report.cpu_s_to_all_issued:.2f} s")
    line(
        "  death to confirmed / to last HA VM verified (simulated)",
        f"{seconds(report.detect_s, 'did not detect')} / {seconds(report.recover_s, 'did not recover')}",
    )
    line(
        "  lost / running twice / unfenced / false",
        f"{report.vms_lost} / {report.vms_running_twice} / "
        f"{report.evacuated_unfenced} / {report.false_evacuations}",
    )


async def default_timings() -> None:
    detect_s: list[float | None] = []
    recover_s: list[float | None] = []
    for seed in range(1, 21):
        r = await run_drill(DrillOptions("host-power-loss", seed=seed))
        detect_s.append(r.detect_s)
        recover_s.append(r.recover_s)
    line(
        "host power loss, 30 hosts, 20 seeds: death to confirmed",
        f"{spread(detect_s).describe('did not detect')} (simulated)",
    )
    line(
        "  death to every HA VM verified",
        f"{spread(recover_s).describe('did not recover')} (simulated)",
    )


def whole_process() -> None:
    haven = Path(sys.executable).with_name("haven")
    start = time.perf_counter()
    subprocess.run(
        [str(haven), "drill", "rack-loss", "--hosts", str(HOSTS), "--vms", str(VMS), "--json"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    line(
        "`haven drill rack-loss --hosts 10000 --vms 200000`, whole process",
        f"{time.perf_counter() - start:.1f} s",
    )


async def main() -> None:
    print("haven core benchmarks (simulated cloud, virtual time)")
    await default_timings()
    await steady_state_pass()
    for parallel in (RecoverySettings().max_parallel_evacuations, 1000):
        await rack_loss(parallel)
    whole_process()


if __name__ == "__main__":
    asyncio.run(main())
