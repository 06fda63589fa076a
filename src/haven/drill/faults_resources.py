"""Faults of resources rather than of one call: a crash loop, RabbitMQ's alarms and backlog, CPU starvation.

Called by haven.drill.faults, whose CATALOG holds these injections beside its own. Like every
injection there, each blocks (signals, /proc, cgroupfs, rabbitmqctl, AMQP) and returns its ``Heal``;
haven.drill.faults_run calls both in a worker thread.

- ``crash_looping``: the service killed (SIGKILL of its process group), started again after
  ``down_s`` as the lab had started it, killed again ``up_s`` after each start, for as long as the
  fault lasts (what systemd's ``Restart=always`` makes of a service that dies on start); the heal
  stops the loop and leaves one process running, recorded in the lab's state.
- ``memory_alarm``: RabbitMQ's ``vm_memory_high_watermark`` set far below what the node uses, through
  the lab's own ``rabbitmqctl`` (the broker's own environment: node name, Erlang cookie, epmd port):
  the node raises its memory alarm and blocks every publishing connection; the heal sets the value
  read before the injection back.
- ``disk_alarm``: RabbitMQ's data folder on a real, small, full filesystem (a tmpfs with ``size=``,
  so what is filled is capped in memory and never the machine's disk): the broker stopped cleanly,
  its folder copied onto the tmpfs mounted over it, started again, then a filler written until the
  tmpfs has less free space than RabbitMQ's ``disk_free_limit`` (50 MB by default): its own disk
  monitor raises the disk alarm and blocks publishers. The heal deletes the filler (what an operator
  does first), waits for the alarm to clear, then stops the broker, copies its folder back to the
  disk, unmounts the tmpfs and starts it again.
- ``queue_backlog``: a storm of RPC casts on Nova's bus into the shared queue of one topic (the
  conductor's), published at once: the catalogue's 60,000 ``object_class_action_versions`` calls of
  ``Service.get_minimum_version`` (a database query each, the RPC every remotable object call of a
  compute uses), as a storm of them after a broker restart would be. Nova's own requests to that
  topic wait behind them. The heal purges what the consumer has not taken yet; what it took, it
  works off.
- ``cpu_starved``: every process of the service's group moved into a CPU cgroup of its own held to
  ``quota_us`` per ``period_us`` (0.1 % of one CPU by default): cgroup v2's ``cpu.max`` where the
  unified hierarchy has the cpu controller, else cgroup v1's ``cpu.cfs_quota_us``. The heal moves
  every process (children forked meanwhile too) back to the cgroup it came from and removes it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from haven.domain.errors import PermanentError
from haven.drill.faults_process import keep_started, process_image

if TYPE_CHECKING:  # haven.drill.faults imports this module for its CATALOG
    from haven.drill.faults import FaultLab, LabProcess

Heal = Callable[[], None]


def _wait_dead(lab: FaultLab, entry: LabProcess, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while lab.alive(entry) and time.monotonic() < deadline:
        time.sleep(0.05)


def start_again(
    lab: FaultLab, old: LabProcess, argv: list[str], env: Mapping[str, str], cwd: str
) -> LabProcess:
    """``old``'s service started again as it was started, recorded in the lab's state in its place."""
    with open(old.log, "ab") as out:
        started = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd,
                                   start_new_session=True)  # fmt: skip
    keep_started(started)  # reaped once it has ended (a crash loop's starts, killed one after another)
    lab.restarted(old, started.pid)
    return lab.process(old.name)


@dataclass
class CrashLoop:
    """One service killed again each time it comes back; ``starts`` and ``kills`` count what it did."""

    lab: FaultLab
    current: LabProcess
    argv: list[str]
    env: dict[str, str]
    cwd: str
    down_s: float
    up_s: float
    starts: int = 0
    kills: int = 0
    _done: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def begin(self) -> None:
        os.killpg(self.current.pid, signal.SIGKILL)
        self.kills += 1
        self._thread = threading.Thread(target=self._loop, name="haven-crash-loop", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            _wait_dead(self.lab, self.current)
            if self._done.wait(self.down_s):
                return
            with self._lock:
                if self._done.is_set():
                    return
                self.current = start_again(self.lab, self.current, self.argv, self.env, self.cwd)
                self.starts += 1
            if self._done.wait(self.up_s):
                return
            with self._lock:
                if self._done.is_set():
                    return
                os.killpg(self.current.pid, signal.SIGKILL)
                self.kills += 1

    def heal(self) -> None:
        """The loop stopped; the service left running (started once more if the loop had just killed it)."""
        with self._lock:
            self._done.set()
        if self._thread is not None:
            self._thread.join(30.0)
        if not self.lab.alive(self.current):
            _wait_dead(self.lab, self.current)
            self.current = start_again(self.lab, self.current, self.argv, self.env, self.cwd)
            self.starts += 1


def crash_looping(process: str, down_s: float = 5.0, up_s: float = 3.0) -> Callable[[FaultLab], Heal]:
    """``process`` crash-looping: killed, started again after ``down_s``, killed ``up_s`` after each start."""

    def inject(lab: FaultLab) -> Heal:
        entry = lab.process(process)
        argv, env, cwd = process_image(entry.pid)
        loop = CrashLoop(lab, entry, argv, env, cwd, down_s, up_s)
        loop.begin()
        return loop.heal

    return inject


# --- RabbitMQ, through the lab's own rabbitmqctl ---------------------------------------------------------

RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
BROKER = "rabbitmq-server"


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def rabbitmqctl(lab: FaultLab, *args: str, timeout_s: float = 120.0) -> str:
    """``rabbitmqctl ARGS`` on the lab's broker, in the broker's own environment; its output."""
    env = _environ(lab.process(BROKER).pid)
    node = env.get("RABBITMQ_NODENAME")
    if not node:
        raise PermanentError("the lab's rabbitmq-server has no RABBITMQ_NODENAME in its environment")
    done = subprocess.run([str(RABBITMQCTL), "-q", "-n", node, *args], env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)  # fmt: skip
    if done.returncode != 0:
        raise PermanentError(f"rabbitmqctl {' '.join(args)}: {(done.stderr or done.stdout).strip()[-300:]}")
    return done.stdout.strip()


def watermark_args(value: str) -> list[str]:
    """``set_vm_memory_high_watermark``'s arguments for a value as ``get_vm_memory_high_watermark`` printed it
    (``0.4``, or ``{absolute,104857600}``)."""
    absolute = re.fullmatch(r"\{absolute,\s*(\d+)\}", value.strip())
    if absolute:
        return ["absolute", absolute[1]]
    try:
        float(value)
    except ValueError:
        raise PermanentError(f"RabbitMQ's memory watermark read as {value!r}: not a fraction") from None
    return [value.strip()]


LOW_WATERMARK = "0.0001"  # of the host's memory: a few MB, far below what any node uses


def memory_alarm(lab: FaultLab) -> Heal:
    """RabbitMQ's memory watermark set below its use: the memory alarm blocks every publisher."""
    kept = watermark_args(rabbitmqctl(lab, "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."))
    rabbitmqctl(lab, "set_vm_memory_high_watermark", LOW_WATERMARK)

    def heal() -> None:
        rabbitmqctl(lab, "set_vm_memory_high_watermark", *kept)

    return heal


def alarms(lab: FaultLab) -> str:
    """The broker's alarms as `rabbitmq-diagnostics alarms` would print them (for the drill's notes)."""
    return rabbitmqctl(lab, "eval", "rabbit_alarm:get_alarms().")


# --- a full disk under RabbitMQ's data --------------------------------------------------------------------

FREE_LEFT = 8 * 1024 * 1024  # what the filler leaves: below RabbitMQ's default disk_free_limit (50 MB)
HEADROOM = 96 * 1024 * 1024  # the tmpfs: the data's size plus this


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _mounted(path: Path) -> bool:
    target = str(path.resolve())
    return any(line.split()[1] == target for line in Path("/proc/self/mounts").read_text().splitlines())


def _run(*argv: str) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise PermanentError(f"{' '.join(argv)}: {done.stderr.strip()[-300:]}")


def _stop_broker(lab: FaultLab) -> tuple[LabProcess, list[str], dict[str, str], str]:
    """The broker stopped cleanly (SIGTERM to its group, SIGKILL after 60 s); how to start it again."""
    entry = lab.process(BROKER)
    argv, env, cwd = process_image(entry.pid)
    os.killpg(entry.pid, signal.SIGTERM)
    _wait_dead(lab, entry, 60.0)
    if lab.alive(entry):
        os.killpg(entry.pid, signal.SIGKILL)
        _wait_dead(lab, entry)
    time.sleep(1.0)  # its children (epmd is the lab's own, not in this group) gone with the group
    return entry, argv, env, cwd


def _amqp_port(env: Mapping[str, str]) -> int:
    return int(env["RABBITMQ_NODE_PORT"])


def _wait_port(port: int, timeout_s: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(1.0)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise PermanentError(f"RabbitMQ did not listen on {port} within {timeout_s:g} s")


def disk_alarm(lab: FaultLab) -> Heal:
    """RabbitMQ's data folder on a small tmpfs, filled until less than its disk_free_limit is left."""
    entry = lab.process(BROKER)
    base = Path(_environ(entry.pid)["RABBITMQ_MNESIA_BASE"])
    if _mounted(base):
        raise PermanentError(f"{base} is already a mount point (a disk fault left in place?)")
    old, argv, env, cwd = _stop_broker(lab)
    staging = base.with_name(base.name + ".ondisk")
    size = _du(base) + HEADROOM
    try:
        base.rename(staging)
        base.mkdir()
        _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "haven-fault-disk", str(base))
        _run("cp", "-a", f"{staging}/.", str(base))
    except Exception:
        if _mounted(base):
            _run("umount", str(base))
        if staging.exists():
            base.rmdir()
            staging.rename(base)
        start_again(lab, old, argv, env, cwd)
        raise
    start_again(lab, old, argv, env, cwd)
    _wait_port(_amqp_port(env))
    filler = base / "haven-fault-filler"
    with open(filler, "wb") as out:  # capped by the tmpfs's size: it can never fill the machine's disk
        chunk = b"\0" * (1024 * 1024)
        while shutil.disk_usage(base).free > FREE_LEFT + len(chunk):
            out.write(chunk)
            out.flush()

    def heal() -> None:
        filler.unlink(missing_ok=True)
        now, argv_, env_, cwd_ = _stop_broker(lab)
        _run("cp", "-a", f"{base}/.", f"{staging}/")
        (staging / filler.name).unlink(missing_ok=True)
        _run("umount", str(base))
        base.rmdir()
        staging.rename(base)
        start_again(lab, now, argv_, env_, cwd_)
        _wait_port(_amqp_port(env_))

    return heal


# --- a queue backlog on Nova's bus ------------------------------------------------------------------------


def transport(lab: FaultLab) -> tuple[str, str, int]:
    """The lab's Nova transport (user, password, port) read from its nova.conf."""
    conf = (lab.folder / "nova" / "nova.conf").read_text()
    found = re.search(r"^transport_url = rabbit://(\w+):(\w+)@[\d.]+:(\d+)/", conf, re.M)
    if found is None:
        raise PermanentError("the lab's nova.conf names no rabbit transport_url")
    return found[1], found[2], int(found[3])


# What each cast asks the conductor: every compute node's record, read from Nova's database, through the
# RPC method the computes use for every remotable object call (the resource tracker's and the
# scheduler's kind of read), as a storm of them would. Measured on the lab (2026-12-07, load 25): the
# conductor works off about 30 a second. Until then each cast was Service.get_minimum_version, which the
# conductor answers from its own cache (nova/cmd/conductor.py enables it), no database query: it worked
# off 60,000 as fast as haven published them (about 1,200 a second) and no backlog ever built.
STORM_CALL = {
    "objname": "ComputeNodeList",
    "objmethod": "get_all",
    "object_versions": {"ComputeNodeList": "1.17", "ComputeNode": "1.19"},
    "args": [],
    "kwargs": {},
}


def cast_body(method: str = "object_class_action_versions", args: Mapping[str, object] | None = None) -> str:
    """One oslo.messaging RPC cast in its v2.0 envelope, as Nova's bus carries them (conductor API 3.0)."""
    message = {"method": method, "args": dict(STORM_CALL if args is None else args), "version": "3.0",
               "_unique_id": uuid.uuid4().hex}  # fmt: skip
    return json.dumps({"oslo.version": "2.0", "oslo.message": json.dumps(message)})


@dataclass
class Flood:
    """``count`` casts published at once into one of Nova's queues, for ``consumer``; the heal purges what
    is still ready, then restarts the consumer: oslo.messaging's prefetch is unlimited, so the consumer
    took the storm at once and holds it in its memory (unacknowledged, which a purge cannot reach);
    killed, its unacknowledged messages go back to the queue, purged before it starts again."""

    lab: FaultLab
    topic: str
    count: int
    consumer: str = "nova-conductor"
    published: int = 0
    ready_after: int = 0  # the queue's ready messages once published (what the consumer has not taken)

    def _connect(self) -> Any:
        import amqp  # type: ignore[import-untyped]

        user, password, port = transport(self.lab)
        connection = amqp.Connection(f"127.0.0.1:{port}", userid=user, password=password, connect_timeout=10)
        connection.connect()
        return connection

    def begin(self) -> None:
        import amqp

        connection = self._connect()
        try:
            channel = connection.channel()
            channel.queue_declare(self.topic, passive=True)  # Nova's consumer declared it: an error if not
            for _ in range(self.count):
                message = amqp.Message(cast_body(), content_type="application/json", content_encoding="utf-8")
                channel.basic_publish(message, exchange="nova", routing_key=self.topic)
                self.published += 1
            _, self.ready_after, _ = channel.queue_declare(self.topic, passive=True)
        finally:
            connection.close()

    def heal(self) -> None:
        """What is still queued purged, the consumer killed (what it held is queued again) and that purged
        too, then the consumer started again as it was (recorded in the lab's state)."""
        old = self.lab.process(self.consumer)
        argv, env, cwd = process_image(old.pid)
        self._purge()
        os.killpg(old.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while self.lab.alive(old) and time.monotonic() < deadline:
            time.sleep(0.1)
        try:
            time.sleep(1.0)  # the broker requeues a dead consumer's unacknowledged messages
            self._purge()
        finally:
            start_again(self.lab, old, argv, env, cwd)
        self._computes_report()

    def _computes_report(self, within_s: float = 180.0) -> None:
        """Until every nova-compute is up in Nova's list again (bounded): a compute whose report call was
        waiting on the killed conductor stays down until that call times out (seen on the lab: one
        compute down a minute after the heal, its old DOWN ranked first in the next injection)."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                services = self.lab.call("compute", "GET", "/os-services?binary=nova-compute")["services"]
            except Exception:  # Nova's API busy right after the restart: ask again
                services = []
            if services and all(s.get("state") == "up" for s in services):
                return
            time.sleep(3.0)

    def _purge(self) -> int:
        connection = self._connect()
        try:
            return int(connection.channel().queue_purge(self.topic) or 0)
        finally:
            connection.close()


def queue_backlog(topic: str = "conductor", count: int = 20_000) -> Callable[[FaultLab], Heal]:
    """``count`` database-backed casts queued before ``topic``'s consumer: Nova's own requests wait behind
    (a boot's build request, every compute's report: Nova counts them down)."""

    def inject(lab: FaultLab) -> Heal:
        flood = Flood(lab, topic, count)
        flood.begin()
        return flood.heal

    return inject


# --- CPU starvation ---------------------------------------------------------------------------------------

CGROUP = Path("/sys/fs/cgroup")


def group_members(group: int) -> list[int]:
    """Every process whose process group is ``group`` (a lab service and its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == group:
            found.append(int(entry.name))
    return sorted(found)


@dataclass(frozen=True)
class CpuHierarchy:
    """Where the cpu controller is mounted and how a cgroup's bandwidth is set there (v2 or v1)."""

    root: Path
    version: int

    def limit(self, cgroup: Path, quota_us: int, period_us: int) -> None:
        if self.version == 2:
            (cgroup / "cpu.max").write_text(f"{quota_us} {period_us}")
        else:
            (cgroup / "cpu.cfs_period_us").write_text(str(period_us))
            (cgroup / "cpu.cfs_quota_us").write_text(str(quota_us))

    def of(self, pid: int) -> Path:
        """The cgroup ``pid`` is in, in this hierarchy."""
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if (self.version == 2 and number == "0") or (
                self.version == 1 and "cpu" in controllers.split(",")
            ):
                return self.root / path.lstrip("/")
        return self.root


def cpu_hierarchy() -> CpuHierarchy:
    """The cpu controller's hierarchy here: cgroup v2's when it has the controller, else v1's."""
    unified = CGROUP / "cgroup.controllers"
    if unified.exists() and "cpu" in unified.read_text().split():
        return CpuHierarchy(CGROUP, 2)
    for candidate in (CGROUP / "cpu", CGROUP / "cpu,cpuacct"):
        if (candidate / "cpu.cfs_quota_us").exists():
            return CpuHierarchy(candidate, 1)
    raise PermanentError("no cgroup cpu controller is mounted here (neither v2's cpu.max nor v1's cpu)")


def cpu_starved(
    process: str, quota_us: int = 1_000, period_us: int = 1_000_000
) -> Callable[[FaultLab], Heal]:
    """``process``'s group held to quota_us of CPU per period_us (0.1 % of one CPU by default: the
    kernel's smallest quota over its longest period; 1 % let Placement answer the lab's canary in time)."""

    def inject(lab: FaultLab) -> Heal:
        group = lab.process(process).pid
        hierarchy = cpu_hierarchy()
        cgroup = hierarchy.root / f"haven-fault-{process}-{group}"
        cgroup.mkdir()
        hierarchy.limit(cgroup, quota_us, period_us)
        came_from: dict[int, Path] = {}
        for pid in group_members(group):
            try:
                came_from[pid] = hierarchy.of(pid)
                (cgroup / "cgroup.procs").write_text(str(pid))
            except (FileNotFoundError, ProcessLookupError):
                continue  # ended meanwhile

        def heal() -> None:
            back_to = next(iter(came_from.values()), hierarchy.root)
            for _ in range(5):
                pids = [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
                if not pids:
                    break
                for pid in pids:  # its children forked meanwhile go where the service's leader came from
                    try:
                        (came_from.get(pid, back_to) / "cgroup.procs").write_text(str(pid))
                    except ProcessLookupError:
                        continue
            cgroup.rmdir()

        return heal

    return inject
