"""Backups at fleet scale on the simulated cloud, in virtual time; prints figures, asserts nothing.

A simulated cloud of N servers (default 10,000), each with a backup policy (a share hourly, the rest
daily, keep 7; a share volume-backed, backed up by Cinder full then incremental), and haven serve's
backup service (haven.backups.serving: runner passes, rotation, restore drills) run pass by pass
through one virtual day from midnight UTC (haven first sees every server at midnight). Figures, from
the simulated cloud's ground truth where it has it:
- backups taken (createBackup calls and Cinder backups accepted, how many incremental), and the most
  uploading at once against the cap; whether every incremental Cinder still holds has its parent;
- per schedule (hourly, daily), sampled after every pass: each server's recovery-point age (its
  newest active image in Glance, or newest available Cinder backup of its boot volume; with none yet,
  counted from the run's start), the worst over the day against the policy's allowance (period +
  jitter + grace) and how many servers went over it; windows that closed in the day with no good
  backup taken in them (a late backup taken in the next window covers that one, not its own); the
  latest first backup;
- servers within their policy at the end, and all day long;
- backup_missed and recovery_point_stale alerts raised during the day (the store's alert history),
  and on how many servers;
- the cap's capacity: a backup holds its slot until the first pass after its upload ends
  (capacity_slot_s), so cap x 3,600 / slot backups an hour, against the most windows due in one hour;
- CPU (process time) over the day: the whole process, the simulated cloud's share (every call haven
  makes to it, timed) and this bench's sampling; engine CPU per backup is the whole minus those two
  (haven's runner, planner, store and drills), divided by the backups taken;
- the planner's CPU per pass (haven.backups.planner.plan): median and max over the day's passes,
  and the median over --runs re-plans of the end-of-day snapshot;
- the whole pass's wall time (planner, the store's reads and writes, the simulated cloud's calls).
It prints the exact command first (every flag), and the load average at the start and the end.

Run: nice -n 19 .venv/bin/python bench/backups.py [--servers 10000] [--hourly 0.05] [--volumes 0.2]
     [--cap 200] [--jitter 21600] [--step 300] [--drills 20] [--runs 5]
     (measured 2026-12-06, docs/backups.md: --servers 400 --cap 8: 48 s wall at a load of 1 to 4, 86 s
     at 10; --servers 2000 --cap 40: 8 min at 5 to 10, 2.4 min of CPU; --servers 10000: 20.5 min at a
     load of 2.5 to 4.4, 17 min of CPU, of which 10 min the simulated cloud's own)

With --lab: the same runner and restorer against the lab's real Nova and Glance (haven.lab.lab.up in a
temporary folder, stopped at the end; or the running lab in --folder). --servers servers (default 20)
are booted from the lab's image with metadata haven_backup=--schedule (a 5-field cron; default every 4
minutes, so rounds are minutes apart on the wall clock) and haven_backup_keep=--keep; the runner passes
(as haven serve runs them, a pass every --pass-s s) with [backups] max_concurrent=--cap and no jitter,
for --rounds schedule windows; then one restore drill round of --drills servers (--drill-concurrency at
once). Nova's fake virt driver never uploads a snapshot (docs/backups.md): a thread here plays the
hypervisor's part, uploading 1 KiB to each of haven's images Glance holds queued (as
tests/backups/test_lab.py does). Figures, from Nova's and Glance's own answers where they have them:
per backup, createBackup asked to Glance active (haven's record: created_at to completed_at); each
round's duration (the window's start to the last of its backups available); the most servers Nova
showed in a backup task at once and the most backups haven had in flight, against the cap; Glance's
active backup images per server at the end against keep; per drill, the boot to ACTIVE (haven's
record, checked against Nova's server seen ACTIVE) and the recovery point it proved (the backup's
age when the drill started).

Run: .venv/bin/python bench/backups.py --lab [--servers 20] [--cap 5] [--keep 2] [--rounds 3]
     [--schedule "*/4 * * * *"] [--backup-timeout 120] [--drills 20] [--drill-concurrency 5]
     [--computes 2] [--folder LAB]

With --lab --cinder: the same, on a lab with Cinder (haven.lab.lab.up(cinder=True); or a running
`haven lab up --cinder` in --folder), the servers volume-backed: each boots from its own 1 GiB Cinder
volume made from the lab's image (NFS driver, the volume a file in LAB/cinder/export), so haven's
runner asks Cinder for backups (force, full then incremental: haven's chains) and its drills restore
Cinder backups to new volumes and boot them. Before the first round a marker (the volume's id) is
written into each volume's file at 1 MiB. Nova's fake virt driver has no assisted volume snapshots
(ComputeDriver.volume_snapshot_create raises NotImplementedError), which Cinder's NFS driver needs to
back up an attached volume (a temporary snapshot: a qcow2 overlay that the hypervisor switches to,
then merges back): the Hypervisor thread plays that part too, as libvirt would on the files: on a
temporary snapshot's create it reports Nova done (os-update_snapshot_status creating 90%), on its
delete it pulls the base into the active overlay (qemu-img rebase -b "", libvirt's blockRebase) and
reports done (deleting 90%). Extra figures, from Cinder's own answers: Cinder backups available per
volume (full / incremental), whether every volume's chain is whole (its oldest kept backup a full,
each incremental with an older one kept), and, for --verify volumes, the newest backup restored by
Cinder to a new volume and the marker read back from its file.

Run: .venv/bin/python bench/backups.py --lab --cinder [--servers 5] [--cap 5] [--keep 2] [--rounds 3]
     [--verify 3] [--folder LAB]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import inspect
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from haven.backups import planner, schedule
from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.planner import BackupSnapshot
from haven.backups.runner import HISTORY_S
from haven.backups.serving import BackupService
from haven.cloud.backups import BackupPort
from haven.cloud.sim.backups import SimBackups, SimImage, SimVolumeBackup
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupRecord, ImageStatus, VolumeBackupStatus
from haven.domain.clock import VIRTUAL_EPOCH, VirtualClock
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind
from haven.store import Store

DAY = 86400.0
MARK_AT = 2**20  # --cinder: where each volume's marker is written
_REAL_PLAN = planner.plan


def timed_plan(samples: list[float]) -> Callable[[BackupSnapshot], planner.BackupPlan]:
    def plan(snapshot: BackupSnapshot) -> planner.BackupPlan:
        started = time.process_time()
        try:
            return _REAL_PLAN(snapshot)
        finally:
            samples.append(time.process_time() - started)

    return plan


class TimedPort:
    """The simulated cloud as haven's engine sees it: each call's process time added to ``cpu_s`` (the
    simulated cloud's own CPU, taken out of the engine's). Its calls never suspend, so a call's process
    time is the simulated cloud's alone."""

    def __init__(self, port: SimBackups) -> None:
        self._port = port
        self.cpu_s = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._port, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.process_time()
            try:
                return await attr(*args, **kwargs)
            finally:
                self.cpu_s += time.process_time() - began

        return timed


class Ages:
    """Ground truth, sampled after each pass: each server's newest good backup (an active image, or an
    available Cinder backup of its boot volume) and its worst recovery-point age so far; a server with
    no good backup yet counts from the run's start. Also every backup that became good (the windows
    they fell in are counted at the end)."""

    def __init__(self, port: SimBackups, ids: list[ServerId], start: float) -> None:
        self.port, self.start = port, start
        self.owner = {vols[0]: sid for sid, vols in port.volumes.items()}
        self.newest: dict[str, float] = {}
        self.worst = dict.fromkeys(ids, 0.0)
        self.good: dict[str, list[float]] = {sid: [] for sid in ids}
        self._images: list[SimImage] = []  # not yet settled (queued, saving)
        self._volume_backups: list[SimVolumeBackup] = []
        self._seen_images = self._seen_volume_backups = 0
        self.cpu_s = 0.0

    def sample(self, now: float) -> None:
        began = time.process_time()
        images = list(self.port.images.values())  # append-only: the new ones since the last sample
        self._images += images[self._seen_images :]
        self._seen_images = len(images)
        waiting_images = []
        for image in self._images:
            if image.status is ImageStatus.ACTIVE:
                self._good(image.server_id, image.created_at)
            elif image.status in (ImageStatus.QUEUED, ImageStatus.SAVING):
                waiting_images.append(image)
        self._images = waiting_images
        backups = list(self.port.volume_backups.values())
        self._volume_backups += backups[self._seen_volume_backups :]
        self._seen_volume_backups = len(backups)
        waiting_backups = []
        for vb in self._volume_backups:
            if vb.status is VolumeBackupStatus.AVAILABLE and vb.volume_id in self.owner:
                self._good(self.owner[vb.volume_id], vb.created_at)
            elif vb.status is VolumeBackupStatus.CREATING:
                waiting_backups.append(vb)
        self._volume_backups = waiting_backups
        worst, newest, start = self.worst, self.newest, self.start
        for sid, age in worst.items():
            now_age = now - newest.get(sid, start)
            if now_age > age:
                worst[sid] = now_age
        self.cpu_s += time.process_time() - began

    def _good(self, server_id: str, at: float) -> None:
        if server_id in self.good:
            self.good[server_id].append(at)
            self.newest[server_id] = max(self.newest.get(server_id, at), at)


def windows(text: str, start: float, end: float) -> list[tuple[float, float]]:
    """The schedule's windows [slot, next slot) that opened and closed within [start, end]."""
    sched = schedule.parse(text)
    slot = sched.next_slot(start - 1)
    found: list[tuple[float, float]] = []
    while True:
        following = sched.next_slot(slot)
        if following > end:
            return found
        found.append((slot, following))
        slot = following


def command(args: argparse.Namespace) -> str:
    """The exact command these figures came from (every flag spelled out)."""
    flags = (
        f"--servers {args.servers} --hourly {args.hourly:g} --volumes {args.volumes:g} --cap {args.cap} "
        f"--jitter {args.jitter:g} --step {args.step:g} --drills {args.drills} --runs {args.runs}"
    )
    return f"nice -n 19 .venv/bin/python bench/backups.py {flags}"


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
    planner.plan = timed_plan(samples)  # type: ignore[assignment]  # the runner calls planner.plan: each pass's CPU measured
    walls: list[float] = []
    timed_port = TimedPort(port)
    with Store.open("sqlite://") as store:
        service = BackupService(config, cast(BackupPort, timed_port), store, clock)
        start = clock.now()
        ages = Ages(port, ids, start)
        cpu_began = time.process_time()
        while clock.now() < start + DAY:
            began = time.perf_counter()
            await service.run_round()
            walls.append(time.perf_counter() - began)
            ages.sample(clock.now())
            clock.advance_to(clock.now() + args.step)
        day_cpu_s = time.process_time() - cpu_began
        end = clock.now()
        plan = service.last_plan
        assert plan is not None
        held = {b.id for b in port.volume_backups.values() if b.status is not VolumeBackupStatus.DELETED}
        intact = all(b.parent in held for b in port.volume_backups.values() if b.id in held and b.incremental)
        within = sum(
            1
            for s in plan.statuses
            if end - ages.newest.get(s.server_id, start) <= planner.max_age_s(s.policy, config.scheduler)
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
    # ground truth, per schedule: windows that closed in the day with no good backup taken in them (a
    # late backup taken in the next window covers that one, not its own), the worst recovery-point age
    # against the policy's allowance, the latest first backup
    policies = {item.target.id: item.policy for item in protected}
    kinds = {"hourly": sorted(hourly), "daily": sorted(set(ids) - hourly)}
    taken = len(port.create_calls) + len(port.volume_backup_calls)
    slot_s = args.step * math.ceil(max(port.timings.backup_s, port.timings.volume_backup_s) / args.step)
    due_per_hour: dict[int, int] = {}
    figures: dict[str, Any] = {
        "servers": len(ids), "hourly": len(hourly), "cap": args.cap, "passes": len(samples),
        "volume_backed": len(on_volumes), "backups_taken": taken,
        "cinder_backups_taken": len(port.volume_backup_calls),
        "cinder_incremental": sum(1 for _, _, inc in port.volume_backup_calls if inc),
        "cinder_chains_intact": intact, "peak_uploading": port.peak_uploading,
    }  # fmt: skip
    for kind, members in kinds.items():
        if not members:
            continue
        spans = windows(kind, start, end)
        allowed = planner.max_age_s(policies[members[0]], config.scheduler)
        empty = over = 0
        firsts = []
        for sid in members:
            got = sorted(ages.good[sid])
            empty += sum(1 for a, b in spans if bisect.bisect_left(got, a) == bisect.bisect_left(got, b))
            over += ages.worst[sid] > allowed
            firsts.append((got[0] if got else end) - start)
            offset = schedule.jitter(sid, schedule.parse(kind), args.jitter)
            for a, _ in spans:
                hour = int((a + offset - start) // 3600)
                due_per_hour[hour] = due_per_hour.get(hour, 0) + 1
        figures[f"{kind}_windows_due"] = len(spans) * len(members)
        figures[f"{kind}_windows_without_backup"] = empty
        figures[f"{kind}_allowed_age_h"] = round(allowed / 3600, 2)
        figures[f"{kind}_worst_age_h"] = round(max(ages.worst[sid] for sid in members) / 3600, 2)
        figures[f"{kind}_servers_over_policy"] = over
        figures[f"{kind}_first_backup_h_max"] = round(max(firsts) / 3600, 2)
    sim_cpu, sampler_cpu = timed_port.cpu_s, ages.cpu_s
    figures.update({
        "within_policy_at_end": within,
        "within_policy_all_day": sum(
            1 for sid in ids if ages.worst[sid] <= planner.max_age_s(policies[sid], config.scheduler)
        ),
        "missed_alerts": len(missed), "stale_alerts": len(stale),
        "missed_alert_servers": len({a.host for a in missed}),
        "stale_alert_servers": len({a.host for a in stale}),
        "capacity_slot_s": slot_s,
        "capacity_per_day": int(args.cap * DAY / slot_s),
        "windows_due_per_day": sum(figures.get(f"{k}_windows_due", 0) for k in kinds),
        "capacity_per_hour": int(args.cap * 3600 / slot_s),
        "due_per_hour_max": max(due_per_hour.values(), default=0),
        "drills": len(drills), "drills_passed": sum(1 for d in drills if d.state.value == "done"),
        "process_cpu_s_day": day_cpu_s,
        "sim_cloud_cpu_s": sim_cpu,
        "bench_sampling_cpu_s": sampler_cpu,
        "engine_cpu_ms_per_backup": (day_cpu_s - sim_cpu - sampler_cpu) / max(taken, 1) * 1000,
        "process_cpu_ms_per_backup": day_cpu_s / max(taken, 1) * 1000,
        "planner_cpu_ms_median": statistics.median(samples) * 1000,
        "planner_cpu_ms_max": max(samples) * 1000,
        "planner_cpu_ms_end_of_day_median": statistics.median(replans) * 1000,
        "pass_wall_ms_median": statistics.median(walls) * 1000,
        "pass_wall_ms_max": max(walls) * 1000,
    })  # fmt: skip
    return figures


# ---- --lab: the real Nova and Glance ---------------------------------------------------------------


@contextlib.contextmanager
def own_lab(folder: Path | None, computes: int, cinder: bool = False) -> Iterator[Any]:
    from haven.cli.lab_controls import running_lab
    from haven.lab import lab

    if folder is not None:
        state = running_lab(folder)
        if cinder and "volume" not in state.urls:
            raise SystemExit(f"--cinder: the lab in {folder} has no Cinder (`haven lab up --cinder`)")
        yield state
        return
    own = Path(tempfile.mkdtemp(prefix="haven-bench-backups-lab-"))
    try:
        yield lab.up(own, computes, progress=lambda m: print(f"lab: {m}", flush=True), cinder=cinder)
    finally:
        lab.down(own)
        shutil.rmtree(own, ignore_errors=True)


class Hypervisor(threading.Thread):
    """Plays the fake virt driver's missing part (it never uploads a snapshot): uploads 1 KiB to each of
    haven's images Glance holds queued; samples Nova (our servers in a task) and Glance meanwhile."""

    def __init__(self, conn: Any, servers: set[str], export: Path | None = None) -> None:
        super().__init__(daemon=True)
        self.conn, self.servers = conn, servers
        self.export = export  # --cinder: the NFS share's folder, where the volumes are files
        self.volumes: set[str] = set()  # --cinder: the servers' volumes (their snapshots are played)
        self.stop = threading.Event()
        self.uploaded: dict[str, float] = {}
        self.snapshots_created: set[str] = set()
        self.snapshots_merged: set[str] = set()
        self.peak_nova_tasks = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.wait(0.3):
            try:
                self._tick()
            except Exception as exc:  # a sample lost is reported, never the thread
                self.errors.append(repr(exc))

    def _tick(self) -> None:
        images = self.conn.image.get("/images", params={"status": "queued", "limit": 200}).json()["images"]
        for image in images:
            if image.get("instance_uuid") in self.servers and image.get("haven_backup_id"):
                r = self.conn.image.put(
                    f"/images/{image['id']}/file", data=b"\0" * 1024,
                    headers={"Content-Type": "application/octet-stream"},
                )  # fmt: skip
                if r.status_code == 204:
                    self.uploaded[image["id"]] = time.time()
        servers = self.conn.compute.get("/servers/detail", params={"all_tenants": "True"}).json()["servers"]
        busy = sum(1 for x in servers if x["id"] in self.servers and x.get("OS-EXT-STS:task_state"))
        self.peak_nova_tasks = max(self.peak_nova_tasks, busy)
        if self.export is not None:
            self._assisted_snapshots(self.export)

    def _assisted_snapshots(self, export: Path) -> None:
        """What Nova's libvirt driver does for Cinder's NFS driver on an attached volume's snapshot."""
        mv = {"microversion": "3.43"}
        listed = self.conn.block_storage.get("/snapshots/detail", params={"all_tenants": "1"}, **mv)
        for snap in listed.json()["snapshots"]:
            if snap["volume_id"] not in self.volumes or snap.get("progress") == "90%":
                continue
            action = f"/snapshots/{snap['id']}/action"
            if snap["status"] == "creating":
                # Cinder made the overlay; the hypervisor would switch the guest's disk to it.
                body = {"os-update_snapshot_status": {"status": "creating", "progress": "90%"}}
                _ok(self.conn.block_storage.post(action, json=body, **mv))
                self.snapshots_created.add(snap["id"])
            elif snap["status"] == "deleting":
                info = json.loads((export / f"volume-{snap['volume_id']}.info").read_text())
                if info.get(snap["id"]) != info.get("active"):
                    self.errors.append(f"snapshot {snap['id']}: not the active layer (a commit: not played)")
                    continue
                # blockRebase with no base: the base's data pulled into the active overlay.
                subprocess.run(["qemu-img", "rebase", "-f", "qcow2", "-b", "", str(export / info["active"])],
                               check=True, capture_output=True)  # fmt: skip
                body = {"os-update_snapshot_status": {"status": "deleting", "progress": "90%"}}
                _ok(self.conn.block_storage.post(action, json=body, **mv))
                self.snapshots_merged.add(snap["id"])


def _ok(response: Any) -> dict[str, Any]:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return dict(response.json()) if response.content else {}


def _connect(clouds_yaml: Path) -> Any:
    import openstack

    cloud = json.loads(clouds_yaml.read_text())["clouds"]["lab"]
    return openstack.connection.Connection(
        auth=cloud["auth"], region_name=cloud["region_name"], identity_api_version="3",
        compute_api_version="2.37",
    )  # fmt: skip


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"waited {timeout_s:.0f} s for {what}")
        time.sleep(1.0)


async def lab_round(args: argparse.Namespace) -> dict[str, Any]:
    from haven.backups.restores import Restorer
    from haven.backups.runner import BackupRunner
    from haven.backups.schedule import parse
    from haven.cloud.openstack import open_cloud
    from haven.domain.backups import BackupState
    from haven.domain.clock import RealClock

    period = parse(args.schedule)
    with own_lab(args.folder, args.computes, args.cinder) as state, tempfile.TemporaryDirectory() as tmp:
        clouds_yaml = Path(state.files["clouds.yaml"])
        conn = _connect(clouds_yaml)
        flavors = _ok(conn.compute.get("/flavors"))["flavors"]
        flavor = next(f["id"] for f in flavors if f["name"] == state.flavor)
        metadata = {"haven_backup": args.schedule, "haven_backup_keep": str(args.keep)}
        ids: list[str] = []
        export = Path(state.folder) / "cinder" / "export" if args.cinder else None
        volumes: dict[str, str] = {}  # server -> its boot volume (--cinder)
        booted = time.perf_counter()
        if export is not None:
            volumes_made = [_ok(conn.block_storage.post("/volumes", json={"volume": {
                "size": 1, "name": f"bk-bench-{i:02d}-root", "imageRef": state.image_id}}))["volume"]["id"]
                for i in range(args.servers)]  # fmt: skip

            def volumes_available() -> bool:
                states = [_ok(conn.block_storage.get(f"/volumes/{v}"))["volume"]["status"]
                          for v in volumes_made]  # fmt: skip
                if "error" in states:
                    raise RuntimeError(f"a volume from the image failed: {states}")
                return all(state == "available" for state in states)

            _wait("the volumes available", volumes_available, 300)
            print(f"{len(volumes_made)} volumes in {time.perf_counter() - booted:.1f} s", flush=True)
            for vid in volumes_made:  # the marker the restores must bring back (the file is raw until then)
                with open(export / f"volume-{vid}", "r+b") as disk:
                    disk.seek(MARK_AT)
                    disk.write(vid.encode())
        for i in range(args.servers):
            body = {"server": {"name": f"bk-bench-{i:02d}", "imageRef": state.image_id, "flavorRef": flavor,
                               "networks": "none", "metadata": metadata}}  # fmt: skip
            if export is not None:
                del body["server"]["imageRef"]
                body["server"]["block_device_mapping_v2"] = [{
                    "boot_index": 0, "uuid": volumes_made[i], "source_type": "volume",
                    "destination_type": "volume", "delete_on_termination": True}]  # fmt: skip
            ids.append(_ok(conn.compute.post("/servers", json=body, microversion="2.37"))["server"]["id"])
            if export is not None:
                volumes[ids[-1]] = volumes_made[i]

        def all_active() -> bool:
            servers = _ok(conn.compute.get("/servers/detail"))["servers"]
            return sum(1 for x in servers if x["id"] in ids and x["status"] == "ACTIVE") == len(ids)

        _wait("the servers ACTIVE", all_active, 300)
        print(f"{len(ids)} servers ACTIVE in {time.perf_counter() - booted:.1f} s", flush=True)
        hypervisor = Hypervisor(conn, set(ids), export)
        hypervisor.volumes = set(volumes.values())
        hypervisor.start()
        cloud = open_cloud("lab", max_workers=4, clouds_yaml=clouds_yaml)
        store = Store.open(f"sqlite:///{tmp}/haven.db")
        clock = RealClock()
        config = BackupsConfig(
            enabled=True,
            scheduler=SchedulerSettings(
                max_concurrent=args.cap, jitter_s=0.0, timeout_s=args.backup_timeout, retry_s=30.0
            ),
            drills=DrillSettings(
                interval_s=DAY, sample=args.drills, concurrency=args.drill_concurrency, timeout_s=300.0
            ),
        )
        port = cloud.backups()
        runner = BackupRunner(config, port, store, clock)
        rounds: list[dict[str, Any]] = []
        peak_in_flight = 0
        passes = 0
        try:
            for n in range(args.rounds):
                window_start = period.next_slot(clock.now())  # each round starts at a window's start
                print(f"round {n + 1}: waiting {window_start - clock.now():.0f} s for the window", flush=True)
                await clock.sleep_until(window_start)
                begun = time.perf_counter()
                limit = period.period_s + args.backup_timeout + 60.0
                while True:  # until every server has a good backup of this window (or a later one)
                    await runner.run_pass()
                    passes += 1
                    records = store.backups_relevant(0.0)
                    peak_in_flight = max(peak_in_flight, sum(1 for r in records if r.state.in_flight))
                    fresh = [r for r in records if r.completed_at is not None and r.slot >= window_start]
                    if len({r.server_id for r in fresh}) == len(ids):
                        break
                    if time.perf_counter() - begun > limit:
                        break
                    await asyncio.sleep(args.pass_s)
                covered = {r.server_id for r in fresh}
                first: dict[str, BackupRecord] = {}
                for r in sorted(fresh, key=lambda r: r.created_at):
                    first.setdefault(r.server_id, r)
                took = [r.completed_at - r.created_at for r in first.values() if r.completed_at is not None]
                last = max((r.completed_at or 0.0 for r in first.values()), default=0.0)
                failed = [r for r in records if r.state is BackupState.FAILED and r.slot >= window_start]
                rounds.append({
                    "round": n + 1, "window": time.strftime("%H:%M", time.gmtime(window_start)),
                    "duration_s": round(time.perf_counter() - begun, 2), "servers_covered": len(covered),
                    "per_backup_s_median": round(statistics.median(took), 2) if took else None,
                    "per_backup_s_max": round(max(took), 2) if took else None,
                    "failed_attempts": len(failed), "failed_why": sorted({r.error[:80] for r in failed}),
                    "window_to_last_available_s": round(last - window_start, 2) if first else None,
                })  # fmt: skip
                print(json.dumps(rounds[-1]), flush=True)
            # rotation: passes until nothing is deleting nor in flight (a later window's backups included)
            for _ in range(300):
                await runner.run_pass()
                left = [
                    r
                    for r in store.backups_relevant(0.0)
                    if r.state.in_flight or r.state is BackupState.DELETING
                ]
                if not left:
                    break
                await asyncio.sleep(args.pass_s)
            kept: dict[str, int] = {}
            glance_statuses: dict[str, int] = {}
            for image in _ok(conn.image.get("/images", params={"limit": 1000}))["images"]:
                if image.get("instance_uuid") in ids and image.get("haven_backup_id"):
                    glance_statuses[image["status"]] = glance_statuses.get(image["status"], 0) + 1
                    if image["status"] == "active":
                        kept[image["instance_uuid"]] = kept.get(image["instance_uuid"], 0) + 1
            final = store.backups_relevant(0.0)
            good = {
                sid: sum(1 for r in final if r.server_id == sid and r.completed_at is not None) for sid in ids
            }
            expected = {sid: min(args.keep, good[sid]) for sid in ids}
            deleted = sum(1 for r in final if r.state is BackupState.DELETED and r.completed_at is not None)
            failed_total = [r for r in final if r.state is BackupState.FAILED]

            # one restore drill round over the servers
            restorer = Restorer(port, store, clock, config.drills)
            drill_began = time.perf_counter()
            seen_active: dict[str, float] = {}
            while True:
                await restorer.drill_round(ids)
                drills = store.list_restores()
                for d in drills:
                    if d.target_id and d.target_id not in seen_active:
                        r = conn.compute.get(f"/servers/{d.target_id}")
                        if r.status_code == 200 and r.json()["server"]["status"] == "ACTIVE":
                            seen_active[d.target_id] = clock.now()
                if len(drills) >= min(args.drills or len(ids), len(ids)) and not any(
                    d.state.in_flight for d in drills
                ):
                    break
                if time.perf_counter() - drill_began > 900:
                    raise RuntimeError("the drill round did not end in 900 s")
                await asyncio.sleep(args.pass_s)
            drill_round_s = time.perf_counter() - drill_began
            to_active = [d.active_at - d.created_at for d in drills if d.active_at is not None]
            point_age = [d.created_at - d.recovery_point for d in drills]
            cinder = _cinder_figures(conn, volumes, export, args.verify) if export is not None else {}
        finally:
            hypervisor.stop.set()
            hypervisor.join(5)
            store.close()
            cloud.close()
            for sid in ids:
                conn.compute.delete(f"/servers/{sid}")
            for image in _ok(conn.image.get("/images", params={"limit": 1000}))["images"]:
                if image.get("instance_uuid") in ids:
                    conn.image.delete(f"/images/{image['id']}")
    return {
        "servers": len(ids), "cap": args.cap, "keep": args.keep, "schedule": args.schedule,
        "rounds": rounds, "runner_passes": passes,
        "peak_haven_in_flight": peak_in_flight, "peak_nova_backup_tasks": hypervisor.peak_nova_tasks,
        "good_backups_taken": sum(good.values()), "failed_backups": len(failed_total),
        "failed_why": sorted({r.error[:100] for r in failed_total}),
        "glance_images_kept": sum(kept.values()), "glance_images_expected": sum(expected.values()),
        "servers_with_exactly_keep": sum(1 for sid in ids if kept.get(sid, 0) == expected[sid]),
        "rotated_deleted": deleted, "glance_haven_images_by_status": glance_statuses,
        "drills": len(drills), "drills_passed": sum(1 for d in drills if d.state.value == "done"),
        "drill_round_s": round(drill_round_s, 2),
        "drill_to_active_s_median": round(statistics.median(to_active), 2) if to_active else None,
        "drill_to_active_s_max": round(max(to_active), 2) if to_active else None,
        "drills_seen_active_by_nova": len(seen_active),
        "recovery_point_age_s_median": round(statistics.median(point_age), 1),
        "recovery_point_age_s_max": round(max(point_age), 1),
        "hypervisor_uploads": len(hypervisor.uploaded), "sample_errors": hypervisor.errors[:3],
        **({"assisted_snapshots_played": {"created": len(hypervisor.snapshots_created),
                                          "merged": len(hypervisor.snapshots_merged)}, **cinder}
           if export is not None else {}),
        "load_average": os.getloadavg(),
    }  # fmt: skip


def _cinder_figures(conn: Any, volumes: dict[str, str], export: Path, verify: int) -> dict[str, Any]:
    """Cinder's own answers on the servers' volumes: backups kept, chains whole, restores that read back."""
    mv = {"microversion": "3.43"}
    backups = _ok(conn.block_storage.get("/backups/detail", params={"all_tenants": "1"}, **mv))["backups"]
    mine = [b for b in backups if b["volume_id"] in set(volumes.values())]
    by_volume: dict[str, list[dict[str, Any]]] = {}
    for b in sorted(mine, key=lambda b: b["created_at"]):
        by_volume.setdefault(b["volume_id"], []).append(b)
    statuses: dict[str, int] = {}
    for b in mine:
        statuses[b["status"]] = statuses.get(b["status"], 0) + 1
    whole = 0
    for chain in by_volume.values():
        kept = [b for b in chain if b["status"] == "available"]
        whole += bool(kept) and not kept[0]["is_incremental"]
    verified: list[dict[str, Any]] = []
    for vid in list(volumes.values())[:verify]:
        newest = [b for b in by_volume.get(vid, []) if b["status"] == "available"]
        if not newest:
            verified.append({"volume": vid, "restored": False, "why": "no available backup"})
            continue
        began = time.perf_counter()
        body = {"restore": {"name": f"bk-bench-verify-{vid[:8]}"}}
        target = _ok(conn.block_storage.post(f"/backups/{newest[-1]['id']}/restore", json=body, **mv))
        new_id = target["restore"]["volume_id"]

        def restored(new_id: str = new_id) -> bool:
            status = _ok(conn.block_storage.get(f"/volumes/{new_id}", **mv))["volume"]["status"]
            if status.startswith("error"):
                raise RuntimeError(f"restore to {new_id}: {status}")
            return bool(status == "available")

        _wait(f"the restore of {newest[-1]['id']}", restored, 300)
        took = time.perf_counter() - began
        with open(export / f"volume-{new_id}", "rb") as disk:
            disk.seek(MARK_AT)
            found = disk.read(len(vid)).decode(errors="replace")
        fmt = subprocess.run(["qemu-img", "info", "--output", "json", str(export / f"volume-{new_id}")],
                             capture_output=True, text=True, check=False)  # fmt: skip
        verified.append({
            "volume": vid, "backup_incremental": newest[-1]["is_incremental"], "restore_s": round(took, 2),
            "marker_read_back": found == vid,
            "restored_file_format": json.loads(fmt.stdout or "{}").get("format"),
        })  # fmt: skip
        conn.block_storage.delete(f"/volumes/{new_id}", **mv)
    kept_all = [b for b in mine if b["status"] == "available"]
    return {
        "cinder_backups_by_status": statuses,
        "cinder_available_full": sum(1 for b in kept_all if not b["is_incremental"]),
        "cinder_available_incremental": sum(1 for b in kept_all if b["is_incremental"]),
        "volumes_with_chain_whole": whole, "volumes": len(volumes),
        "restores_verified": verified,
    }  # fmt: skip


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
    parser.add_argument("--lab", action="store_true", help="on the lab's real Nova and Glance (see above)")
    parser.add_argument("--keep", type=int, default=2, help="--lab: haven_backup_keep")
    parser.add_argument("--rounds", type=int, default=3, help="--lab: schedule windows backed up")
    parser.add_argument("--schedule", default="*/4 * * * *", help="--lab: haven_backup (a cron)")
    parser.add_argument("--drill-concurrency", type=int, default=5, help="--lab: drills at once")
    parser.add_argument("--pass-s", type=float, default=1.0, help="--lab: seconds between runner passes")
    parser.add_argument(
        "--backup-timeout", type=float, default=120.0, help="--lab: [backups.scheduler] timeout_s"
    )
    parser.add_argument("--computes", type=int, default=2, help="--lab: computes of its own lab")
    parser.add_argument("--folder", type=Path, default=None, help="--lab: a running lab's folder")
    parser.add_argument("--cinder", action="store_true", help="--lab: volume-backed servers on its Cinder")
    parser.add_argument("--verify", type=int, default=3, help="--lab --cinder: restored and read back")
    args = parser.parse_args()
    if args.cinder and not args.lab:
        parser.error("--cinder goes with --lab")
    if args.lab:
        if args.servers == 10_000:
            args.servers = 5 if args.cinder else 20
        if args.cap == 200:
            args.cap = 5
        if not 1 <= args.servers <= 200 or args.cap < 1 or args.keep < 1 or args.rounds < 1:
            parser.error("--lab needs 1 <= --servers <= 200, --cap >= 1, --keep >= 1, --rounds >= 1")
    logging.getLogger("haven").setLevel(logging.ERROR)
    began = time.perf_counter()
    if args.lab:
        figures = asyncio.run(lab_round(args))
        figures["wall_s"] = time.perf_counter() - began
        print(json.dumps(figures, indent=1))
        return
    print(f"command: {command(args)}", flush=True)
    load_before = os.getloadavg()
    figures = asyncio.run(day(args))
    figures["wall_s"] = time.perf_counter() - began
    figures["load_average_start"] = " ".join(f"{x:.2f}" for x in load_before)
    figures["load_average_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value:.1f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
