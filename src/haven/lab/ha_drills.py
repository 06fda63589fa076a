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
  ``[controlplane]`` (haven.lab.ha.controlplane_toml), in a thread of its own, its store a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
import tomllib
from pathlib import Path
from types import TracebackType

import httpx

from haven.controlplane.config import ControlPlaneConfig, parse_controlplane
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.controlplane.running import ControlPlane
from haven.domain.clock import RealClock
from haven.domain.controlplane import ActionRecord, UnitStatus
from haven.domain.incidents import Alert
from haven.lab import ha
from haven.lab.process import LabServiceError
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


def lab_config(cluster: ha.HaLab) -> ControlPlaneConfig:
    """The ``[controlplane]`` that ``haven lab up --ha`` writes into the lab's haven.toml."""
    return parse_controlplane(tomllib.loads(ha.controlplane_toml(cluster))["controlplane"], "the HA lab")


class Healer:
    """haven's control plane over the HA lab, in a thread: ``with Healer(cluster, folder) as healer``."""

    def __init__(self, cluster: ha.HaLab, folder: Path, config: ControlPlaneConfig | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.config = config or lab_config(cluster)
        self.store = Store.open(f"sqlite:///{folder / 'healer.db'}")
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
        control = ControlPlane(self.config, simulated_cloud=False, clock=RealClock(), environ=os.environ)
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


class Load:
    """``clients`` threads sending GET ``url`` with ``token`` until stopped; what they saw."""

    def __init__(self, url: str, token: str, clients: int = 2, timeout_s: float = 30.0) -> None:
        self.url, self.token, self.timeout_s = url, token, timeout_s
        self.answers = 0
        self.errors: list[tuple[float, str]] = []  # (monotonic time, what went wrong)
        self.slowest = (0.0, 0.0)  # (seconds, when it was sent)
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
                    if took > self.slowest[0]:
                        self.slowest = (took, sent)
