"""Drills on the HA lab's replicas: a hung one (SIGSTOP), a crash-looping one, haven healing them.

Shared by tests/lab/test_ha_lab.py and bench/ha_lab.py, which judge from ground truth: HAProxy's own
``show servers state`` (haven.lab.ha.servers_state, check_health), systemd's unit over the
controller's D-Bus (haven.lab.ha.unit_state), ``/proc`` (``proc_states``) and what clients saw (``Load``).

- ``hang`` / ``resume``: SIGSTOP / SIGCONT every process of a replica's unit, gunicorn's master and its
  worker (a stopped master alone leaves its worker serving). Its port stays open: the kernel still
  accepts connections that nobody reads, and systemd still calls the unit active.
- ``break_replica`` / ``mend_replica``: one controller's replica fails at every start (its gunicorn
  config names a WSGI module that does not exist: the worker cannot boot, gunicorn exits 3), and a
  drop-in ``Restart=no`` leaves its restarts to haven (systemd 252 restarts at a fixed RestartSec only,
  so haven's exponential back-off governs only the restarts systemd leaves to it).
- ``Healer``: haven's control plane exactly as ``haven serve`` runs it (haven.controlplane.running
  .ControlPlane: systemd over each controller's D-Bus, HAProxy's runtime API, the probes) over the lab's
  ``[controlplane]`` (haven.lab.ha.controlplane_toml, with ``PROBE_TIMING``), in a thread of its own,
  its store a file.
- ``freeze`` / ``thaw``: a whole controller lost: SIGSTOP (SIGCONT) every process of its PID namespace,
  its systemd (PID 1) and D-Bus included: its systemd answers nothing, its replicas' ports stay open
  and answer nothing (the harder case for clients than a power loss, whose connections are refused).
- ``Rig``: for the re-spread and stale-member drills, a tiny service (Python's ``http.server``) as a
  systemd unit on each lab controller and on a third controller started here (``ctl-3``: systemd as
  PID 1 of its own namespace, as haven.lab.ha starts them), behind an HAProxy of its own: three hosts
  whose failure domains each drill declares, with replicas that start in a fraction of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from types import TracebackType

import httpx

from haven.controlplane.config import ControlPlaneConfig, parse_controlplane
from haven.controlplane.drivers.haproxy import HAProxyRuntime, parse_servers_state
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.controlplane.running import ControlPlane
from haven.domain.clock import RealClock
from haven.domain.controlplane import ActionRecord, UnitStatus
from haven.domain.incidents import Alert
from haven.lab import ha
from haven.lab.process import LabProcess, LabServiceError, free_port
from haven.store import Store

DROP_IN = "haven-drill.conf"
_BROKEN_APP = "haven_drill_missing_module:application"


def unit_status(controller: ha.Controller, unit: str) -> UnitStatus:
    """systemd's whole view of ``unit`` on ``controller`` (ActiveState, NRestarts, InvocationID...)."""

    async def read() -> UnitStatus:
        units = SystemdUnits(controller.bus)
        try:
            return await units.status(unit)
        finally:
            await units.close()

    return asyncio.run(read())


def unit_pids(controller: ha.Controller, unit: str) -> list[int]:
    """The host's pids of ``unit``'s main process and all its descendants, main first."""
    pids = [ha.main_pid(controller, unit)]
    for pid in pids:  # grows while it is read: a breadth-first walk
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                pids += [int(c) for c in (task / "children").read_text().split() if int(c) not in pids]
    return pids


def hang(controller: ha.Controller, unit: str) -> list[int]:
    """SIGSTOP every process of ``unit``; the pids stopped (give them to ``resume`` when done)."""
    pids = unit_pids(controller, unit)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def resume(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def proc_states(pids: list[int]) -> dict[int, str]:
    """Each pid's state letter as /proc says (``T``: stopped by a signal); ``gone`` once it exited."""
    out = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            out[pid] = "gone"
            continue
        out[pid] = stat.rsplit(")", 1)[1].split()[0]
    return out


def _systemd(controller: ha.Controller, *args: str) -> None:
    subprocess.run(
        ["busctl", "--system", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
         "org.freedesktop.systemd1.Manager", *args],
        env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": controller.bus}, check=True, capture_output=True,
        timeout=15,
    )  # fmt: skip


def _gunicorn_conf(controller: ha.Controller, service: str) -> Path:
    return controller.folder / service / "gunicorn.conf.py"


def break_replica(controller: ha.Controller, api: ha.Api) -> None:
    """From its next start on, ``api``'s replica on ``controller`` fails to boot; systemd leaves its
    restarts to haven (drop-in ``Restart=no``, systemd reloaded). Kill its process to start the loop."""
    conf = _gunicorn_conf(controller, api.service)
    text = conf.read_text()
    if _BROKEN_APP not in text:
        conf.write_text(text.replace(f'"{api.app}"', f'"{_BROKEN_APP}"'))
    drop_in = controller.folder / "units" / f"{api.unit}.d"
    drop_in.mkdir(exist_ok=True)
    (drop_in / DROP_IN).write_text("[Service]\nRestart=no\n")
    _systemd(controller, "Reload")


def mend_replica(controller: ha.Controller, api: ha.Api) -> None:
    """Undo ``break_replica`` and start the unit again by hand (as an operator who fixed it would)."""
    conf = _gunicorn_conf(controller, api.service)
    conf.write_text(conf.read_text().replace(f'"{_BROKEN_APP}"', f'"{api.app}"'))
    with contextlib.suppress(FileNotFoundError):
        (controller.folder / "units" / f"{api.unit}.d" / DROP_IN).unlink()
    _systemd(controller, "Reload")
    _systemd(controller, "ResetFailedUnit", "s", api.unit)
    _systemd(controller, "StartUnit", "ss", api.unit, "replace")


# The HTTP probes' timing for the drills (issue 11's SIGSTOP target: out of HAProxy <= 5 s). The lab's
# haven.toml had period 1 s, timeout 2 s, 3 failures: a pass waits for its slowest probe, so a hung
# replica cost about 3 x 2 s before haven saw it (8.47 s out of HAProxy in the last measurement).
PROBE_TIMING = {"period_s": 1.0, "timeout_s": 1.0, "failure_threshold": 2}


def lab_config(cluster: ha.HaLab, probe_timing: dict[str, float] | None = None) -> ControlPlaneConfig:
    """The ``[controlplane]`` that ``haven lab up --ha`` writes into the lab's haven.toml, its HTTP
    probes with ``probe_timing`` (default ``PROBE_TIMING``; ``{}`` keeps the lab's own)."""
    section = tomllib.loads(ha.controlplane_toml(cluster))["controlplane"]
    timing = PROBE_TIMING if probe_timing is None else probe_timing
    for body in section.get("services", {}).values():
        probe = body.get("probe")
        if isinstance(probe, dict) and probe.get("kind", "http") == "http":
            probe.update(timing)
    return parse_controlplane(section, "the HA lab")


def namespace_pids(controller: ha.Controller) -> list[int]:
    """This machine's pids of every process in ``controller``'s PID namespace, its PID 1 first."""
    namespace = os.readlink(f"/proc/{controller.pid1}/ns/pid")
    pids = [controller.pid1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != controller.pid1:
            with contextlib.suppress(OSError):
                if os.readlink(entry / "ns" / "pid") == namespace:
                    pids.append(int(entry.name))
    return pids


def freeze(controller: ha.Controller) -> list[int]:
    """The whole controller lost: SIGSTOP its systemd (PID 1), then every other process of its namespace
    (twice: a process forked meanwhile is caught the second time). ``thaw`` the pids returned."""
    frozen: list[int] = []
    for _ in range(2):
        for pid in namespace_pids(controller):
            if pid not in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                    frozen.append(pid)
    return frozen


def thaw(pids: list[int]) -> None:
    resume(pids)


class Healer:
    """haven's control plane over the HA lab, in a thread: ``with Healer(cluster, folder) as healer``."""

    def __init__(
        self, cluster: ha.HaLab | None, folder: Path, config: ControlPlaneConfig | None = None
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if config is None and cluster is None:
            raise ValueError("a Healer needs the HA lab or a [controlplane]")
        self.config = config if config is not None else lab_config(cluster)  # type: ignore[arg-type]
        self.store = Store.open(f"sqlite:///{folder / 'healer.db'}")
        self._environ = dict(os.environ)
        # The nova_rpc probes' transport URL, as LAB/ha/serve.env gives it to haven serve.
        # (getattr: the lab's Nova workers are newer than these drills; a lab without them needs none)
        url_env, url_of = getattr(ha, "TRANSPORT_URL_ENV", ""), getattr(ha, "transport_url", None)
        if (
            cluster is not None
            and getattr(cluster, "workers", None)
            and url_of
            and url_env not in self._environ
        ):
            self._environ[url_env] = url_of(cluster.folder.parent)
        if cluster is not None and ha.PROBE_PASSWORD_ENV not in self._environ:
            # nova-api's deep probe: the lab admin's password, as LAB/ha/serve.env gives it.
            self._environ[ha.PROBE_PASSWORD_ENV] = ha.probe_password(cluster.folder.parent)
        self._thread = threading.Thread(target=self._main, name="haven-healer", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None

    def __enter__(self) -> Healer:
        self._thread.start()
        if not self._ready.wait(30):
            raise LabServiceError("haven's control plane did not start within 30 s")
        if self.error is not None:
            raise LabServiceError(f"haven's control plane did not start: {self.error}")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.store.close()
        if self._thread.is_alive():
            raise LabServiceError("haven's control plane did not stop within 30 s of being told to")

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # told to the caller, never lost in the thread
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        control = ControlPlane(self.config, simulated_cloud=False, clock=RealClock(), environ=self._environ)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        try:
            await control.run(self.store, None, None, self._stop)
        finally:
            await control.aclose()

    def actions(self, service: str | None = None, host: str | None = None) -> list[ActionRecord]:
        return [
            a
            for a in self.store.actions_since(0)
            if (service is None or a.service == service) and (host is None or a.host == host)
        ]

    def alerts(self) -> list[Alert]:
        return self.store.list_alerts()


SLOW_S = 2.0  # Load keeps every request slower than this (a restarted replica's cold answers)


class Load:
    """``clients`` threads sending GET ``url`` with ``token`` until stopped; what they saw."""

    def __init__(self, url: str, token: str, clients: int = 2, timeout_s: float = 30.0) -> None:
        self.url, self.token, self.timeout_s = url, token, timeout_s
        self.answers = 0
        self.errors: list[tuple[float, str]] = []  # (monotonic time, what went wrong)
        self.slowest = (0.0, 0.0)  # (seconds, when it was sent)
        self.slow: list[tuple[float, float]] = []  # (when sent, seconds) of answers slower than SLOW_S
        self.answered: list[float] = []  # when each answer came (monotonic): the rate over any window
        self.started = 0.0
        self.seconds = 0.0  # how long it ran (set when it stops)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)
        self.seconds = time.monotonic() - self.started

    def cut_by(self, at: float) -> list[tuple[float, str]]:
        """The errors that are requests in flight on a process killed at ``at`` (monotonic): sent at or
        before it and cut mid-answer ("peer closed connection"), at most one per client. HAProxy cannot
        send a request elsewhere once its answer has begun, so a kill -9 may cost these and only these."""
        cut = [e for e in self.errors if e[0] <= at and "closed connection" in e[1]]
        return cut if len(cut) <= len(self._threads) else []

    def _client(self) -> None:
        with httpx.Client(timeout=self.timeout_s, trust_env=False) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    status = http.get(self.url, headers={"X-Auth-Token": self.token}).status_code
                    failure = "" if status == 200 else f"HTTP {status}"
                except httpx.HTTPError as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                took = time.monotonic() - sent
                with self._lock:
                    if failure:
                        self.errors.append((sent, failure))
                    else:
                        self.answers += 1
                        self.answered.append(sent + took)
                    if took > self.slowest[0]:
                        self.slowest = (took, sent)
                    if took > SLOW_S:
                        self.slow.append((sent, took))


class Rig:
    """A tiny service ``drill-web`` (unit ``haven-drill-web.service``: Python's http.server) on ctl-1,
    ctl-2 and a third controller ctl-3 started here, behind an HAProxy of its own (backend ``drill_web``,
    servers named after the hosts, ``check inter 1s fall 2 rise 1``). No unit runs at first: a drill
    starts the ones it wants (``start``). ``with Rig(cluster, folder) as rig``; everything started is
    stopped at the end, the unit files removed from the lab's controllers."""

    UNIT = "haven-drill-web.service"
    SERVICE = "drill-web"
    BACKEND = "drill_web"

    def __init__(self, cluster: ha.HaLab, folder: Path) -> None:
        self.cluster, self.folder = cluster, folder
        self.port = free_port()
        self.frontend = free_port()
        self.extra: ha.Controller | None = None
        self.haproxy: LabProcess | None = None

    @property
    def socket(self) -> str:
        return str(self.folder / "haproxy.sock")

    @property
    def controllers(self) -> list[ha.Controller]:
        return [*self.cluster.controllers, *([self.extra] if self.extra is not None else [])]

    def controller(self, host: str) -> ha.Controller:
        return next(c for c in self.controllers if c.host == host)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.frontend}/"

    def __enter__(self) -> Rig:
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            # the lab's own way to start a controller (haven.lab.ha): systemd as PID 1, its D-Bus
            self.extra = ha._start_controller(
                self.folder / "ctl-3",
                "ctl-3",
                "127.0.1.3",
                self.cluster.folder.parent,
                {},
                (),
                {},
                "on-failure",
            )
            ha._wait_for_bus(self.extra, 15.0)
            (self.folder / "www").mkdir(exist_ok=True)
            (self.folder / "www" / "index.html").write_text("drill\n")
            for controller in self.controllers:
                (controller.folder / "units" / self.UNIT).write_text(
                    f"[Unit]\nDescription=haven drill service on {controller.host}\nDefaultDependencies=no\n"
                    f"[Service]\nExecStart={sys.executable} -m http.server --bind {controller.address} "
                    f"{self.port} --directory {self.folder / 'www'}\nRestart=on-failure\nRestartSec=1\n"
                )
                _systemd(controller, "Reload")
            config = self.folder / "haproxy.cfg"
            servers = "".join(
                f"    server {c.host} {c.address}:{self.port} check inter 1s fall 2 rise 1\n"
                for c in self.controllers
            )
            config.write_text(
                f"global\n    stats socket {self.socket} mode 600 level admin\n"
                "defaults\n    mode http\n    option redispatch\n    retries 3\n"
                "    retry-on conn-failure empty-response\n    timeout connect 1s\n"
                "    timeout client 30s\n    timeout server 30s\n    timeout check 1s\n"
                f"frontend {self.BACKEND}\n    bind 127.0.0.1:{self.frontend}\n"
                f"    default_backend {self.BACKEND}\nbackend {self.BACKEND}\n    option httpchk GET /\n"
                + servers
            )
            self.haproxy = LabProcess(
                "haproxy-drill", [ha.HAPROXY, "-db", "-f", str(config)], self.folder / "haproxy.log"
            ).start()
            self.haproxy.wait_until(lambda: Path(self.socket).exists(), 10.0, "admin socket")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.haproxy is not None:
            self.haproxy.stop(grace_s=5)
        for controller in self.cluster.controllers:
            with contextlib.suppress(Exception):
                _systemd(controller, "StopUnit", "ss", self.UNIT, "replace")
            with contextlib.suppress(FileNotFoundError):
                (controller.folder / "units" / self.UNIT).unlink()
            with contextlib.suppress(Exception):
                _systemd(controller, "Reload")
        if self.extra is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.extra.pid1, signal.SIGKILL)
            unshare = self.extra.unshare
            if unshare is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    unshare.wait(10)
                if unshare.poll() is not None and unshare in ha._UNSHARES:
                    ha._UNSHARES.remove(unshare)
            self.extra = None

    def start(self, host: str) -> None:
        _systemd(self.controller(host), "StartUnit", "ss", self.UNIT, "replace")

    def stop(self, host: str) -> None:
        _systemd(self.controller(host), "StopUnit", "ss", self.UNIT, "replace")

    def unit(self, host: str) -> UnitStatus:
        return unit_status(self.controller(host), self.UNIT)

    def members(self) -> dict[str, tuple[str, str]]:
        """HAProxy's own ``show servers state`` of the rig's backend: host -> (admin, operational)."""
        text = asyncio.run(HAProxyRuntime(self.socket).command("show servers state"))
        return {server: (admin.value, op) for (_b, server), (admin, op) in parse_servers_state(text).items()}

    def set_member(self, host: str, state: str) -> None:
        """By hand, as an operator or a reload would leave it: ``ready``, ``drain`` or ``maint``."""
        asyncio.run(HAProxyRuntime(self.socket).command(f"set server {self.BACKEND}/{host} state {state}"))

    def config(self, domains: dict[str, str], min_replicas: int = 2) -> ControlPlaneConfig:
        """haven's ``[controlplane]`` for the rig: the hosts ``domains`` names, in those domains."""
        section = {
            "haproxy_socket": self.socket,
            "controllers": [
                {"host": c.host, "domain": domains[c.host], "address": c.address, "bus": c.bus}
                for c in self.controllers
                if c.host in domains
            ],
            "services": {
                self.SERVICE: {
                    "unit": self.UNIT,
                    "min_replicas": min_replicas,
                    "backend": self.BACKEND,
                    "drain_s": 1.0,
                    "probe": {"kind": "http", "port": self.port, "path": "/", "period_s": 0.5,
                              "timeout_s": 1.0, "failure_threshold": 2, "startup_grace_s": 10.0},
                }
            },
        }  # fmt: skip
        return parse_controlplane(section, "the drill rig")
