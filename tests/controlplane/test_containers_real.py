"""The container driver on a real engine: Debian 12's Podman 4.3 serving the Docker-compatible API.

One engine for the module (``podman system service`` on its own socket, with its own storage and run
folders in a temporary folder: vfs storage, host network, no cgroups, the ulimits this machine allows),
one image imported from a tarball of a rootfs holding Debian's static busybox (no registry is
reachable), and two replicas of a service, containers ``web-ctl-1`` and ``web-ctl-2`` running
``busybox httpd`` on two loopback addresses, as two controllers in two failure domains.

A replica is killed (SIGKILL of its process) or hung (SIGSTOP: the engine still says running, its port
still accepts connections); judged from the engine's own inspect output, sampled every 50 ms while
haven's reconciler runs on the real clock, and from a client's request: a new process, started by
haven (the container has no restart policy: RestartCount stays 0), serving; the other replica untouched.
Skipped, with the reason, when podman or a static busybox is missing or not root.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from haven.controlplane.config import ControlPlaneConfig, parse_controlplane
from haven.controlplane.drivers.containers import ContainerUnits, _timestamp, unit_status
from haven.controlplane.drivers.probes import NetworkProber
from haven.controlplane.reconciler import Reconciler
from haven.controlplane.running import ControlPlane
from haven.domain.clock import RealClock
from haven.domain.controlplane import (
    ActionKind,
    ActionState,
    Controller,
    ControlPlaneSettings,
    DomainName,
    ProbeKind,
    ProbeSpec,
    RestartPolicy,
    ServiceName,
    ServiceSpec,
    UnitActive,
)
from haven.domain.ids import HostName
from haven.store import Store

from .servers import free_port, until

PODMAN = "/usr/bin/podman"
BUSYBOX = "/bin/busybox"
IMAGE = "localhost/haven-busybox:test"
HOSTS = {HostName("ctl-1"): "127.0.0.1", HostName("ctl-2"): "127.0.0.2"}
_CONF = """[containers]
cgroups = "disabled"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "host"
"""


@dataclass
class Engine:
    folder: Path
    socket: str
    port: int
    flags: list[str]

    def api(self, method: str, path: str, body: object = None) -> Any:
        transport = httpx.HTTPTransport(uds=self.socket)
        with httpx.Client(transport=transport, base_url="http://engine", timeout=30) as client:
            answer = client.request(method, path, json=body)
        assert answer.status_code < 300, (method, path, answer.status_code, answer.text)
        return answer.json() if answer.content else None

    def inspect(self, name: str) -> dict[str, Any]:
        state: dict[str, Any] = self.api("GET", f"/containers/{name}/json")
        return state

    def create(self, name: str, ip: str, healthcheck: list[str] | None = None) -> None:
        body: dict[str, Any] = {
            "Image": IMAGE,
            "Cmd": ["/bin/busybox", "httpd", "-f", "-p", f"{ip}:{self.port}", "-h", "/www"],
            "HostConfig": {"NetworkMode": "host"},
        }
        if healthcheck is not None:
            body["Healthcheck"] = {"Test": ["CMD", *healthcheck], "Interval": 10**9, "Retries": 1}
        self.api("POST", f"/containers/create?name={name}", body)


def _static(path: str) -> bool:
    """No program interpreter in the ELF header: it runs in an image with nothing else."""
    with open(path, "rb") as f:
        return b"ld-linux" not in f.read(4096)


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    if os.geteuid() != 0:
        pytest.skip("needs root (a rootful Podman engine)")
    if not os.path.exists(PODMAN):
        pytest.skip(f"{PODMAN} missing: run scripts/install-system-deps.sh (Debian's podman)")
    if not os.path.exists(BUSYBOX) or not _static(BUSYBOX):
        pytest.skip(f"{BUSYBOX} is not a static busybox: run scripts/install-system-deps.sh (busybox-static)")
    folder = Path(tempfile.mkdtemp(prefix="haven-podman-"))
    flags = [
        PODMAN, "--root", str(folder / "storage"), "--runroot", str(folder / "run"),
        "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
    ]  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(folder / "containers.conf")}
    (folder / "containers.conf").write_text(_CONF)
    rootfs = folder / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "www").mkdir()
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    (rootfs / "www" / "index.html").write_text("haven\n")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(folder / "rootfs.tar"), "."], check=True)
    subprocess.run([*flags, "import", str(folder / "rootfs.tar"), IMAGE], env=env, check=True,
                   capture_output=True)  # fmt: skip
    sock = str(folder / "engine.sock")
    log = open(folder / "service.log", "wb")  # noqa: SIM115 (kept open for the service's life)
    # In a mount namespace of its own without the cgroup2 hierarchy that sits beside the v1 ones here:
    # crun refuses "hybrid mode" whenever a controller (hugetlb) is left on it, which depends on what
    # else runs on the machine (a namespaced systemd mounts it on v1); containers have no cgroups anyway.
    hide_cgroup2 = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"'
    service = subprocess.Popen(
        ["nice", "-n", "19", "unshare", "--mount", "--propagation", "private", "sh", "-c", hide_cgroup2, "sh",
         *flags, "system", "service", "--time", "0", f"unix://{sock}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    eng = Engine(folder, sock, free_port(), flags)
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(sock):
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"podman system service did not start: {(folder / 'service.log').read_text()}")
            time.sleep(0.05)
        for host, ip in HOSTS.items():
            eng.create(f"web-{host}", ip)
        yield eng
    finally:
        with contextlib.suppress(Exception):  # through the engine (its namespace), then by hand
            for container in eng.api("GET", "/containers/json?all=true"):
                eng.api("DELETE", f"/containers/{container['Id']}?force=true")
        subprocess.run([*flags, "rm", "--force", "--all", "--time", "0"], env=env, capture_output=True)
        service.terminate()
        try:
            service.wait(10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
        log.close()
        _wait_for_cleanups(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_for_cleanups(folder: Path, limit_s: float = 10.0) -> None:
    """conmon runs ``podman container cleanup`` (with this folder's flags) after a container exits:
    wait for those to end, or they write the storage folder again after it is removed."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        busy = False
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if str(folder).encode() in cmdline.read_bytes():
                    busy = True
                    break
        if not busy:
            return
        time.sleep(0.1)


@dataclass
class Rig:
    engine: Engine
    units: dict[HostName, ContainerUnits]
    store: Store

    def pid(self, host: str) -> int:
        """The replica's process as the engine reports it (never 0: a signal to 0 is our own group)."""
        pid = int(self.engine.inspect(f"web-{host}")["State"]["Pid"])
        assert pid > 1, self.engine.inspect(f"web-{host}")["State"]
        return pid

    async def after(self, host: str, fault: Callable[[], None], limit_s: float) -> list[dict[str, Any]]:
        """Make the fault, then sample the engine's inspect until a new process of ``host``'s replica
        runs and serves a client; returns the samples (each with ``t``: seconds since the fault)."""
        name = f"web-{host}"
        before = self.engine.inspect(name)["State"]["StartedAt"]
        started = time.monotonic()
        fault()
        samples = []
        while True:
            state = dict(self.engine.inspect(name)["State"])
            state["t"] = time.monotonic() - started
            samples.append(state)
            fresh = state["Running"] and state["StartedAt"] != before
            if fresh and await _answers(HOSTS[HostName(host)], self.engine.port):
                return samples
            assert state["t"] < limit_s, samples[-3:]
            await asyncio.sleep(0.05)

    async def actions(self) -> list[tuple[ActionKind, str, ActionState]]:
        """haven's actions once none is still issued (the engine's restart call returns after the new
        process already serves)."""

        async def read() -> list[tuple[ActionKind, str, ActionState]]:
            return [(a.kind, a.host, a.state) for a in self.store.actions_since(0)]

        return await until(read, lambda acts: all(s is not ActionState.ISSUED for _, _, s in acts), 5)


async def _answers(ip: str, port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=0.5) as client:
            return (await client.get(f"http://{ip}:{port}/")).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
async def rig(engine: Engine) -> AsyncIterator[Rig]:
    units = {h: ContainerUnits(f"unix://{engine.socket}", h, stop_timeout_s=1) for h in HOSTS}
    try:
        for u in units.values():
            await u.start("web-{host}")
        for ip in HOSTS.values():
            await until(lambda ip=ip: _answers(ip, engine.port), bool, 10)  # type: ignore[misc]
    except BaseException:
        for u in units.values():
            await u.close()
        raise
    spec = ServiceSpec(
        ServiceName("web"),
        "web-{host}",
        2,
        probe=ProbeSpec(ProbeKind.HTTP, engine.port, "/", timeout_s=0.5, period_s=0.2, failure_threshold=2),
        restart=RestartPolicy(backoff_initial_s=0.5),
    )
    config = ControlPlaneConfig(
        ControlPlaneSettings(pass_interval_s=0.2),
        tuple(Controller(h, DomainName(f"rack-{h}"), ip) for h, ip in HOSTS.items()),
        (spec,),
    )
    prober = NetworkProber()
    with Store.open("sqlite://") as store:
        reconciler = Reconciler(config, units, None, prober, store, RealClock())
        task = asyncio.create_task(reconciler.run())
        try:
            await asyncio.sleep(1.0)  # steady: both serve, nothing to do
            assert store.actions_since(0) == []
            yield Rig(engine, units, store)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await prober.close()
            for u in units.values():
                await u.close()


async def test_a_killed_container_is_started_again_by_haven(rig: Rig) -> None:
    other = rig.engine.inspect("web-ctl-2")["State"]["StartedAt"]
    killed_pid = rig.pid("ctl-1")
    killed_started = _timestamp(rig.engine.inspect("web-ctl-1")["State"]["StartedAt"])
    samples = await rig.after("ctl-1", lambda: os.kill(killed_pid, signal.SIGKILL), limit_s=15)
    seen = [(s["Status"], s["ExitCode"], s["Pid"]) for s in samples]
    # The engine recorded the end of the killed process (its FinishedAt, kept across the start that
    # followed; the 50 ms samples may miss the short "exited" moment) and did not restart it by itself
    # (no restart policy, RestartCount 0): haven did, once; the other replica was left alone.
    final = rig.engine.inspect("web-ctl-1")
    ended, began = _timestamp(final["State"]["FinishedAt"]), _timestamp(final["State"]["StartedAt"])
    assert ended is not None and began is not None and killed_started is not None, final["State"]
    assert killed_started < ended <= began and final["State"]["Pid"] != killed_pid, (final["State"], seen)
    assert final["RestartCount"] == 0
    assert await rig.actions() == [(ActionKind.RESTART, "ctl-1", ActionState.DONE)], seen
    assert rig.engine.inspect("web-ctl-2")["State"]["StartedAt"] == other


async def test_a_hung_container_is_found_by_its_probe_and_restarted(rig: Rig) -> None:
    hung_pid = rig.pid("ctl-2")
    samples = await rig.after("ctl-2", lambda: os.kill(hung_pid, signal.SIGSTOP), limit_s=15)
    # The engine still said running, same process, while it hung: only the probe could tell.
    assert sum(1 for s in samples if s["Running"] and s["Pid"] == hung_pid) >= 3, samples[:3]
    assert samples[-1]["Pid"] != hung_pid
    assert await rig.actions() == [(ActionKind.RESTART, "ctl-2", ActionState.DONE)], samples[-3:]


async def test_status_start_stop_and_an_unhealthy_or_missing_container(engine: Engine) -> None:
    units = ContainerUnits(f"unix://{engine.socket}", "ctl-9", stop_timeout_s=0)
    try:
        engine.create("sick-ctl-9", "127.0.0.9", healthcheck=["/bin/busybox", "test", "-e", "/www/ok"])
        await units.start("sick-{host}")
        running = await units.status("sick-{host}")
        assert running.active is UnitActive.ACTIVE and running.invocation_id  # health "starting"
        engine.api("GET", "/v4.0.0/libpod/containers/sick-ctl-9/healthcheck")  # what a timer would run
        sick = await units.status("sick-{host}")
        assert engine.inspect("sick-ctl-9")["State"]["Health"]["Status"] == "unhealthy"
        assert (sick.active, sick.sub_state) == (UnitActive.FAILED, "running (unhealthy)")
        await units.stop("sick-{host}")
        stopped = await units.status("sick-{host}")
        assert not engine.inspect("sick-ctl-9")["State"]["Running"]
        assert stopped.active is not UnitActive.ACTIVE and stopped.sub_state.startswith("exited")
        missing = await units.status("nothing-{host}")
        assert not missing.loaded
    finally:
        engine.api("DELETE", "/containers/sick-ctl-9?force=true")
        await units.close()


def test_an_engine_that_is_not_there_is_a_temporary_error() -> None:
    from haven.domain.errors import TemporaryError

    async def read() -> None:
        units = ContainerUnits("unix:///nonexistent/engine.sock")
        try:
            await units.status("web")
        finally:
            await units.close()

    with pytest.raises(TemporaryError, match="cannot reach the container engine"):
        asyncio.run(read())


def test_dockers_inspect_document_reads_as_systemd_words() -> None:
    """A Docker Engine inspect answer (API 1.50's shape; fields the driver reads)."""
    doc = json.loads(
        '{"Id": "4fa6e0f0c678", "RestartCount": 2, "State": {"Status": "running", "Running": true,'
        ' "Paused": false, "Restarting": false, "Pid": 1234, "ExitCode": 0,'
        ' "StartedAt": "2026-12-06T07:24:27.437986829Z", "FinishedAt": "0001-01-01T00:00:00Z",'
        ' "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}}}'
    )
    status = unit_status(doc)
    assert (status.active, status.sub_state, status.n_restarts) == (UnitActive.ACTIVE, "running (healthy)", 2)
    started = dt.datetime(2026, 12, 6, 7, 24, 27, 437986, tzinfo=dt.UTC).timestamp()
    assert status.active_since == pytest.approx(started, abs=1e-6)
    doc["State"].update(Status="exited", Running=False, ExitCode=0)
    assert unit_status(doc).active is UnitActive.INACTIVE
    doc["State"].update(Status="restarting", Restarting=True)
    assert unit_status(doc).active is UnitActive.ACTIVATING


def test_config_names_kolla_containers_and_the_engine_builds_container_units() -> None:
    section = {
        "driver": "podman",
        "controllers": [{"host": "ctl-1", "domain": "a", "engine": "unix:///tmp/x.sock"}, {"host": "ctl-2"}],
        "services": {"nova-api": {}, "keystone": {"unit": "keystone-{host}"}},
    }
    config = parse_controlplane(section, "haven.toml")
    assert {s.name: s.unit for s in config.services} == {
        "nova-api": "nova_api",
        "keystone": "keystone-{host}",
    }
    plane = ControlPlane(config, simulated_cloud=False, clock=RealClock())
    assert all(isinstance(u, ContainerUnits) for u in plane.units.values())
    assert "podman containers" in plane.describe()
    asyncio.run(plane.aclose())
    from haven.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="engine must be"):
        parse_controlplane({"controllers": [{"host": "a", "engine": 3}]}, "haven.toml")
