"""``haven lab up --ha``: the lab's stateless APIs as systemd units on two controllers behind HAProxy.

Who calls it: haven.lab.lab (``up(..., ha=True)``, once the plain lab is up), the HA lab test
(tests/lab/test_ha_lab.py, which starts the controllers over the session's running lab) and
bench/ha_lab.py (which reads a running HA lab back with ``from_state``).

Each controller (``ctl-1``, ``ctl-2``) is Debian's systemd 252 running as PID 1 of its own PID, mount and
UTS namespaces (``unshare --pid --fork --mount --mount-proc --uts``), seeing only the units of its own
folder (``SYSTEMD_UNIT_PATH``) and answering on its own dbus-daemon's socket there: nothing of the
machine's is started or changed. Its replicas are ``keystone.service``, ``nova-api.service``,
``placement-api.service`` and ``glance-api.service`` (the catalogue's unit names, so haven's
``[controlplane]`` needs no override), each a gunicorn of the lab's tool venvs reading the lab's own
config (``LAB/keystone``, ``LAB/nova``, ...), with ``Restart=on-failure``,
``RestartSec=1`` as a packaged unit has. A controller is its own loopback address (127.0.1.N): every
replica of a service listens on the same port, as on real controllers, so one probe spec fits all.

Debian's HAProxy has one frontend per API on 127.0.0.1 and one backend whose servers are named after
the controllers (what haven's HAProxy driver expects), checked with ``option httpchk`` (the version
document) ``inter 1s fall 3 rise 2``, plus ``observe layer4 error-limit 1 on-error mark-down``: the
first connection a dead replica refuses marks it DOWN at once, so no request waits on a restarted
replica whose port is open while its worker still loads (without it, clients timed out in 2 of 5
kills). ``option redispatch``, ``retries 3`` and ``retry-on conn-failure empty-response
response-timeout`` send a request a dead replica refused or never answered to the other one. Each
member has ``maxconn`` ``SERVER_MAXCONN`` (half its gunicorn's threads: a thread stays free for the
checks, see there), the rest waiting in HAProxy's queue (``timeout queue``).
Its admin socket is ``LAB/ha/haproxy.sock``. Beside each frontend, a second one on the same replicas
(``BACKEND_kolla``) is checked as Kolla-Ansible's template renders it (``check inter 2000 rise 2 fall 5``,
a TCP connect check, ``timeout check 10s``, ``timeout server 1m``): the anchor the drills compare with.
haven's ``[controlplane]`` names only the first backends, so it never acts on the anchor's.

Token caches: each controller also runs ``memcached.service`` (the catalogue's unit; Debian's memcached
on the controller's address, one free port for all, 16 MiB), and every API replica's
``[keystone_authtoken] memcached_servers`` lists every controller's memcached, a spare's started with the
lab included (how a dead, hung or stopped one is left out: haven.lab.memcached), as the install guide,
Kolla-Ansible and OpenStack-Helm deploy them: a token validated by one process of one replica is a cache
hit for every other. Keystone's replicas keep their own ``[cache]`` there too (Kolla-Ansible's
keystone.conf: a token's validation, its role assignments, the catalog), so a token issued or validated
by one replica costs the other no new expansion. haven.toml's ``[controlplane]`` declares it
(memcached's ``version`` as its probe), so haven heals a memcached like any replica, a SIGSTOPped one too.
``start(memcached=False)`` starts the HA lab without them (each process keeps its own in-process
cache, as before 2026-12-07; Keystone none).

Nova's workers: each controller also runs ``nova-conductor.service`` and ``nova-scheduler.service`` (the
catalogue's units), Nova's own binaries of the lab's nova venv on the lab's nova.conf (its RabbitMQ and
MariaDB) plus the controller's ``nova-host.conf`` (``[DEFAULT] host = ctl-N``: Nova's name of the
service, the server that haven's ``nova_rpc`` probe pings on Nova's exchange ``nova``). ``start``
returns once each of them answers that ping. The plain lab's own conductor and scheduler are then
stopped by ``haven lab up --ha`` (haven.lab.lab, ``RETIRED``), so the HA lab's instances are built
through the replicas only. haven's ``[controlplane]`` probes them with ``nova_rpc``; the transport URL
is a secret (RabbitMQ's password): probes read it from the environment (``TRANSPORT_URL_ENV``), which
``LAB/ha/serve.env`` sets.

A spare controller (``haven lab up --ha --controllers 3``; ``add_spare`` on a running HA lab): ``ctl-3``,
its own failure domain, started the same way with every replica's unit installed but **stopped** (not
wanted by its target), its members added to every backend through HAProxy's runtime API (``add server``:
a dynamic server starts in maintenance; its checks enabled) and declared in haven.toml's
``[controlplane]``: a standby host where haven's planner may start the replicas a lost controller took
with it (rule 5: a stopped unit, emptiest failure domain first) and put their members back in once their
probes pass (rule 7: a member someone else took out whose unit was started since). haproxy.cfg is
rewritten with them too, ``disabled`` (in maintenance, as added at runtime), so a restarted HAProxy keeps
the spare (in maintenance: HAProxy keeps no runtime state across a restart without a server-state
file, which the lab does not use). The HA lab's Galera and RabbitMQ stay on the two active controllers
(``HaLab.active``).

Stopping: the lab state records each controller's PID 1 (as the host sees it) with ``namespace = True``:
``haven lab down`` SIGKILLs exactly it, which ends everything in that namespace; HAProxy is an ordinary
lab process (its own process group).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from haven.controlplane.drivers.haproxy import HAProxyRuntime, parse_servers_state
from haven.controlplane.drivers.service_probes import NovaRpc, ProbeFailed
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.domain.controlplane import ProbeKind, ProbeSpec
from haven.domain.errors import HavenError
from haven.lab import labfiles
from haven.lab.memcached import (
    MEMCACHED,
    MEMCACHED_UNIT,
    authtoken_env,
    keystone_cache_env,
    memcached_command,
    stats,
)
from haven.lab.process import LabProcess, LabServiceError, free_port
from haven.lab.toolenv import Progress

SYSTEMD = "/lib/systemd/systemd"
DBUS_DAEMON = "/usr/bin/dbus-daemon"
UNSHARE = "/usr/bin/unshare"
HAPROXY = "/usr/sbin/haproxy"
CONTROLLERS = ("ctl-1", "ctl-2")
MAX_CONTROLLERS = 3  # the two active ones and one spare (``--controllers 3``)
# haven's nova_rpc probes read Nova's transport URL from this variable (LAB/ha/serve.env sets it).
TRANSPORT_URL_ENV = "HAVEN_LAB_NOVA_TRANSPORT_URL"
# haven's deep probe of nova-api (``nova_services``: a token from Keystone's frontend, then Nova's
# service list on the replica) reads the lab admin's password from this variable (LAB/ha/serve.env).
PROBE_PASSWORD_ENV = "HAVEN_LAB_PROBE_PASSWORD"
# The plain lab's services the HA lab's replicas replace (haven lab up --ha stops them once these answer).
RETIRED = ("nova-conductor", "nova-scheduler")
TARGET = "haven-lab.target"
# gunicorn's graceful stop (its default is 30 s). A stop of a hung replica waits for it: in the lab,
# systemd 252 (PID 1 of a namespace) sends SIGTERM and SIGCONT to the main process only, so a stopped
# worker stays stopped until gunicorn's master kills it when this runs out; on a real controller a
# deadlocked worker that never handles SIGTERM costs the same. Requests in flight get this long.
GRACEFUL_S = 5
# The unshare processes this Python process started: reaped by ``reap`` once their PID 1 is killed.
_UNSHARES: list[subprocess.Popen[bytes]] = []

_BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>systemd:</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""
_GUNICORN = """\
wsgi_app = "{app}"
bind = "{address}:{port}"
workers = 1
threads = 8
timeout = 120
graceful_timeout = {graceful}
keepalive = 0
errorlog = "-"
control_socket_disable = True


def post_fork(server, worker):
    # The worker dies with its master, as systemd's cgroup kill would have it: this systemd (PID 1
    # of a namespace) signals the main process only, and a worker left over from a killed master keeps
    # the port until it notices (0.5-1 s measured, longer under load) while systemd starts a new one.
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
"""

# Runs a Nova service's console script with its forked workers dying with their parent (oslo.service's
# threading backend forks one even for workers = 1): this systemd signals the main process only, and a
# worker left over from a stopped master (SIGSTOPped: stopped itself) keeps consuming its queues, so a
# share of the RPC calls to the new replica's host went to it and were never answered.
_LAUNCH = """\
import ctypes, os, signal, sys
from importlib.metadata import entry_points


def _die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


os.register_at_fork(after_in_child=_die_with_parent)
name = sys.argv[1]
sys.argv = [name, *sys.argv[2:]]
(script,) = [e for e in entry_points(group="console_scripts") if e.name == name]
sys.exit(script.load()())
"""


@dataclass(frozen=True)
class Api:
    """One API replicated on every controller: its unit, tool venv, WSGI app, config and health path."""

    service: str  # the catalogue's name (haven.controlplane.catalogue)
    unit: str
    backend: str  # HAProxy backend (the catalogue's)
    tool: str  # the tool venv
    app: str
    config_env: str  # the variable naming its config folder
    config_dir: str  # under the lab folder
    check_path: str  # HAProxy's and haven's probe path
    catalog_type: str  # the Keystone catalog's service type
    catalog_suffix: str  # appended to the frontend's URL in the catalog


APIS = (
    Api("keystone", "keystone.service", "keystone", "keystone", "keystone.wsgi.api:application",
        "OS_KEYSTONE_CONFIG_DIR", "keystone", "/v3", "identity", "/v3"),
    Api("nova-api", "nova-api.service", "nova_api", "nova", "nova.wsgi.osapi_compute:application",
        "OS_NOVA_CONFIG_DIR", "nova", "/", "compute", "/v2.1"),
    Api("placement-api", "placement-api.service", "placement_api", "nova", "placement.wsgi.api:application",
        "OS_PLACEMENT_CONFIG_DIR", "placement", "/", "placement", ""),
    Api("glance-api", "glance-api.service", "glance_api", "glance", "glance.wsgi.api:application",
        "OS_GLANCE_CONFIG_DIR", "glance", "/healthcheck", "image", ""),
)  # fmt: skip


@dataclass(frozen=True)
class Worker:
    """One of Nova's RPC workers replicated on every controller: its unit, binary and RPC topic."""

    service: str  # the catalogue's name
    unit: str
    topic: str  # Nova's RPC topic: what the nova_rpc probe pings (server = the controller's host)

    @property
    def binary(self) -> str:
        return self.service  # in the nova venv's bin/


WORKERS = (
    Worker("nova-conductor", "nova-conductor.service", "conductor"),
    Worker("nova-scheduler", "nova-scheduler.service", "scheduler"),
)


@dataclass
class Controller:
    host: str
    address: str  # its loopback address: every replica on it binds there
    folder: Path
    pid1: int  # PID 1 of its namespace, as this machine sees it
    unshare: subprocess.Popen[bytes] | None = None  # None when read back from the lab state
    spare: bool = False  # a standby host: its units installed, stopped; its members in maintenance

    @property
    def bus(self) -> str:
        return f"unix:path={self.folder / 'bus'}"


@dataclass
class HaLab:
    folder: Path  # LAB/ha
    controllers: list[Controller]
    apis: tuple[Api, ...]  # the replicated APIs
    ports: dict[str, int]  # service -> the port of its replicas (on each controller's address)
    frontends: dict[str, int]  # service -> HAProxy's frontend port on 127.0.0.1
    # service -> the port of its Kolla-checked frontend (backend ``<backend>_kolla``); {}: an older lab
    kolla_frontends: dict[str, int] = field(default_factory=dict)
    workers: tuple[Worker, ...] = ()  # Nova's conductor and scheduler on every controller; (): none
    haproxy: LabProcess | None = None
    # the APIs validate tokens through Keystone's frontend (opt-in: ``start(authtoken_frontend=True)``)
    authtoken_frontend: bool = False
    memcached_port: int = 0  # each controller's memcached (haven.lab.memcached); 0: none (an older lab)
    # How many controllers' memcacheds (ctl-1, ctl-2, ...) every API replica lists: the spare ``start``
    # was asked for included; a spare ``add_spare`` puts on a running lab is not (its replicas would need
    # their configuration again and a restart, as a real deployment's would).
    memcached_listed: int = len(CONTROLLERS)
    started_in_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def haproxy_socket(self) -> str:
        return str(self.folder / "haproxy.sock")

    def frontend_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.frontends[service]}"

    def controller(self, host: str) -> Controller:
        return next(c for c in self.controllers if c.host == host)

    @property
    def active(self) -> list[Controller]:
        """The controllers that run every replica from the start (not the spare)."""
        return [c for c in self.controllers if not c.spare]

    @property
    def spares(self) -> list[Controller]:
        return [c for c in self.controllers if c.spare]

    @property
    def memcached_servers(self) -> list[str]:
        """``[keystone_authtoken] memcached_servers`` of every API replica: the memcached of each listed
        controller (``memcached_listed``), a spare's too although it is stopped until haven starts it (a
        refused connection marks it dead for dead_retry, its keys go to the others: python-memcached);
        [] without memcached."""
        if not self.memcached_port:
            return []
        return [f"{_address(i)}:{self.memcached_port}" for i in range(1, self.memcached_listed + 1)]


def describe(ha: HaLab) -> dict[str, object]:
    """What the lab state keeps of the HA part (``from_state`` reads it back in another process)."""
    return {
        "folder": str(ha.folder),
        "controllers": [
            {
                "host": c.host,
                "address": c.address,
                "folder": str(c.folder),
                "pid1": c.pid1,
                "bus": c.bus,
                "spare": c.spare,
            }
            for c in ha.controllers
        ],
        "apis": [api.service for api in ha.apis],
        "workers": [worker.service for worker in ha.workers],
        "ports": ha.ports,
        "frontends": ha.frontends,
        "kolla_frontends": ha.kolla_frontends,
        "haproxy_socket": ha.haproxy_socket,
        "authtoken_frontend": ha.authtoken_frontend,
        "memcached_port": ha.memcached_port,
        "memcached_listed": ha.memcached_listed,
        "started_in_s": ha.started_in_s,
    }


def from_state(saved: Mapping[str, object]) -> HaLab:
    """The HA part of a running lab, as ``describe`` saved it."""
    try:
        controllers = [
            Controller(
                str(c["host"]),
                str(c["address"]),
                Path(str(c["folder"])),
                int(c["pid1"]),
                spare=bool(c.get("spare", False)),
            )
            for c in saved["controllers"]  # type: ignore[attr-defined]
        ]
        ports = {str(k): int(v) for k, v in saved["ports"].items()}  # type: ignore[attr-defined]
        frontends = {str(k): int(v) for k, v in saved["frontends"].items()}  # type: ignore[attr-defined]
        kolla = {str(k): int(v) for k, v in saved.get("kolla_frontends", {}).items()}  # type: ignore[attr-defined]
        apis = tuple(api for api in APIS if api.service in ports)
        names = {str(name) for name in saved.get("workers", [])}  # type: ignore[attr-defined]
        workers = tuple(worker for worker in WORKERS if worker.service in names)
        found = HaLab(Path(str(saved["folder"])), controllers, apis, ports, frontends, kolla, workers)
        found.authtoken_frontend = bool(saved.get("authtoken_frontend", False))
        found.memcached_port = int(saved.get("memcached_port", 0))  # type: ignore[call-overload]
        found.memcached_listed = int(saved.get("memcached_listed", len(CONTROLLERS)))  # type: ignore[call-overload]
        return found
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise LabServiceError(f"the lab state's HA part is not readable ({exc}): is this an HA lab?") from exc


def check_requirements() -> None:
    """Refuse early, naming what is missing: root, and the Debian packages of the HA lab."""
    if os.geteuid() != 0:
        raise LabServiceError(
            "haven lab up --ha needs root: systemd runs as PID 1 of the lab's own PID namespace"
        )
    for path, package in ((SYSTEMD, "systemd"), (DBUS_DAEMON, "dbus-daemon"), (UNSHARE, "util-linux"),
                          (HAPROXY, "haproxy"), (MEMCACHED, "memcached")):  # fmt: skip
        if not Path(path).exists():
            raise LabServiceError(
                f"{path} is missing: install Debian's {package} (scripts/install-system-deps.sh)"
            )


def start(
    lab_folder: Path,
    venvs: Mapping[str, Path],
    keep_namespace: Callable[[str, int, Path], None],
    keep: Callable[[LabProcess], object],
    say: Progress,
    *,
    restart: str = "on-failure",
    timeout_s: float = 120.0,
    apis: tuple[Api, ...] = APIS,
    workers: tuple[Worker, ...] = WORKERS,
    spares: int = 0,
    authtoken_frontend: bool = False,
    memcached: bool = True,
) -> HaLab:
    """Start the controllers and HAProxy over the lab in ``lab_folder``; return once HAProxy has every
    replica UP and every worker replica answers an RPC ping. ``keep_namespace(name, pid1, log)`` and
    ``keep(process)`` record what was started as soon as it runs, so a failure later still lets the
    caller stop it. ``spares`` (0 or 1): then a spare controller too (``add_spare``).
    ``authtoken_frontend``: the APIs validate tokens through Keystone's frontend (off by default: under
    24 clients at load 33-58 the two Keystone replicas, taking every validation, were marked down by
    HAProxy's 2 s check and the drills could not run; see docs/controlplane.md).
    ``memcached``: a memcached per controller behind every API's keystonemiddleware
    (haven.lab.memcached); False starts the HA lab as it was before them (for a comparison)."""
    check_requirements()
    if not 0 <= spares <= MAX_CONTROLLERS - len(CONTROLLERS):
        raise LabServiceError(
            f"the HA lab runs {len(CONTROLLERS)} to {MAX_CONTROLLERS} controllers: "
            f"{len(CONTROLLERS) + spares} asked"
        )
    started = time.monotonic()
    folder = lab_folder / "ha"
    folder.mkdir(parents=True, exist_ok=True)
    ports = {api.service: free_port() for api in apis}
    frontends = {api.service: free_port() for api in apis}
    kolla = {api.service: free_port() for api in apis}
    ha = HaLab(folder, [], apis, ports, frontends, kolla, workers, authtoken_frontend=authtoken_frontend,
               memcached_port=free_port() if memcached else 0,
               memcached_listed=len(CONTROLLERS) + spares)  # fmt: skip
    labfiles.private(folder / "serve.env", serve_env(lab_folder, workers=bool(workers)))
    say(f"HA: starting systemd on {', '.join(CONTROLLERS)} and HAProxy")
    for index, host in enumerate(CONTROLLERS, start=1):
        controller = _start_controller(folder / host, host, _address(index), lab_folder, venvs, apis,
                                       ports, restart, workers, keystone_url=_keystone_url(ha),
                                       memcached=(ha.memcached_port, ha.memcached_servers))  # fmt: skip
        ha.controllers.append(controller)
        keep_namespace(f"systemd@{host}", controller.pid1, controller.folder / "systemd.log")
    config = write_config(ha)
    ha.haproxy = LabProcess("haproxy", [HAPROXY, "-db", "-f", str(config)], folder / "haproxy.log").start()
    keep(ha.haproxy)
    for controller in ha.controllers:
        _wait_for_bus(controller, 15.0)
    ha.haproxy.wait_until(lambda: Path(ha.haproxy_socket).exists(), 10.0, "admin socket")
    if ha.memcached_port:
        say(f"HA: waiting for memcached on {', '.join(c.host for c in ha.active)}")
        _wait_memcached(ha, 30.0)
    say("HA: waiting for HAProxy to see every replica UP")
    _wait_all_up(ha, timeout_s)
    if workers:
        say("HA: waiting for each nova-conductor and nova-scheduler replica to answer an RPC ping")
        wait_workers(ha, transport_url(lab_folder), timeout_s)
    for _ in range(spares):
        say(f"HA: a spare controller ctl-{len(ha.controllers) + 1}, its units installed and stopped")
        add_spare(ha, lab_folder, venvs, keep_namespace, restart=restart)
    ha.started_in_s = round(time.monotonic() - started, 1)
    return ha


def _spare_servers(ha: HaLab, controller: Controller) -> list[tuple[str, str]]:
    """(backend, the ``add server`` arguments) of the spare's members: as ``haproxy_config`` has them."""
    out = []
    for api in ha.apis:
        where = f"{controller.address}:{ha.ports[api.service]}"
        out.append((api.backend, f"{where} {SERVER_OPTIONS}"))
        if api.service in ha.kolla_frontends:
            out.append((f"{api.backend}_kolla", f"{where} {_KOLLA_CHECK}"))
    return out


def add_spare(
    ha: HaLab,
    lab_folder: Path,
    venvs: Mapping[str, Path],
    keep_namespace: Callable[[str, int, Path], None],
    *,
    restart: str = "on-failure",
) -> Controller:
    """A spare controller on a running HA lab: ``ctl-N`` (its own failure domain and loopback address),
    systemd as PID 1 of its own namespace with every replica's unit of ``ha`` installed and stopped,
    added to every backend of HAProxy (runtime API ``add server``: it starts in maintenance) with its
    checks enabled. Appended to ``ha.controllers``; ``controlplane_toml`` declares it. Undo with
    ``remove_spare``."""
    if len(ha.controllers) >= MAX_CONTROLLERS:
        raise LabServiceError(
            f"the HA lab already runs {len(ha.controllers)} controllers (at most {MAX_CONTROLLERS})"
        )
    index = len(ha.controllers) + 1
    host = f"ctl-{index}"
    controller = _start_controller(ha.folder / host, host, _address(index), lab_folder, venvs, ha.apis,
                                   ha.ports, restart, ha.workers, standby=True,
                                   keystone_url=_keystone_url(ha),
                                   memcached=(ha.memcached_port, ha.memcached_servers))  # fmt: skip
    controller.spare = True
    keep_namespace(f"systemd@{host}", controller.pid1, controller.folder / "systemd.log")
    ha.controllers.append(controller)
    _wait_for_bus(controller, 15.0)
    runtime = HAProxyRuntime(ha.haproxy_socket)
    for backend, arguments in _spare_servers(ha, controller):
        _runtime(runtime, f"add server {backend}/{host} {arguments}", "New server registered")
        _runtime(runtime, f"enable health {backend}/{host}")
    state = servers_state(ha)
    wrong = {k: v for k, v in state.items() if k[1] == host and v[0] != "maint"}
    if wrong:
        raise LabServiceError(f"the spare's members are not in maintenance in HAProxy: {wrong}")
    write_config(ha)  # a restarted HAProxy keeps them (disabled: in maintenance, as added)
    return controller


def remove_spare(ha: HaLab, controller: Controller) -> None:
    """Undo ``add_spare``: its members out of HAProxy (maintenance, sessions shut, deleted), its
    namespace's PID 1 killed (every unit there ends), gone from ``ha.controllers``."""
    runtime = HAProxyRuntime(ha.haproxy_socket)
    for backend, _arguments in _spare_servers(ha, controller):
        _runtime(runtime, f"set server {backend}/{controller.host} state maint")
        _runtime(runtime, f"shutdown sessions server {backend}/{controller.host}")
        deadline = time.monotonic() + 10.0
        while True:  # a server with connections left cannot be deleted
            answer = asyncio.run(runtime.command(f"del server {backend}/{controller.host}"))
            if "deleted" in answer.lower() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(controller.pid1, signal.SIGKILL)
    if controller in ha.controllers:
        ha.controllers.remove(controller)
    write_config(ha)
    reap()


def _runtime(runtime: HAProxyRuntime, command: str, expect: str = "") -> str:
    answer = asyncio.run(runtime.command(command))
    if expect and expect not in answer:
        raise LabServiceError(f"HAProxy refused `{command}`: {answer.strip()}")
    return answer


def _start_controller(
    folder: Path,
    host: str,
    address: str,
    lab_folder: Path,
    venvs: Mapping[str, Path],
    apis: tuple[Api, ...],
    ports: Mapping[str, int],
    restart: str,
    workers: tuple[Worker, ...] = (),
    *,
    standby: bool = False,
    keystone_url: str = "",
    memcached: tuple[int, list[str]] = (0, []),
) -> Controller:
    """``standby``: the replicas' units are installed but not wanted by the target (a spare: stopped).
    ``memcached``: (the port of this controller's memcached, every API's ``memcached_servers``); (0, []):
    none, the APIs keep validated tokens per process.
    ``keystone_url``: Keystone's frontend, where the other APIs' keystonemiddleware validates tokens
    (``[keystone_authtoken] auth_url`` and ``www_authenticate_uri``, set through oslo.config's
    environment source, which wins over the lab's config files the plain lab's services share)."""
    units = folder / "units"
    units.mkdir(parents=True, exist_ok=True)
    (folder / "bus.conf").write_text(_BUS_CONF)
    (units / "dbus.socket").write_text(
        f"[Unit]\nDefaultDependencies=no\n[Socket]\nListenStream={folder / 'bus'}\n"
    )
    (units / "dbus.service").write_text(
        "[Unit]\nDefaultDependencies=no\nRequires=dbus.socket\n[Service]\n"
        f"ExecStart={DBUS_DAEMON} --config-file={folder / 'bus.conf'} --nofork --nopidfile\n"
    )
    wanted = ["dbus.socket", "dbus.service"]
    memcached_port, memcached_servers = memcached
    if memcached_port:
        log = folder / "memcached.log"
        (units / MEMCACHED_UNIT).write_text(
            f"[Unit]\nDescription=memcached on {host} (haven lab --ha)\nDefaultDependencies=no\n"
            f"[Service]\nExecStart={memcached_command(address, memcached_port)}\n"
            f"StandardOutput=append:{log}\nStandardError=append:{log}\n"
            f"Restart={restart}\nRestartSec=1\n"
        )
        wanted.append(MEMCACHED_UNIT)
    for api in apis:
        replica = folder / api.service
        replica.mkdir(exist_ok=True)
        (replica / "gunicorn.conf.py").write_text(
            _GUNICORN.format(app=api.app, address=address, port=ports[api.service], graceful=GRACEFUL_S)
        )
        log = replica / f"{api.service}.log"
        (units / api.unit).write_text(
            f"[Unit]\nDescription={api.service} on {host} (haven lab --ha)\nDefaultDependencies=no\n"
            f"[Service]\nExecStart={venvs[api.tool] / 'bin' / 'gunicorn'}\nWorkingDirectory={replica}\n"
            f"Environment={api.config_env}={lab_folder / api.config_dir}\n"
            f"{_authtoken_env(keystone_url) if api.service != 'keystone' else ''}"
            f"{authtoken_env(memcached_servers) if api.service != 'keystone' else ''}"
            f"{keystone_cache_env(memcached_servers) if api.service == 'keystone' else ''}"
            f"StandardOutput=append:{log}\nStandardError=append:{log}\n"
            f"Restart={restart}\nRestartSec=1\n"
        )
        wanted.append(api.unit)
    if workers:
        # Nova's name of this controller's services (the server the RPC ping is sent to). A stop gets
        # 5 s to finish in-flight work (oslo.service waits 60 s by default), systemd 5 s in all (then
        # SIGKILL: a hung master waits for its stopped worker for ever).
        (folder / "nova-host.conf").write_text(f"[DEFAULT]\nhost = {host}\ngraceful_shutdown_timeout = 5\n")
        (folder / "nova-launch.py").write_text(_LAUNCH)
    for worker in workers:
        replica = folder / worker.service
        replica.mkdir(exist_ok=True)
        log = replica / f"{worker.service}.log"
        (units / worker.unit).write_text(
            f"[Unit]\nDescription={worker.service} on {host} (haven lab --ha)\nDefaultDependencies=no\n"
            f"[Service]\nExecStart={venvs['nova'] / 'bin' / 'python'} {folder / 'nova-launch.py'} "
            f"{worker.binary} --config-file "
            f"{lab_folder / 'nova' / 'nova.conf'} --config-file {folder / 'nova-host.conf'}\n"
            f"WorkingDirectory={replica}\nStandardOutput=append:{log}\nStandardError=append:{log}\n"
            f"Restart={restart}\nRestartSec=1\nTimeoutStopSec=5\n"
        )
        wanted.append(worker.unit)
    if standby:
        wanted = wanted[:2]  # its D-Bus only: the replicas' units stay stopped until someone starts them
    (units / TARGET).write_text(f"[Unit]\nDefaultDependencies=no\nWants={' '.join(wanted)}\n")
    env = {
        **os.environ,
        "SYSTEMD_UNIT_PATH": str(units),
        "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={folder / 'bus'}",
    }
    with open(folder / "systemd.log", "ab") as log_file:
        unshare = subprocess.Popen(
            [UNSHARE, "--pid", "--fork", "--mount", "--mount-proc", "--uts", SYSTEMD, "--system",
             f"--unit={TARGET}", "--log-target=console"],
            env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    _UNSHARES.append(unshare)
    pid1 = _child_of(unshare, 5.0)
    return Controller(host, address, folder, pid1, unshare, spare=standby)


_CHECK = "check inter 1s fall 3 rise 2 observe layer4 error-limit 1 on-error mark-down"
# Each replica takes at most half as many requests at once as its gunicorn runs threads (``_GUNICORN``:
# 1 worker x 8 threads); the rest wait in HAProxy's queue (``timeout queue``) for a free one, or for the
# other replica. Without a cap a replica left alone with 24 clients held ~24 requests at once, answered
# HAProxy's own check (queued behind them) later than ``timeout check`` and was marked DOWN: a 503 for
# every client (HAProxy's checks are never queued: they need no slot, but they need a free thread and
# the interpreter's lock). Capped at all 8 threads, the survivor still missed the 2 s check at load
# 28-38 (thousands of 503s a run); at 4, in the same conditions, 0-4 requests failed and its backend
# was never empty (docs/controlplane.md). Kolla and TripleO leave the servers unbounded (only a
# frontend maxconn); HAProxy's docs size a server's maxconn to what it serves at once.
# Written into haproxy.cfg since 2026-12-07 (evening): at 8 clients through nova-api's frontend, the
# survivor of a kill -9 alone held all 8 threads (each waiting on Keystone to validate the clients' new
# token), its check waited behind them past ``timeout check`` 3 times, it was marked DOWN and the backend
# was empty: 1532 503s in one run (HAProxy's log: <NOSRV> SC--); capped, 0 503s in 9 runs, its check
# answered and it stayed UP. With the token validated beforehand no survivor's check failed, capped or
# not (docs/controlplane.md): the cap is for a replica whose request threads all wait on something.
# It had been left out because the kill -9 lab test (2 clients, 10 s timeout) failed with it, but the
# cap was not the cause (bench/ha_lab_kill_log.py): those were the restarted replica's first answers,
# slow with or without it (2 clients never reach 4).
SERVER_MAXCONN = 1 * 8 // 2
SERVER_OPTIONS = f"{_CHECK} maxconn {SERVER_MAXCONN}"  # haven's backends' members
# How long a request may wait for a free slot: then 503. Kolla's default is 1m, TripleO's 2m; 30 s is
# what the lab's clients (the benches, openstacksdk) wait at most for an answer anyway.
TIMEOUT_QUEUE = "30s"
_KOLLA_CHECK = "check inter 2000 rise 2 fall 5"


def _address(index: int) -> str:
    """Controller ``ctl-<index>``'s loopback address: every replica on it binds there."""
    return f"127.0.1.{index}"


def _wait_memcached(ha: HaLab, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for controller in ha.active:
        while True:
            try:
                stats(controller.address, ha.memcached_port)
                break
            except LabServiceError as exc:
                if time.monotonic() > deadline:
                    raise LabServiceError(f"{exc}: see {controller.folder / 'memcached.log'}") from exc
            time.sleep(0.2)


def _authtoken_env(keystone_url: str) -> str:
    if not keystone_url:
        return ""
    return (
        f"Environment=OS_KEYSTONE_AUTHTOKEN__AUTH_URL={keystone_url}/v3\n"
        f"Environment=OS_KEYSTONE_AUTHTOKEN__WWW_AUTHENTICATE_URI={keystone_url}\n"
    )


def _keystone_url(ha: HaLab) -> str:
    """Keystone's frontend when asked for and the HA lab replicates Keystone (else the services keep the
    plain lab's Keystone, their config files')."""
    return ha.frontend_url("keystone") if ha.authtoken_frontend and "keystone" in ha.frontends else ""


def haproxy_config(ha: HaLab) -> str:
    """HAProxy's configuration: every controller's members, a spare's ``disabled`` (in maintenance,
    as ``add_spare``'s runtime ``add server`` leaves them), so a restarted HAProxy still has them."""
    lines = [
        "global",
        f"    stats socket {ha.haproxy_socket} mode 600 level admin",
        "    log stdout format raw local0 notice",
        "defaults",
        "    mode http",
        "    log global",
        # Every request that failed, was retried or redispatched, at level err (so past ``notice``) with
        # its server, timers, retries and termination state; normal ones not at all; and every change of
        # a member's check result: why a client's request failed, read from HAProxy's own account.
        "    option httplog",
        "    option dontlog-normal",
        "    option log-separate-errors",
        "    option log-health-checks",
        "    option redispatch",
        "    retries 3",
        # A request a killed replica never answered goes to the other one: safe for a refused connection
        # or an empty answer (HAProxy retries only requests it could replay).
        "    retry-on conn-failure empty-response response-timeout",
        "    timeout connect 1s",
        "    timeout client 120s",
        "    timeout server 120s",
        "    timeout check 2s",
    ]
    for api in ha.apis:
        lines += [
            f"frontend {api.backend}",
            f"    bind 127.0.0.1:{ha.frontends[api.service]}",
            f"    default_backend {api.backend}",
            f"backend {api.backend}",
            f"    option httpchk GET {api.check_path}",
            f"    timeout queue {TIMEOUT_QUEUE}",
            *(_server_line(c, ha.ports[api.service], SERVER_OPTIONS) for c in ha.controllers),
        ]
    for api in ha.apis:
        if api.service not in ha.kolla_frontends:
            continue
        # Kolla-Ansible's rendering (haproxy_single_service_split.cfg.j2, loadbalancer defaults): no
        # httpchk for the APIs, so the check is a TCP connect, which a hung process still accepts.
        lines += [
            f"frontend {api.backend}_kolla",
            f"    bind 127.0.0.1:{ha.kolla_frontends[api.service]}",
            f"    default_backend {api.backend}_kolla",
            f"backend {api.backend}_kolla",
            "    retry-on conn-failure",
            "    timeout connect 10s",
            "    timeout server 1m",
            "    timeout check 10s",
            *(_server_line(c, ha.ports[api.service], _KOLLA_CHECK) for c in ha.controllers),
        ]
    return "\n".join(lines) + "\n"


def _server_line(controller: Controller, port: int, check: str) -> str:
    """A backend's ``server`` line; a spare's starts in maintenance (``disabled``): haven's planner puts
    it in through the runtime API when it starts the spare's units, or an operator does. A restarted
    HAProxy reads it ``disabled`` again even if it was serving, and haven's rule 7 leaves a member out
    while its unit runs on (an operator's maintenance, to it): docs/controlplane.md, not done yet."""
    disabled = " disabled" if controller.spare else ""
    return f"    server {controller.host} {controller.address}:{port} {check}{disabled}"


def write_config(ha: HaLab) -> Path:
    """``LAB/ha/haproxy.cfg`` from ``haproxy_config`` (what HAProxy reads at its next start)."""
    config = ha.folder / "haproxy.cfg"
    config.write_text(haproxy_config(ha))
    return config


def controlplane_toml(ha: HaLab) -> str:
    """haven.toml's ``[controlplane]`` for this lab: haven heals these units and their HAProxy members."""
    lines = [
        "",
        "[controlplane]  # the HA lab's controllers (`haven lab up --ha`): haven serve heals their units",
        'driver = "systemd"',
        f'haproxy_socket = "{ha.haproxy_socket}"',
    ]
    env = ha.folder / "serve.env"
    lines.insert(2, f"# the probes read their secrets from the environment: `set -a; . {env}; set +a` first")
    for controller in ha.controllers:
        if controller.spare:
            lines.append(
                "# a spare (standby) controller: its units installed and stopped, haven may start them"
            )
        lines += [
            "[[controlplane.controllers]]",
            f'host = "{controller.host}"',
            f'domain = "{controller.host}"',
            f'address = "{controller.address}"',
            f'bus = "{controller.bus}"',
        ]
    for api in ha.apis:
        lines += [f"[controlplane.services.{api.service}]", f"probe = {{ {_probe(ha, api)} }}"]
    if ha.memcached_port:
        # memcached's ``version``, as the catalogue's probe: a hung (SIGSTOPped) one fails by timeout and
        # haven kills and restarts it; a killed one systemd restarts (Restart=on-failure, after 1 s).
        lines += [
            "[controlplane.services.memcached]",
            f'probe = {{ kind = "memcached", port = {ha.memcached_port}, period_s = 1.0, timeout_s = 1.0, '
            "failure_threshold = 2, startup_grace_s = 10.0 }",
        ]
    for worker in ha.workers:
        # Nova's RPC ping of the replica on its controller (server = its host); the transport URL is
        # read from the environment (LAB/ha/serve.env). 3 s: the slowest answers seen on the loaded lab
        # were below 1 s; a hung one is found after 3 failed pings (about 12 s).
        lines += [
            f"[controlplane.services.{worker.service}]",
            f'probe = {{ kind = "nova_rpc", topic = "{worker.topic}", '
            f'transport_url_env = "{TRANSPORT_URL_ENV}", '
            "period_s = 1.0, timeout_s = 3.0, failure_threshold = 3, startup_grace_s = 60.0 }",
        ]
    return "\n".join(lines) + "\n"


def serve_env(lab_folder: Path, workers: bool = True) -> str:
    """``LAB/ha/serve.env``: the secrets haven serve's probes read (sourced by a shell): the admin's
    password for nova-api's deep probe, Nova's transport URL for the workers' RPC pings."""
    lines = [f"{PROBE_PASSWORD_ENV}={shlex.quote(probe_password(lab_folder))}"]
    if workers:
        lines.append(f"{TRANSPORT_URL_ENV}={shlex.quote(transport_url(lab_folder))}")
    return "\n".join(lines) + "\n"


def probe_password(lab_folder: Path) -> str:
    return (lab_folder / "keystone" / "admin-password").read_text().strip()


def _probe(ha: HaLab, api: Api) -> str:
    """An API's probe in haven.toml. nova-api's is deep (``nova_services``, with the lab admin's token
    from Keystone's frontend): HAProxy's check (``GET /``, no token, no database) passes on a restarted
    replica seconds before it can answer a real request (its first server lists took 3.5 to over 30 s
    on the loaded lab: keystonemiddleware, the cells' database connections), and haven holds a replica
    it took out until its probe passes. 2 s: a warm service list took 25-50 ms at load 10, 0.4-0.6 s
    with a new token (its first validation), a cold one 2.9 s (2026-12-07)."""
    timing = "period_s = 1.0, timeout_s = 1.0, failure_threshold = 2, startup_grace_s = 60.0"
    port = ha.ports[api.service]
    if api.service == "nova-api" and "keystone" in ha.frontends:
        return (
            f'kind = "nova_services", port = {port}, auth_url = "{ha.frontend_url("keystone")}/v3", '
            f'user = "admin", project = "admin", password_env = "{PROBE_PASSWORD_ENV}", '
            f"{DEEP_TIMING}"
        )
    return f'port = {port}, path = "{api.check_path}", {timing}'  # as ha_drills.PROBE_TIMING


DEEP_TIMING = "period_s = 1.0, timeout_s = 2.0, failure_threshold = 2, startup_grace_s = 60.0"


def transport_url(lab_folder: Path) -> str:
    """Nova's transport URL, as the lab's nova.conf has it (the replicas' RabbitMQ)."""
    conf = lab_folder / "nova" / "nova.conf"
    for line in conf.read_text().splitlines():
        if line.startswith("transport_url"):
            return line.split("=", 1)[1].strip()
    raise LabServiceError(f"{conf} has no transport_url")


def ping_worker(rpc: NovaRpc, url: str, host: str, worker: Worker, timeout_s: float = 5.0) -> str:
    """One RPC ping of ``worker`` on ``host`` (haven's nova_rpc probe); ProbeFailed without an answer."""
    spec = ProbeSpec(ProbeKind.NOVA_RPC, 1, topic=worker.topic, transport_url_env="URL", timeout_s=timeout_s)
    return rpc.ping(host, spec, {"URL": url})


def wait_workers(ha: HaLab, url: str, timeout_s: float) -> None:
    """Until every worker replica answers an RPC ping on its controller (its RPC server consumes)."""
    deadline = time.monotonic() + timeout_s
    rpc = NovaRpc()
    try:
        for controller in ha.active:
            for worker in ha.workers:
                while True:
                    try:
                        ping_worker(rpc, url, controller.host, worker, timeout_s=3.0)
                        break
                    except ProbeFailed as exc:
                        if time.monotonic() > deadline:
                            log = controller.folder / worker.service / f"{worker.service}.log"
                            raise LabServiceError(
                                f"{worker.service} on {controller.host} gave no RPC answer within "
                                f"{timeout_s:g} s ({exc}): see {log}"
                            ) from exc
                    time.sleep(0.5)
    finally:
        rpc.close(timeout_s=5.0)


def servers_state(ha: HaLab) -> dict[tuple[str, str], tuple[str, str]]:
    """HAProxy's own ``show servers state``: (backend, server) -> (admin, operational)."""
    text = asyncio.run(HAProxyRuntime(ha.haproxy_socket).command("show servers state"))
    return {key: (admin.value, op) for key, (admin, op) in parse_servers_state(text).items()}


HEALTHY = 2 + 3 - 1  # HAProxy's check health counter at its top: rise 2 + fall 3 - 1


def check_health(ha: HaLab) -> dict[tuple[str, str], tuple[str, int]]:
    """HAProxy's own view of each member: operational state and check health counter (0..HEALTHY).

    A member HAProxy still calls "up" whose checks failed has a counter below HEALTHY; it is back at
    HEALTHY only after ``rise`` consecutive checks passed again: what "marked UP again" means here.
    """
    text = asyncio.run(HAProxyRuntime(ha.haproxy_socket).command("show servers state"))
    header: list[str] = []
    out: dict[tuple[str, str], tuple[str, int]] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            header = line[1:].split()
            continue
        row = dict(zip(header, line.split(), strict=False))
        if header and "srv_check_health" in row:
            op = {"0": "down", "1": "starting", "2": "up", "3": "stopping"}.get(
                row["srv_op_state"], "unknown"
            )
            out[(row["be_name"], row["srv_name"])] = (op, int(row["srv_check_health"]))
    return out


def unit_state(controller: Controller, unit: str) -> tuple[str, int]:
    """systemd's ActiveState and NRestarts of ``unit`` on ``controller``, read over its D-Bus."""

    async def read() -> tuple[str, int]:
        units = SystemdUnits(controller.bus)
        try:
            status = await units.status(unit)
        finally:
            await units.close()
        return status.active.value, status.n_restarts

    return asyncio.run(read())


def main_pid(controller: Controller, unit: str) -> int:
    """The host's pid of ``unit``'s main process on ``controller`` (systemd reports its namespace pid)."""
    out = subprocess.run(
        ["busctl", "--system", "get-property", "org.freedesktop.systemd1",
         f"/org/freedesktop/systemd1/unit/{_escape(unit)}", "org.freedesktop.systemd1.Service", "MainPID"],
        env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": controller.bus}, check=True, capture_output=True,
        text=True, timeout=10,
    ).stdout.split()  # fmt: skip
    ns_pid = int(out[1])
    if ns_pid == 0:
        raise LabServiceError(f"{unit} on {controller.host} has no main process")
    namespace = os.readlink(f"/proc/{controller.pid1}/ns/pid")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            if os.readlink(entry / "ns" / "pid") != namespace:
                continue
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and line.split()[-1] == str(ns_pid):
                return int(entry.name)
    raise LabServiceError(f"no pid on this machine for {unit}'s main process {ns_pid} on {controller.host}")


def stop(ha: HaLab) -> None:
    """Stop HAProxy and kill each controller's PID 1 (which ends its namespace); reap them."""
    if ha.haproxy is not None:
        ha.haproxy.stop(grace_s=5)
    for controller in ha.controllers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(controller.pid1, signal.SIGKILL)
    reap()


def reap(timeout_s: float = 10.0) -> None:
    """Wait for the unshare processes whose namespace's PID 1 is gone (none is left a zombie)."""
    for unshare in list(_UNSHARES):
        try:
            unshare.wait(timeout_s)
        except subprocess.TimeoutExpired:
            continue
        _UNSHARES.remove(unshare)


def _escape(unit: str) -> str:
    return "".join(c if c.isalnum() else f"_{ord(c):02x}" for c in unit)


def _child_of(unshare: subprocess.Popen[bytes], timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
        except OSError:
            children = []
        if children:
            return int(children[0])
        if unshare.poll() is not None:
            break
        time.sleep(0.02)
    raise LabServiceError(f"unshare started no systemd (exit {unshare.poll()})")


def _wait_for_bus(controller: Controller, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if controller.unshare is not None and controller.unshare.poll() is not None:
            raise LabServiceError(
                f"systemd on {controller.host} exited: see {controller.folder / 'systemd.log'}"
            )
        try:
            unit_state(controller, "dbus.service")
            return
        except HavenError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise LabServiceError(f"systemd on {controller.host} is not on its bus after {timeout_s} s: {last}")


def _wait_all_up(ha: HaLab, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    state: dict[tuple[str, str], tuple[str, str]] = {}
    spares = {c.host for c in ha.spares}
    while time.monotonic() < deadline:
        state = {k: v for k, v in servers_state(ha).items() if k[1] not in spares}
        if state and all(op == "up" for _admin, op in state.values()):
            return
        time.sleep(0.25)
    down = [f"{backend}/{server} {op}" for (backend, server), (_a, op) in state.items() if op != "up"]
    logs = [str(c.folder / api.service / f"{api.service}.log") for c in ha.controllers for api in ha.apis]
    raise LabServiceError(
        f"HAProxy still has replicas not UP after {timeout_s} s: {', '.join(down)}; logs: {', '.join(logs)}"
    )
