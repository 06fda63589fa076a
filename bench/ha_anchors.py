"""The anchors' healing, configured as those projects ship it, on the HA lab's own nova-api replicas.

Who calls it: bench/ha_lab.py ``--anchor kolla|k8s|haven`` and ``--compare`` (run as a script, so this
folder is on ``sys.path``). Nothing here is part of haven (src/haven): these are the comparisons'
stand-ins, outside the lab (haven.lab.ha is not changed: the bench runs an HAProxy of its own on the
same replicas, and a systemd drop-in on the lab's unit only while a Kolla run lasts).

- ``AnchorProxy``: a second HAProxy (Debian's, the lab's binary) with two frontends on the lab's nova-api
  replicas: ``nova_api_back``, checked exactly as Kolla-Ansible renders nova-api's backend, and
  ``k8s_nova_api``, a Kubernetes Service as kube-proxy gives it (no health check of its own, no retry:
  membership is the pods' readiness, set by ``Kubelet``).
- ``kolla_restart_policy``: the unit's ``Restart=`` as Kolla-Ansible's systemd unit for a container has it.
  Nothing in Kolla-Ansible heals a hung process: Docker/Podman only mark the container unhealthy.
- ``Kubelet``: OpenStack-Helm's liveness and readiness probes of nova-api (osapi), run as the kubelet
  runs them: a liveness failure kills the "container" (SIGTERM, the pod's grace period, SIGKILL) and it
  is started again (the lab's systemd ``Restart=on-failure``, ``RestartSec=1``: the kubelet's first
  restart has no back-off); readiness adds or removes the replica from ``k8s_nova_api``.
- ``MixedLoad``: the clients: threads cycling through nova-api reads and a keypair create/delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from haven.controlplane.drivers.haproxy import HAProxyRuntime, parse_servers_state
from haven.lab import ha, ha_drills
from haven.lab.process import LabProcess, free_port

# --- Kolla-Ansible, read at openstack/kolla-ansible 1a681814eb19a4840ca307a25f21b2907b432272
# (2026-08-19), with the search tool's `fetch`:
# - ansible/roles/haproxy-config/defaults/main.yml: haproxy_health_check "check inter 2000 rise 2 fall 5"
#   (the server line of every backend, haproxy_single_service_split.cfg.j2, backend "<name>_back").
# - ansible/roles/nova/defaults/main.yml, nova_api's haproxy entry: mode http, backend_http_extra
#   "option httpchk GET /" and "http-check expect status 200" (since fa19b11fb, 2026-01-21, "Standardize
#   API health check endpoints"; before it the check was a TCP connect: the lab's own nova_api_kolla).
# - ansible/roles/loadbalancer/templates/haproxy/haproxy_main.cfg.j2 ``defaults`` with
#   ansible/roles/loadbalancer/defaults/main.yml: option redispatch, retries 3, timeout http-request 10s,
#   http-keep-alive 10s, queue 1m, connect 10s, client 1m, server 1m, check 10s, balance roundrobin,
#   maxconn 10000.
# - ansible/module_utils/kolla_systemd_worker.py (a container's systemd unit): Restart=always for
#   docker_restart_policy "unless-stopped", RestartSec = client_timeout // restart_retries - 1 = 120 // 10
#   - 1 = 11, StartLimitInterval=120, StartLimitBurst=10 (ansible/group_vars/all/common.yml:
#   docker_client_timeout 120, docker_restart_policy_retry "10").
KOLLA_CHECK = "check inter 2000 rise 2 fall 5"
KOLLA_BACKEND_EXTRA = ("option httpchk GET /", "http-check expect status 200")
KOLLA_DEFAULTS = (
    "option redispatch", "retries 3", "timeout http-request 10s", "timeout http-keep-alive 10s",
    "timeout queue 1m", "timeout connect 10s", "timeout client 1m", "timeout server 1m",
    "timeout check 10s", "balance roundrobin", "maxconn 10000",
)  # fmt: skip
KOLLA_UNIT = (
    "[Unit]\nStartLimitIntervalSec=120\nStartLimitBurst=10\n[Service]\nRestart=always\nRestartSec=11\n"
)


# --- OpenStack-Helm, read at openstack/openstack-helm 0ee5adeffcaefb6f7a78bb23bf845414672e6827
# (2026-08-20), with the search tool's `fetch`:
# - nova/values.yaml pod.probes.api-osapi.default: liveness and readiness, each enabled with params
#   initialDelaySeconds 5, periodSeconds 10, timeoutSeconds 5 (failureThreshold and successThreshold not
#   set: Kubernetes' defaults, 3 and 1).
# - nova/templates/deployment-api-osapi.yaml: both probes ``httpGet`` path / on the API port;
#   terminationGracePeriodSeconds from values pod.lifecycle.termination_grace_period.osapi.timeout: 180.
@dataclass(frozen=True)
class Probe:
    initial_delay_s: float = 5.0
    period_s: float = 10.0
    timeout_s: float = 5.0
    failure_threshold: int = 3
    success_threshold: int = 1


OSH_LIVENESS = Probe()
OSH_READINESS = Probe()
OSH_GRACE_S = 180.0

SERVICE, UNIT = "nova-api", "nova-api.service"
KOLLA_BACKEND = "nova_api_back"
K8S_BACKEND = "k8s_nova_api"
_DROP_IN = "haven-bench-kolla.conf"


def _busctl(controller: ha.Controller, *args: str) -> str:
    return subprocess.run(
        ["busctl", "--system", *args], env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": controller.bus},
        check=True, capture_output=True, text=True, timeout=15,
    ).stdout  # fmt: skip


def unit_restart_policy(controller: ha.Controller, unit: str = UNIT) -> str:
    """systemd's own Restart= and RestartUSec of ``unit`` (read back, never assumed)."""
    path = f"/org/freedesktop/systemd1/unit/{ha._escape(unit)}"
    restart = _busctl(controller, "get-property", "org.freedesktop.systemd1", path,
                      "org.freedesktop.systemd1.Service", "Restart").split()[-1].strip('"')  # fmt: skip
    usec = _busctl(controller, "get-property", "org.freedesktop.systemd1", path,
                   "org.freedesktop.systemd1.Service", "RestartUSec").split()[-1]  # fmt: skip
    return f"Restart={restart} RestartSec={int(usec) / 1e6:g}"


@contextlib.contextmanager
def kolla_restart_policy(cluster: ha.HaLab) -> Iterator[None]:
    """nova-api's unit on every controller with Kolla's container restart policy while it lasts."""

    def reload(controller: ha.Controller) -> None:
        _busctl(controller, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager", "Reload")  # fmt: skip

    try:
        for controller in cluster.controllers:
            folder = controller.folder / "units" / f"{UNIT}.d"
            folder.mkdir(exist_ok=True)
            (folder / _DROP_IN).write_text(KOLLA_UNIT)
            reload(controller)
        yield
    finally:
        for controller in cluster.controllers:
            with contextlib.suppress(FileNotFoundError):
                (controller.folder / "units" / f"{UNIT}.d" / _DROP_IN).unlink()
            reload(controller)


class AnchorProxy:
    """An HAProxy of the bench's own on the lab's nova-api replicas: Kolla's backend and a k8s Service."""

    def __init__(self, cluster: ha.HaLab, folder: Path) -> None:
        self.cluster, self.folder = cluster, folder
        self.ports = {"kolla": free_port(), "k8s": free_port()}
        self.process: LabProcess | None = None

    @property
    def socket(self) -> str:
        return str(self.folder / "haproxy.sock")

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.ports[mode]}"

    def config(self) -> str:
        port = self.cluster.ports[SERVICE]
        lines = [
            "global",
            f"    stats socket {self.socket} mode 600 level admin",
            "defaults",
            "    mode http",
            *(f"    {line}" for line in KOLLA_DEFAULTS),
            # Kolla-Ansible's nova_api frontend and backend (frontend_macro, backend_macro)
            "frontend nova_api_front",
            f"    bind 127.0.0.1:{self.ports['kolla']}",
            "    option forwardfor",
            f"    default_backend {KOLLA_BACKEND}",
            f"backend {KOLLA_BACKEND}",
            "    mode http",
            *(f"    {line}" for line in KOLLA_BACKEND_EXTRA),
            *(f"    server {c.host} {c.address}:{port} {KOLLA_CHECK}" for c in self.cluster.controllers),
            # A Kubernetes Service (kube-proxy): the ready pods, no check, no retry, no timeout of its
            # own (the client's decides); a connection goes to one endpoint as HAProxy picks it.
            "frontend k8s_nova_api",
            f"    bind 127.0.0.1:{self.ports['k8s']}",
            f"    default_backend {K8S_BACKEND}",
            f"backend {K8S_BACKEND}",
            "    no option redispatch",
            "    retries 0",
            "    timeout server 10m",
            *(f"    server {c.host} {c.address}:{port}" for c in self.cluster.controllers),
        ]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> AnchorProxy:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "haproxy.cfg"
        config.write_text(self.config())
        self.process = LabProcess(
            "haproxy-anchors", [ha.HAPROXY, "-db", "-f", str(config)], self.folder / "haproxy.log"
        ).start()
        try:
            self.process.wait_until(lambda: Path(self.socket).exists(), 10.0, "admin socket")
            self.settled(60.0)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            self.process.stop(grace_s=5)
            self.process = None

    def state(self) -> dict[tuple[str, str], tuple[str, str]]:
        """HAProxy's own ``show servers state``: (backend, server) -> (admin, operational)."""
        text = asyncio.run(HAProxyRuntime(self.socket).command("show servers state"))
        return {key: (admin.value, op) for key, (admin, op) in parse_servers_state(text).items()}

    def set_member(self, host: str, admin: str) -> None:
        asyncio.run(HAProxyRuntime(self.socket).command(f"set server {K8S_BACKEND}/{host} state {admin}"))

    def settled(self, timeout_s: float = 90.0) -> None:
        """Every member of both backends ready and up (a run must not start on the last one's leftovers)."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = self.state()
            if state and all(s == ("ready", "up") for s in state.values()):
                return
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"the anchors' HAProxy members not ready and up after {timeout_s:g} s: {state}"
                )
            time.sleep(0.5)


@dataclass
class _Pod:
    controller: ha.Controller
    invocation: str
    started: float  # monotonic: when its current process ("container") was first seen running
    ready: bool = True  # steady state before the run: every pod ready
    killing: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class Kubelet:
    """OpenStack-Helm's probes of every nova-api replica, as the kubelet runs them, in threads.

    Per replica: a liveness and a readiness worker, each on its own ticker (``period_s``, a random first
    phase as after a kubelet start), skipping ticks within ``initial_delay_s`` of the container's start,
    a probe an HTTP GET / with ``timeout_s`` (200-399 passes). Liveness: ``failure_threshold`` failures in
    a row kill the container: SIGTERM to its main process (a container runtime sends no SIGCONT), up to
    ``grace_s`` for it to end, then SIGKILL to all its processes; systemd starts it again. Readiness:
    ``failure_threshold`` failures take it out of ``k8s_nova_api`` (maint), ``success_threshold`` passes
    put it back (ready); a new container starts not ready. ``events``: (monotonic, host, what)."""

    def __init__(
        self, cluster: ha.HaLab, proxy: AnchorProxy, grace_s: float = OSH_GRACE_S,
        liveness: Probe = OSH_LIVENESS, readiness: Probe = OSH_READINESS,
    ) -> None:  # fmt: skip
        self.cluster, self.proxy, self.grace_s = cluster, proxy, grace_s
        self.liveness, self.readiness = liveness, readiness
        self.port = cluster.ports[SERVICE]
        self.events: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        now = time.monotonic()
        self.pods = {
            c.host: _Pod(c, ha_drills.unit_status(c, UNIT).invocation_id, now - 3600.0)
            for c in cluster.controllers
        }
        self._threads = [
            threading.Thread(target=target, args=(pod,), daemon=True)
            for pod in self.pods.values()
            for target in (self._liveness, self._readiness, self._watch)
        ]

    def __enter__(self) -> Kubelet:
        for pod in self.pods.values():
            self.proxy.set_member(pod.controller.host, "ready")
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.grace_s + 30)
        for pod in self.pods.values():  # the emulation ends: the Service as before it (every pod in)
            self.proxy.set_member(pod.controller.host, "ready")

    def kills(self, host: str | None = None) -> list[float]:
        return [t for t, h, what in self.events if what == "kill" and (host is None or h == host)]

    def _say(self, pod: _Pod, what: str) -> None:
        self.events.append((time.monotonic(), pod.controller.host, what))

    def _probe(self, pod: _Pod, spec: Probe) -> bool:
        try:
            status = httpx.get(
                f"http://{pod.controller.address}:{self.port}/", timeout=spec.timeout_s, trust_env=False
            ).status_code
        except httpx.HTTPError:
            return False
        return 200 <= status < 400

    def _ticks(self, spec: Probe) -> Iterator[float]:
        tick = time.monotonic() + random.uniform(0, spec.period_s)
        while not self._stop.wait(max(0.0, tick - time.monotonic())):
            yield tick
            tick += spec.period_s
            while tick < time.monotonic():  # as Go's ticker: ticks missed while a kill ran are dropped
                tick += spec.period_s

    def _liveness(self, pod: _Pod) -> None:
        failures = 0
        for _tick in self._ticks(self.liveness):
            if time.monotonic() < pod.started + self.liveness.initial_delay_s:
                failures = 0
                continue
            failures = 0 if self._probe(pod, self.liveness) else failures + 1
            if failures >= self.liveness.failure_threshold:
                failures = 0
                self._kill(pod)

    def _kill(self, pod: _Pod) -> None:
        ctl = pod.controller
        try:
            main = ha.main_pid(ctl, UNIT)
            pids = ha_drills.unit_pids(ctl, UNIT)
        except Exception:  # not running (restarting): nothing to kill
            return
        self._say(pod, "kill")
        pod.killing = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(main, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if ha_drills.proc_states([main])[main] in ("gone", "Z"):
                break
            time.sleep(0.2)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._say(pod, "killed")
        self._set_ready(pod, False)  # the container is gone: its endpoint with it
        pod.started = time.monotonic()  # the kubelet starts it again at once (restartPolicy Always)
        time.sleep(1.5)  # systemd's Restart=on-failure (RestartSec=1) restarts a SIGKILLed one itself
        if ha_drills.unit_status(ctl, UNIT).active.value not in ("active", "activating"):
            # a clean exit on SIGTERM: systemd leaves it stopped, the kubelet would not
            _busctl(ctl, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                    "org.freedesktop.systemd1.Manager", "StartUnit", "ss", UNIT, "replace")  # fmt: skip
            self._say(pod, "start")
        pod.killing = False

    def _readiness(self, pod: _Pod) -> None:
        failures = successes = 0
        seen = pod.invocation
        for _tick in self._ticks(self.readiness):
            if pod.invocation != seen:  # a new container: its results start over
                seen, failures, successes = pod.invocation, 0, 0
            if time.monotonic() < pod.started + self.readiness.initial_delay_s:
                continue
            if self._probe(pod, self.readiness):
                failures, successes = 0, successes + 1
                if successes >= self.readiness.success_threshold:
                    self._set_ready(pod, True)
            else:
                failures, successes = failures + 1, 0
                if failures >= self.readiness.failure_threshold:
                    self._set_ready(pod, False)

    def _watch(self, pod: _Pod) -> None:
        """A new process of the unit is a new container: it starts not ready."""
        while not self._stop.wait(0.5):
            with contextlib.suppress(Exception):
                invocation = ha_drills.unit_status(pod.controller, UNIT).invocation_id
                if invocation and invocation != pod.invocation:
                    pod.invocation, pod.started = invocation, time.monotonic()
                    self._say(pod, "started")
                    self._set_ready(pod, False)

    def _set_ready(self, pod: _Pod, ready: bool) -> None:
        with pod.lock:
            if pod.ready == ready:
                return
            pod.ready = ready
            self.proxy.set_member(pod.controller.host, "ready" if ready else "maint")
            self._say(pod, "ready" if ready else "not ready")


@contextlib.contextmanager
def no_mechanism() -> Iterator[None]:
    yield


# The clients' cycle, as an openstacksdk client's calls go: the version document (its discovery, 3 of
# 10), reads of several kinds (5 of 10) and one keypair created and deleted (a write pair, 2 of 10). A
# keypair name is unique per client and cycle.
CYCLE = (
    ("GET", "/v2.1/"), ("GET", "/v2.1/servers"), ("GET", "/v2.1/flavors"), ("GET", "/v2.1/"),
    ("POST", "/v2.1/os-keypairs"), ("GET", "/v2.1/servers/detail?limit=10"), ("GET", "/v2.1/"),
    ("DELETE", "/v2.1/os-keypairs/{name}"), ("GET", "/v2.1/limits"), ("GET", "/v2.1/os-keypairs"),
)  # fmt: skip


class MixedLoad:
    """``clients`` threads sending ``CYCLE`` to nova-api at ``base`` until stopped; what they saw.

    A failure is an exception (a timeout after ``timeout_s``, a refused or reset connection) or a status
    of 400 or more. A new connection per request (no keep-alive), as a CLI call makes it."""

    def __init__(self, base: str, token: str, clients: int, timeout_s: float = 30.0) -> None:
        self.base, self.token, self.timeout_s = base, token, timeout_s
        self.answers = self.writes = 0
        self.errors: list[tuple[float, str]] = []  # (monotonic time sent, what went wrong)
        self.slowest = 0.0
        self.started = self.seconds = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(clients)
        ]

    def __enter__(self) -> MixedLoad:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout_s + 5)
        self.seconds = time.monotonic() - self.started

    @property
    def requests(self) -> int:
        return self.answers + len(self.errors)

    def _client(self, number: int) -> None:
        headers = {"X-Auth-Token": self.token}
        limits = httpx.Limits(max_keepalive_connections=0)
        name = ""
        with httpx.Client(timeout=self.timeout_s, trust_env=False, limits=limits) as http:
            for cycle in itertools.count():
                for method, path in CYCLE[number % len(CYCLE) :] + CYCLE[: number % len(CYCLE)]:
                    if self._stop.is_set():
                        return
                    if method == "DELETE" and not name:
                        continue  # its create failed: nothing to delete
                    sent = time.monotonic()
                    try:
                        if method == "POST":
                            wanted = f"bench-{uuid.uuid4().hex[:12]}-{number}-{cycle}"
                            answer = http.post(self.base + path, headers=headers,
                                               json={"keypair": {"name": wanted}})  # fmt: skip
                            name = wanted if answer.status_code < 400 else ""
                        elif method == "DELETE":
                            answer = http.delete(self.base + path.format(name=name), headers=headers)
                            name = ""
                        else:
                            answer = http.get(self.base + path, headers=headers)
                        failure = "" if answer.status_code < 400 else f"HTTP {answer.status_code} {method}"
                    except httpx.HTTPError as exc:
                        failure = f"{type(exc).__name__} {method}: {exc}"
                    took = time.monotonic() - sent
                    with self._lock:
                        if failure:
                            self.errors.append((sent, failure))
                        else:
                            self.answers += 1
                            self.writes += method != "GET"
                        self.slowest = max(self.slowest, took)
