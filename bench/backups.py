"""Backups at fleet scale on the simulated cloud, in virtual time; prints figures, asserts nothing.

A simulated cloud of N servers (default 10,000), each with a backup policy (a share hourly, the rest
daily, keep 7; a share volume-backed, backed up by Cinder full then incremental), and haven serve's
backup service (haven.backups.serving: runner passes, rotation, restore drills) run pass by pass
through one virtual day. Figures, from the simulated cloud's ground
truth where it has it:
- backups taken (createBackup calls and Cinder backups accepted, how many incremental), and the most
  uploading at once against the cap; whether every incremental Cinder still holds has its parent;
- servers whose recovery point is within their policy at the end (newest active image in Glance, or
  newest available Cinder backup of the boot volume);
- windows missed (backup_missed alerts raised during the day: the store's alert history), and
  recovery points found stale (recovery_point_stale alerts);
- the planner's CPU per pass (haven.backups.planner.plan, process time): median and max over the
  day's passes, and the median over --runs re-plans of the end-of-day snapshot;
- the whole pass's wall time (planner, the store's reads and writes, the simulated cloud's calls).

Run: .venv/bin/python bench/backups.py [--servers 10000] [--hourly 0.05] [--volumes 0.2] [--cap 200]
     [--runs 5]
     (about 10 minutes for 10,000 servers on an idle core)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from haven.backups import planner
from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.planner import BackupSnapshot
from haven.backups.runner import HISTORY_S
from haven.backups.serving import BackupService
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import ImageStatus, VolumeBackupStatus
from haven.domain.clock import VIRTUAL_EPOCH, VirtualClock
from haven.domain.incidents import AlertKind
from haven.store import Store

DAY = 86400.0
_REAL_PLAN = planner.plan


def timed_plan(samples: list[float]) -> Callable[[BackupSnapshot], Any]:
    def plan(snapshot: BackupSnapshot) -> Any:
        started = time.process_time()
        try:
            return _REAL_PLAN(snapshot)
        finally:
            samples.append(time.process_time() - started)

    return plan


async def day(args: argparse.Namespace) -> dict[str, Any]:
    # the day starts at midnight UTC, as a fleet's first day: no window is overdue before haven starts
    clock = VirtualClock(start=VIRTUAL_EPOCH - VIRTUAL_EPOCH % DAY)
    hosts = max(1, args.servers // 20)
    cloud, _ = build_cloud(CloudSpec(hosts=hosts, vms=args.servers, zones=1, seed=1), clock)
    port = SimBackups(cloud)
    ids = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    hourly = set(ids[: int(len(ids) * args.hourly)])
    for sid in ids:
        cloud.sim_server(sid).metadata["haven_backup"] = "hourly" if sid in hourly else "daily"
    on_volumes = ids[:: max(1, round(1 / args.volumes))] if args.volumes > 0 else []
    for sid in on_volumes:
        port.make_volume_backed(sid)
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(max_concurrent=args.cap, jitter_s=args.jitter),
        drills=DrillSettings(interval_s=DAY, sample=args.drills, concurrency=args.drills),
    )
    samples: list[float] = []
    planner.plan = timed_plan(samples)  # the runner calls planner.plan: each pass's CPU measured
    walls: list[float] = []
    with Store.open("sqlite://") as store:
        service = BackupService(config, port, store, clock)
        start = clock.now()
        while clock.now() < start + DAY:
            began = time.perf_counter()
            await service.run_round()
            walls.append(time.perf_counter() - began)
            clock.advance_to(clock.now() + args.step)
        plan = service.last_plan
        assert plan is not None
        newest: dict[str, float] = {}
        for image in port.images.values():
            if image.status is ImageStatus.ACTIVE:
                newest[image.server_id] = max(newest.get(image.server_id, 0.0), image.created_at)
        owner = {vols[0]: sid for sid, vols in port.volumes.items()}
        for vb in port.volume_backups.values():
            if vb.status is VolumeBackupStatus.AVAILABLE and vb.volume_id in owner:
                sid = owner[vb.volume_id]
                newest[sid] = max(newest.get(sid, 0.0), vb.created_at)
        held = {b.id for b in port.volume_backups.values() if b.status is not VolumeBackupStatus.DELETED}
        intact = all(b.parent in held for b in port.volume_backups.values() if b.id in held and b.incremental)
        now = clock.now()
        within = sum(
            1
            for s in plan.statuses
            if now - newest.get(s.server_id, -DAY) <= planner.max_age_s(s.policy, config.scheduler)
        )
        missed = [a for a in store.list_alerts(active_only=False) if a.kind is AlertKind.BACKUP_MISSED]
        stale = [a for a in store.list_alerts(active_only=False) if a.kind is AlertKind.RECOVERY_POINT_STALE]
        drills = [r for r in store.list_restores() if r.purpose.value == "drill"]
        records = store.backups_relevant(clock.now() - HISTORY_S)
        protected = await service.runner.protected()
        snapshot = BackupSnapshot(clock.now(), protected, records, config.scheduler)
        replans = []
        for _ in range(args.runs):
            began_cpu = time.process_time()
            _REAL_PLAN(snapshot)
            replans.append(time.process_time() - began_cpu)
    return {
        "servers": len(ids),
        "hourly": len(hourly),
        "cap": args.cap,
        "passes": len(samples),
        "volume_backed": len(on_volumes),
        "backups_taken": len(port.create_calls),
        "cinder_backups_taken": len(port.volume_backup_calls),
        "cinder_incremental": sum(1 for _, _, inc in port.volume_backup_calls if inc),
        "cinder_chains_intact": intact,
        "peak_uploading": port.peak_uploading,
        "within_policy": within,
        "missed_alerts": len(missed),
        "stale_alerts": len(stale),
        "drills": len(drills),
        "drills_passed": sum(1 for d in drills if d.state.value == "done"),
        "planner_cpu_ms_median": statistics.median(samples) * 1000,
        "planner_cpu_ms_max": max(samples) * 1000,
        "planner_cpu_ms_end_of_day_median": statistics.median(replans) * 1000,
        "pass_wall_ms_median": statistics.median(walls) * 1000,
        "pass_wall_ms_max": max(walls) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument("--hourly", type=float, default=0.05, help="share of servers backed up hourly")
    parser.add_argument("--volumes", type=float, default=0.2, help="share of servers volume-backed (Cinder)")
    parser.add_argument("--cap", type=int, default=200, help="[backups] max_concurrent")
    parser.add_argument("--jitter", type=float, default=21600.0, help="[backups] jitter_s")
    parser.add_argument("--step", type=float, default=300.0, help="virtual seconds between passes")
    parser.add_argument("--drills", type=int, default=20, help="restore drills per round (sample)")
    parser.add_argument("--runs", type=int, default=5, help="re-plans of the end-of-day snapshot")
    args = parser.parse_args()
    logging.getLogger("haven").setLevel(logging.ERROR)
    began = time.perf_counter()
    figures = asyncio.run(day(args))
    figures["wall_s"] = time.perf_counter() - began
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.1f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
