"""Drills on the HA lab under client load through HAProxy: kill -9, SIGSTOP (hung) and a crash loop.

    .venv/bin/python bench/ha_lab.py [--folder LAB] [--drill kill|hang|crashloop|controller|worker] [--runs 5]
                                     [--clients 4] [--heal] [--lab-timing]
    .venv/bin/python bench/ha_lab.py [--folder LAB] --drill hang|kill --compare | --anchor haven|kolla|k8s
                                     [--runs 3] [--clients 16] [--anchor-window 60] [--k8s-grace 180]

Without ``--folder`` it starts ``haven lab up --ha --computes 1`` in a temporary folder and stops it
at the end; with it, it uses the HA lab running there (``haven lab up --ha --folder LAB``). Needs root.

``--heal`` runs haven's control plane during the drill as ``haven serve`` does (haven.lab.ha_drills
.Healer: the lab's ``[controlplane]``, each run a store of its own); ``hang`` and ``crashloop`` always
do.

``--compare`` (or ``--anchor MODE``, repeatable) drills the same nova-api replica once per mode in each
run, under ``ha_anchors.MixedLoad`` (``--clients`` threads: nova-api reads and a keypair create/delete,
a new connection per request, 30 s timeout): ``haven`` (its control plane, through the lab's frontend),
``kolla`` (Kolla-Ansible's HAProxy backend and its container restart policy, through an HAProxy of the
bench's own; nothing heals a hung process: after ``--anchor-window`` s the bench resumes it, as an
operator would) and ``k8s`` (OpenStack-Helm's liveness and readiness probes of nova-api as the kubelet
runs them, readiness the membership of a Service-like backend of that HAProxy). The upstream values
and where they were read are in bench/ha_anchors.py. Per run: requests/s, failed requests (and those
sent after the member left), when the member was out, when systemd ran a new process, when it
answered directly, when it was back in its backend, false restarts (the other replica's InvocationID
changed, haven's actions elsewhere); then medians per mode and haven / anchor ratios.

Each run alternates the victim controller (ctl-1, ctl-2). ``clients`` threads list servers through
nova-api's frontend (a token from Keystone's; 30 s client timeout) while the replica's processes are
SIGKILLed (``kill``: the main process) or SIGSTOPped (``hang``: gunicorn's master and worker). Every
0.1 s it reads HAProxy's own ``show servers state`` and systemd's unit over the controller's D-Bus. Per
run: requests, requests/s, failed requests (an exception or a status other than 200), and the seconds
after the fault until the member was out of HAProxy (not ``ready``/``up``), until systemd ran a new
process of the unit, until that process answered its version document directly, until HAProxy had the
member ``ready`` and ``up`` again with its check health counter at its top, and the slowest answer;
haven's actions on other replicas (false restarts) when haven ran. ``crashloop`` breaks keystone on
one controller (haven.lab.ha_drills.break_replica: fails at every start, ``Restart=no``), kills it,
and reports systemd's starts, haven's back-off gaps, when it held, the alerts, the member's states.

haven's HTTP probes run with haven.lab.ha_drills.PROBE_TIMING (period 1 s, timeout 1 s, 2 failures);
``--lab-timing`` uses what the lab's haven.toml had before (timeout 2 s, 3 failures), for the comparison.
nova-api's probe is the lab's deep one (``nova_services``: a token, then Nova's service list on the
replica; timeout 2 s, 2 failures, haven.lab.ha.DEEP_TIMING), whatever the timing. ``kill`` and ``hang``
also report haven's first drain or maintenance of the victim and its ready (seconds after the fault,
from haven's records), the answers slower than 2 s sent after systemd's new process ran (the cold
answers: the first six and their count) and memcached's own get_hits and get_misses over the run (every
controller's memcached behind keystonemiddleware; None on a lab without them); ``--client-timeout``
sets the clients' timeout (default 30 s; the lab test's is 10 s). ``--token warm`` (default) validates
the clients' new token once on every nova-api replica before the load, as a client's long-lived token
is; ``--token cold`` sends a new token each run that no replica has seen (each process then has Keystone
validate it, once per request thread: docs/controlplane.md, "The cold-token stall"). The fault is
injected only once the clients have had answers in the 2 s before it; otherwise the run stops with why.
``rate_alone`` is the frontend's answers a second while the survivor was alone: until the victim was
back, or, when it never came back, until the load ended (``rate_alone_until`` says which).
``--maxconn N`` sets each server of haven's backends to N at runtime (read back from HAProxy's ``show
stat``), ``--maxconn 0`` uncaps them (the lab's haproxy.cfg caps each at haven.lab.ha.SERVER_MAXCONN).
``controller`` freezes a whole controller (every process of its PID namespace SIGSTOPped, its systemd
and D-Bus too) under load through nova-api's frontend with haven running, and reports when every member
of it was out of HAProxy, when haven's controller_down alert came, the failed requests sent after the
drop (and in all), the alerts, then thaws it and reports when every member was back ready and up.
With a spare controller (``--spare``: the lab's own from ``haven lab up --ha --controllers 3``, or one
added here to a running HA lab with haven.lab.ha.add_spare and removed at the end) ``controller`` runs
``ha_anchors.MixedLoad`` (``--clients`` threads of nova-api reads and keypair writes) and also reports
when every service declared in the lab's ``[controlplane]`` was back at its ``min_replicas`` on the
surviving controllers, judged from systemd (the unit ``active`` on a survivor) and, for an API, HAProxy's
own ``show servers state`` (its member there ``ready`` and ``up``), per service and all together; haven's
starts on the spare; the failed requests sent after the drop and after every service was back. After
each run the spare is made a standby again by hand (members in maintenance, units stopped), as an
operator would once the lost controller is back.
``worker`` SIGSTOPs one nova-conductor or nova-scheduler replica (master and forked worker; runs
alternate conductor, scheduler, then the other controller) under the same client load with haven
running (the lab's ``nova_rpc`` probes: period 1 s, timeout 3 s, 3 failures) and reports haven's first
action on it (from its record), when systemd ran a new process of the unit (InvocationID), when that
process answered the RPC ping (sent here every 0.5 s), and the false restarts: any other worker
replica whose InvocationID or NRestarts changed during the run (and systemd's restarts of them since
the lab's start, printed first), and haven's actions on other replicas.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import multiprocessing
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Union

import ha_anchors  # bench/, on sys.path when run as a script
import httpx

from haven.controlplane.drivers.haproxy import HAProxyRuntime
from haven.controlplane.drivers.service_probes import NovaRpc, ProbeFailed
from haven.controlplane.drivers.systemd import SystemdUnits
from haven.domain.controlplane import ActionKind
from haven.domain.incidents import AlertKind
from haven.lab import ha, ha_drills, lab, memcached
from haven.lab.keystone import Account
from haven.lab.process import LabServiceError
from haven.lab.state import ProcessRecord, record
from haven.lab.toolenv import ensure_tool_env

_FIGURES = (
    "rps",
    "failed",
    "haven_out_s",
    "haven_ready_s",
    "failed_after_out",
    "out_s",
    "restarted_s",
    "answers_s",
    "back_s",
    "slowest_s",
    "slow_after_restart_n",
    "cache_hits",
    "cache_misses",
    "backend_empty_s",
    "rate_before",
    "rate_alone",
    "victim_restarts",
    "false_actions",
)
KEYS = {
    "kill": _FIGURES,
    "hang": _FIGURES,
    "controller": ("rps", "failed", "failed_after_drop", "out_s", "alert_s", "back_after_thaw_s"),
    "spare": ("rps", "failed", "failed_after_drop", "failed_after_back", "out_s", "alert_s",
              "spare_started_s", "all_back_s", "nova_api_backend_empty_s", "back_after_thaw_s"),
    "worker": ("rps", "failed", "haven_acted_s", "restarted_s", "answers_s", "victim_restarts",
               "false_restarts", "false_actions"),
}  # fmt: skip


def _token(labf: Path, cluster: ha.HaLab) -> str:
    password = (labf / "keystone" / "admin-password").read_text().strip()
    return Account(cluster.frontend_url("keystone") + "/v3", "admin", password, "admin").token()


LAB_TIMING = False  # --lab-timing: the probe timing the lab's haven.toml had until issue 11's drills
OLD_TIMING = {"period_s": 1.0, "timeout_s": 2.0, "failure_threshold": 3}


LOAD_IN_BENCH = False  # --load-in-bench: the clients' threads in the bench's own process, beside haven


CLIENT_TIMEOUT_S = 30.0  # --client-timeout: each client request's timeout


# --token: "warm", the clients' token validated on every nova-api replica before the load (as a client's
# long-lived token is; keystonemiddleware's cache has it); "cold", a new token each run, validated nowhere
# before its first requests: each replica process then has Keystone validate it, once per request thread
# (docs/controlplane.md, "The cold-token stall").
TOKEN_MODE = "warm"

# Seconds the clients must have been answered in, just before a fault is injected (``_ensure_answering``).
ANSWERING_WINDOW_S = 2.0


def _client_token(labf: Path, cluster: ha.HaLab) -> str:
    """A new token for the clients, validated once on every active nova-api replica unless ``--token
    cold``."""
    token = _token(labf, cluster)
    if TOKEN_MODE == "warm":
        for c in cluster.active:
            _warm(f"http://{c.address}:{cluster.ports['nova-api']}/v2.1/servers", token)
    return token


class NotAnswering(SystemExit):
    """The client load had no answer just before the fault: a drill then would measure nothing."""


AnyLoad = Union["ha_drills.Load", "ha_anchors.MixedLoad", "_ChildLoad"]


def _live_answers(load: AnyLoad) -> int:
    if isinstance(load, _ChildLoad):
        return load.live_answers()
    return load.answers  # ha_drills.Load, ha_anchors.MixedLoad: counted as they come


def _ensure_answering(load: AnyLoad, window_s: float = ANSWERING_WINDOW_S) -> None:
    """Wait ``window_s`` and refuse (``NotAnswering``) unless the clients had answers meanwhile."""
    before = _live_answers(load)
    time.sleep(window_s)
    if _live_answers(load) <= before:
        errors = load.errors
        last = f"; their last error: {str(errors[-1][1])[:200]}" if errors else ""
        raise NotAnswering(
            f"the clients had no answer in the {window_s:g} s before the fault{last}: not injecting it. "
            "Is the frontend serving (haven lab status, HAProxy's members) and is the token valid?"
        )


def _load_child(
    url: str,
    token: str,
    clients: int,
    conn: Connection,
    stop: Event,
    timeout_s: float = CLIENT_TIMEOUT_S,
    running: Event | None = None,
    answers: Synchronized[int] | None = None,
) -> None:
    """The clients in a process of their own (``_ChildLoad``): what they saw, sent back at the end;
    ``running`` set once they have had as many answers as there are clients (or after 30 s); ``answers``
    their answers so far, kept up to date every 0.05 s."""
    with ha_drills.Load(url, token, clients, timeout_s) as load:
        deadline = time.monotonic() + 30.0
        while load.answers < clients and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.05)
            if answers is not None:
                answers.value = load.answers
        if running is not None:
            running.set()
        while not stop.wait(0.05):
            if answers is not None:
                answers.value = load.answers
    conn.send((load.started, load.seconds, load.answers, load.errors, load.slowest, load.slow, load.answered))
    conn.close()


class _ChildLoad:
    """``ha_drills.Load`` run in a child process, with its figures read back on exit.

    haven serve runs in a process of its own; the bench's ``Healer`` runs in a thread of the bench. With
    24 client threads in the same process, haven's probes and its D-Bus and HAProxy reads wait for the
    interpreter's lock behind the clients' own work, and a probe of an idle replica can take longer than
    its 1 s timeout: a verdict about the bench, not the replica. The clients' failures and times are the
    same (monotonic times are the machine's, shared by both processes)."""

    def __init__(self, url: str, token: str, clients: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._receive, send = context.Pipe(duplex=False)
        self._stop = context.Event()
        self._running = context.Event()
        self._answers = context.Value("i", 0)
        self._process = context.Process(
            target=_load_child,
            args=(url, token, clients, send, self._stop, CLIENT_TIMEOUT_S, self._running, self._answers),
            daemon=True,
        )
        self.started = self.seconds = 0.0
        self.answers = 0
        self.errors: list[tuple[float, str]] = []
        self.slowest = (0.0, 0.0)
        self.slow: list[tuple[float, float]] = []
        self.answered: list[float] = []

    def __enter__(self) -> _ChildLoad:
        self._process.start()
        self.started = time.monotonic()
        # The child's interpreter imports haven before its clients send anything (seconds at load 20): a
        # fault 2 s after the start found no client running in some runs (no answer in the 2 s before
        # it). Wait until they run.
        self._running.wait(60.0)
        return self

    def live_answers(self) -> int:
        """The clients' answers so far (the child's count, at most 0.05 s old)."""
        return int(self._answers.value)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._receive.poll(60.0):
            figures = self._receive.recv()
            (self.started, self.seconds, self.answers, self.errors, self.slowest, self.slow,
             self.answered) = figures  # fmt: skip
        self._process.join(10.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        if not self.seconds:
            raise SystemExit("the clients' process sent no figures")


def _load(url: str, token: str, clients: int) -> ha_drills.Load | _ChildLoad:
    if LOAD_IN_BENCH:
        return ha_drills.Load(url, token, clients, CLIENT_TIMEOUT_S)
    return _ChildLoad(url, token, clients)


@contextlib.contextmanager
def _healer(cluster: ha.HaLab, heal: bool, folder: Path) -> Iterator[ha_drills.Healer | None]:
    if not heal:
        yield None
        return
    config = ha_drills.lab_config(cluster, OLD_TIMING if LAB_TIMING else None)
    with ha_drills.Healer(cluster, folder, config) as healer:
        time.sleep(2.0)  # steady before the fault
        yield healer


def fault_run(
    labf: Path, cluster: ha.HaLab, host: str, clients: int, *, drill: str, heal: bool
) -> dict[str, object]:
    """One kill or hang of nova-api on ``host`` through haven's frontend, haven healing or not."""
    service, unit = "nova-api", "nova-api.service"
    backend = "nova_api"
    url = f"{cluster.frontend_url(service)}/v2.1/servers"
    ctl = cluster.controller(host)
    _settled(cluster)
    before = ha_drills.unit_status(ctl, unit)
    direct = f"http://{ctl.address}:{cluster.ports[service]}/"
    out_s = restarted_s = answers_s = back_s = check_up_s = None
    lowest = ha.HEALTHY
    pids: list[int] = []
    empty_s = 0.0
    empties: list[tuple[float, float]] = []  # (from, to) seconds after the fault: no member ready and up
    faulted = 0.0
    others: list[str] = []
    alerts: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="hv-ha-bench-haven-"))
    # The clients' token validated before the load starts (--token warm), as a client's long-lived token
    # is: each run's new token cost every replica process a validation by Keystone on its first requests
    # (py-spy, 8 clients: all 4 of the survivor's request threads in keystonemiddleware's verify_token,
    # waiting on Keystone, for 7-10 s after the load began), a stall that covered the kill 2 s later.
    token = _client_token(labf, cluster)
    cache_before = _cache_counts(cluster)
    log = _LogTail(cluster.folder / "haproxy.log")
    with _healer(cluster, heal, folder) as healer:
        with _load(url, token, clients) as load:
            _ensure_answering(load)
            if drill == "kill":
                os.kill(ha.main_pid(ctl, unit), signal.SIGKILL)
            else:
                pids = ha_drills.hang(ctl, unit)
            faulted, faulted_wall = time.monotonic(), time.time()
            log.mark(faulted)
            try:
                while time.monotonic() - faulted < 90.0 and back_s is None:
                    elapsed = time.monotonic() - faulted
                    states = ha.servers_state(cluster)
                    log.read()
                    admin, op = states[(backend, host)]
                    if not any(v == ("ready", "up") for k, v in states.items() if k[0] == backend):
                        empty_s += 0.1  # about: one sample every 0.1 s plus the reads' own time
                        if empties and elapsed - empties[-1][1] < 0.5:
                            empties[-1] = (empties[-1][0], elapsed)
                        else:
                            empties.append((elapsed, elapsed))
                    health = ha.check_health(cluster)[(backend, host)][1]
                    lowest = min(lowest, health)
                    if out_s is None and (admin, op) != ("ready", "up"):
                        out_s = elapsed
                    if out_s is not None and check_up_s is None and restarted_s is not None and op == "up":
                        check_up_s = elapsed  # up by HAProxy's own check again, whatever its admin state
                    status = ha_drills.unit_status(ctl, unit)
                    if restarted_s is None and status.invocation_id != before.invocation_id:
                        restarted_s = elapsed
                    if restarted_s is not None and answers_s is None and _answers(direct):
                        answers_s = elapsed
                    top = health == ha.HEALTHY and lowest < ha.HEALTHY
                    if restarted_s is not None and (admin, op) == ("ready", "up") and top:
                        back_s = elapsed
                    time.sleep(0.1)
            finally:
                ha_drills.resume(pids)
            time.sleep(5.0)  # the load goes on a while on the replica back in service
            log.read()
        restarts: int | None = None
        false_actions: int | None = None
        haven_out_s = haven_ready_s = None
        if healer is not None:
            # haven's own membership actions on the victim after the fault: whether it took the member
            # out before HAProxy's check had it up again (check_up_s), and when its probe let it back.
            mine = [a for a in healer.actions(service, host) if a.created_at >= faulted_wall]
            outs = [a.created_at for a in mine if a.kind in (ActionKind.DRAIN, ActionKind.MAINT)]
            readies = [a.created_at for a in mine if a.kind is ActionKind.READY]
            haven_out_s = min(outs) - faulted_wall if outs else None
            haven_ready_s = min(readies) - faulted_wall if readies else None
            _settled(cluster)  # haven finishes what it started (a second restart of a slow new replica)
            restarts = len([a for a in healer.actions(service, host) if a.kind is ActionKind.RESTART])
            elsewhere = [a for a in healer.actions() if (a.service, a.host) != (service, host)]
            false_actions = len(elsewhere)
            others = [f"{a.kind.value} {a.service}@{a.host}: {a.reason[:110]}" for a in elsewhere]
            alerts = [f"{a.kind.value}: {a.message[:110]}" for a in healer.alerts()]
    requests = load.answers + len(load.errors)
    alone = _alone_window(faulted, out_s, back_s, load.started + load.seconds)
    cache_after = _cache_counts(cluster)
    after_out = [e for e in load.errors if out_s is not None and e[0] >= faulted + out_s]
    slow_after = [(t, d) for t, d in load.slow if restarted_s is not None and t - faulted >= restarted_s]
    kinds = collections.Counter(e[1][:60] for e in load.errors)
    return {
        "drill": drill, "mode": "haven" if heal else "systemd", "victim": host,
        "requests": requests, "rps": round(requests / load.seconds, 1),
        "failed": len(load.errors), "failed_after_out": len(after_out), "out_s": _r(out_s),
        "restarted_s": _r(restarted_s), "answers_s": _r(answers_s), "back_s": _r(back_s),
        "slowest_s": _r(load.slowest[0]), "slowest_sent_s": _r(load.slowest[1] - faulted),
        # answers slower than 2 s sent after the victim's new process ran (its cold answers): (sent, took)
        "slow_after_restart": [(_r(t - faulted), _r(d)) for t, d in slow_after][:6],
        "slow_after_restart_n": len(slow_after),
        # memcached's own get_hits and get_misses over the run (every controller's; None: no memcached)
        "cache_hits": _delta(cache_before, cache_after, "get_hits"),
        "cache_misses": _delta(cache_before, cache_after, "get_misses"),
        "check_up_s": _r(check_up_s), "haven_out_s": _r(haven_out_s), "haven_ready_s": _r(haven_ready_s),
        "backend_empty_s": _r(empty_s),
        # answers a second through the frontend: the 2 s before the fault (both replicas), and while the
        # survivor was alone (from the victim out of HAProxy until it was back)
        "rate_before": _rate(load.answered, faulted - 2.0, faulted),
        "rate_alone": _rate(load.answered, alone[0], alone[1]) if alone else None,
        "rate_alone_until": alone[2] if alone else "never out",
        "token": TOKEN_MODE,
        "victim_restarts": restarts, "false_actions": false_actions, "first_error": load.errors[:1],
        "errors": dict(kinds.most_common(4)), "other_actions": others, "alerts": alerts,
        # why each failed request failed: its kind, whether it was sent while nova_api's backend had no
        # member ready and up (HAProxy's 503 "no server available"), and when (s after the fault)
        "why": _why(load.errors, faulted, empties), "backend_empty": [(_r(a), _r(b)) for a, b in empties],
        # HAProxy's own log of nova_api's members over the run (its check results, haven's and the agent's
        # state changes), each line stamped with when the bench read it (s after the fault, to ~0.1 s)
        "haproxy_log": log.lines(backend),
        "load": _loadavg(),
    }  # fmt: skip


def _alone_window(
    faulted: float, out_s: float | None, back_s: float | None, load_end: float
) -> tuple[float, float, str] | None:
    """When the survivor carried the load alone (monotonic from, to) and until what: the victim out of
    HAProxy until it was back, or, when it never came back, until the load ended (said so); None when
    the victim was never out."""
    if out_s is None:
        return None
    if back_s is None:
        return faulted + out_s, load_end, "end of run (victim never back)"
    return faulted + out_s, faulted + back_s, "back"


def _rate(answered: list[float], start: float, end: float) -> float | None:
    if end - start < 0.5:
        return None
    return round(len([t for t in answered if start <= t < end]) / (end - start), 1)


class _LogTail:
    """Lines appended to HAProxy's log (it writes no time stamps: ``log stdout format raw``) from here
    on, each stamped with the monotonic time the bench read it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = path.stat().st_size if path.exists() else 0
        self._origin = 0.0
        self._lines: list[tuple[float, str]] = []

    def mark(self, origin: float) -> None:
        self._origin = origin

    def read(self) -> None:
        with contextlib.suppress(OSError), self._path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
            self._offset += len(data)
        now = time.monotonic()
        for line in data.decode(errors="replace").splitlines():
            if line.strip() and not line.startswith("[WARNING]") and not line.startswith("[ALERT]"):
                self._lines.append((now, line.strip()))  # each event is logged twice: once prefixed

    def lines(self, backend: str) -> list[tuple[float, str]]:
        """The lines that name ``backend`` itself (``nova_api``, ``nova_api/ctl-1``), not another whose
        name it begins (``nova_api_kolla``, the Kolla-checked anchor's)."""
        named = re.compile(rf"(?<![\w.-]){re.escape(backend)}(?![\w.-])")
        return [(round(t - self._origin, 1), line[:150]) for t, line in self._lines if named.search(line)]


def _why(
    errors: list[tuple[float, str]], faulted: float, empties: list[tuple[float, float]]
) -> dict[str, int]:
    """The failed requests by kind and by whether nova_api's backend was empty when they were sent."""
    out: collections.Counter[str] = collections.Counter()
    for sent, text in errors:
        at = sent - faulted
        empty = any(a - 0.2 <= at <= b + 0.2 for a, b in empties)
        when = "before the fault" if at < 0 else "backend empty" if empty else "a member up"
        out[f"{text[:40]} | {when}"] += 1
    return dict(out)


def _cache_counts(cluster: ha.HaLab) -> dict[str, int] | None:
    """memcached's own counters summed over the active controllers (None: the lab runs no memcached, or
    one of them gave no stats: a drill of it)."""
    if not cluster.memcached_port:
        return None
    total: collections.Counter[str] = collections.Counter()
    try:
        for controller in cluster.active:
            found = memcached.stats(controller.address, cluster.memcached_port)
            total.update({key: int(found[key]) for key in ("get_hits", "get_misses")})
    except LabServiceError:
        return None
    return dict(total)


def _delta(before: dict[str, int] | None, after: dict[str, int] | None, key: str) -> int | None:
    return after[key] - before[key] if before is not None and after is not None else None


def _set_maxconn(cluster: ha.HaLab, maxconn: int) -> None:
    """Every server of haven's backends (not Kolla's anchor) capped at ``maxconn`` (HAProxy's runtime API),
    0 uncapped; read back from HAProxy's ``show stat`` (its ``slim``: empty when uncapped)."""
    runtime = HAProxyRuntime(cluster.haproxy_socket)
    for api in cluster.apis:
        for controller in cluster.controllers:
            answer = asyncio.run(
                runtime.command(f"set maxconn server {api.backend}/{controller.host} {maxconn}")
            )
            if answer.strip():
                raise SystemExit(
                    f"HAProxy refused maxconn {maxconn} on {api.backend}/{controller.host}: {answer}"
                )
    found = server_limits(asyncio.run(runtime.command("show stat")))
    wanted = maxconn or None
    wrong = {
        f"{api.backend}/{c.host}": found.get((api.backend, c.host))
        for api in cluster.apis for c in cluster.controllers
        if found.get((api.backend, c.host), -1) != wanted
    }  # fmt: skip
    if wrong:
        raise SystemExit(f"HAProxy did not take maxconn {maxconn}: its limits now {wrong}")
    print(f"maxconn {maxconn or 'none (uncapped)'} on every server of haven's backends", flush=True)


def server_limits(show_stat: str) -> dict[tuple[str, str], int | None]:
    """(backend, server) -> its session limit (``slim``) from HAProxy's ``show stat`` CSV; None: uncapped."""
    header: list[str] = []
    out: dict[tuple[str, str], int | None] = {}
    for line in show_stat.splitlines():
        if line.startswith("# "):
            header = line[2:].split(",")
            continue
        fields = line.split(",")
        if not header or len(fields) < len(header):
            continue
        row = dict(zip(header, fields, strict=False))
        if row["svname"] in ("FRONTEND", "BACKEND"):
            continue
        out[(row["pxname"], row["svname"])] = int(row["slim"]) if row["slim"] else None
    return out


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def crashloop_run(labf: Path, cluster: ha.HaLab, host: str, clients: int) -> dict[str, object]:
    """keystone on ``host`` fails at every start; haven backs off and holds; then mended by hand."""
    ctl = cluster.controller(host)
    api = next(a for a in cluster.apis if a.service == "keystone")
    folder = Path(tempfile.mkdtemp(prefix="hv-ha-bench-haven-"))
    _settled(cluster)
    starts: list[float] = []
    members: list[str] = []
    held_s = None
    with ha_drills.Healer(cluster, folder) as healer:
        time.sleep(2.0)
        try:
            with ha_drills.Load(cluster.frontend_url("keystone") + "/v3", "", clients, 10.0) as load:
                ha_drills.break_replica(ctl, api)
                seen = ha_drills.unit_status(ctl, api.unit).invocation_id
                os.kill(ha.main_pid(ctl, api.unit), signal.SIGKILL)
                killed = time.monotonic()
                while time.monotonic() - killed < 120 and held_s is None:
                    status = ha_drills.unit_status(ctl, api.unit)
                    if status.invocation_id != seen:
                        seen = status.invocation_id
                        starts.append(round(time.monotonic() - killed, 2))
                    admin = ha.servers_state(cluster)[("keystone", host)][0]
                    if not members or members[-1] != admin:
                        members.append(admin)
                    if any(a.kind is AlertKind.REPLICA_CRASH_LOOP for a in healer.alerts()):
                        held_s = time.monotonic() - killed
                    time.sleep(0.1)
                time.sleep(5.0)
                after_hold = ha_drills.unit_status(ctl, api.unit)
            restarts = [
                a.created_at for a in healer.actions("keystone", host) if a.kind is ActionKind.RESTART
            ]
            alerts = [a.message for a in healer.alerts()]
        finally:
            ha_drills.mend_replica(ctl, api)
        mended = time.monotonic()
        while (
            ha.servers_state(cluster)[("keystone", host)] != ("ready", "up")
            and time.monotonic() - mended < 60
        ):
            time.sleep(0.2)
        back_s = time.monotonic() - mended
    return {
        "drill": "crashloop", "victim": host, "systemd_starts_s": starts,
        "haven_restarts": len(restarts), "gaps_s": [round(b - a, 2) for a, b in itertools.pairwise(restarts)],
        "held_s": _r(held_s), "unit_after_hold": after_hold.active.value,
        "started_after_hold": after_hold.invocation_id != seen, "member_states": members,
        "alerts": alerts, "requests": load.answers + len(load.errors), "failed": len(load.errors),
        "back_after_mend_s": _r(back_s),
    }  # fmt: skip


def controller_run(labf: Path, cluster: ha.HaLab, host: str, clients: int) -> dict[str, object]:
    """Every process of ``host``'s namespace SIGSTOPped under load, haven running; then thawed."""
    ctl = cluster.controller(host)
    backends = [api.backend for api in cluster.apis]
    url = cluster.frontend_url("nova-api") + "/v2.1/servers"
    folder = Path(tempfile.mkdtemp(prefix="hv-ha-bench-haven-"))
    _settled(cluster)
    out_s = alert_s = back_s = None
    dropped = 0.0
    with _healer(cluster, True, folder) as healer:
        assert healer is not None
        with ha_drills.Load(url, _token(labf, cluster), clients, timeout_s=10.0) as load:
            time.sleep(2.0)
            pids = ha_drills.freeze(ctl)
            frozen = time.monotonic()
            try:
                while time.monotonic() - frozen < 60 and (out_s is None or alert_s is None):
                    state = ha.servers_state(cluster)
                    if out_s is None and all(state[(b, host)] != ("ready", "up") for b in backends):
                        dropped = time.monotonic()
                        out_s = dropped - frozen
                    if alert_s is None and any(a.kind is AlertKind.CONTROLLER_DOWN for a in healer.alerts()):
                        alert_s = time.monotonic() - frozen
                    time.sleep(0.1)
                time.sleep(5.0)  # the survivor alone
                alerts = [(a.kind.value, a.host) for a in healer.alerts()]
                survivor = [(a.kind.value, a.host) for a in healer.actions() if a.host != host]
            finally:
                ha_drills.thaw(pids)
            thawed = time.monotonic()
            while time.monotonic() - thawed < 60:
                state = ha.servers_state(cluster)
                if all(state[(b, host)] == ("ready", "up") for b in backends):
                    back_s = time.monotonic() - thawed
                    break
                time.sleep(0.1)
    requests = load.answers + len(load.errors)
    return {
        "drill": "controller", "mode": "haven", "victim": host, "requests": requests,
        "rps": round(requests / load.seconds, 1), "failed": len(load.errors),
        "failed_after_drop": len([e for e in load.errors if out_s is not None and e[0] >= dropped]),
        "out_s": _r(out_s), "alert_s": _r(alert_s), "back_after_thaw_s": _r(back_s), "alerts": alerts,
        "survivor_actions": survivor,
    }  # fmt: skip


def _actives(controller: ha.Controller, units: list[str]) -> dict[str, str]:
    """systemd's ActiveState of ``units`` on ``controller``, over one D-Bus connection."""

    async def read() -> dict[str, str]:
        bus = SystemdUnits(controller.bus)
        try:
            return {unit: (await bus.status(unit)).active.value for unit in units}
        finally:
            await bus.close()

    return asyncio.run(read())


def _standby(cluster: ha.HaLab, spare: ha.Controller) -> None:
    """The spare a standby host again (by hand, no haven running): members in maintenance, units stopped."""
    runtime = HAProxyRuntime(cluster.haproxy_socket)
    for (backend, server), (admin, _op) in ha.servers_state(cluster).items():
        if server == spare.host and admin != "maint":
            asyncio.run(runtime.command(f"set server {backend}/{server} state maint"))
    units = [api.unit for api in cluster.apis] + [w.unit for w in cluster.workers]
    for unit in units:
        ha_drills._systemd(spare, "StopUnit", "ss", unit, "replace")
    deadline = time.monotonic() + 30.0
    while any(a not in ("inactive", "failed") for a in _actives(spare, units).values()):
        if time.monotonic() > deadline:
            raise SystemExit(f"the spare's units did not stop: {_actives(spare, units)}")
        time.sleep(0.5)
    for unit in units:  # a unit stopped with a kill may read failed: clean for the next run
        with contextlib.suppress(Exception):
            ha_drills._systemd(spare, "ResetFailedUnit", "s", unit)


def spare_run(labf: Path, cluster: ha.HaLab, host: str, clients: int, token: str) -> dict[str, object]:
    """``host`` frozen under ``MixedLoad``, haven running, a spare controller standing by: when every
    service is back at its min_replicas on the survivors (systemd, HAProxy), what the clients saw."""
    ctl = cluster.controller(host)
    spare = cluster.spares[0]
    survivors = [c for c in cluster.controllers if c.host != host]
    backends = [api.backend for api in cluster.apis]
    folder = Path(tempfile.mkdtemp(prefix="hv-ha-bench-haven-"))
    _settled(cluster)
    for c in cluster.active:
        _warm(f"http://{c.address}:{cluster.ports['nova-api']}/v2.1/servers", token)
    out_s = alert_s = spare_s = all_back_s = back_s = None
    back: dict[str, float] = {}
    dropped = back_at = 0.0
    empty_s = 0.0  # seconds nova-api's backend had no member ready and up by HAProxy's own check
    last = 0.0
    with _healer(cluster, True, folder) as healer:
        assert healer is not None
        specs = {spec.name: spec for spec in healer.config.services}
        with ha_anchors.MixedLoad(cluster.frontend_url("nova-api"), token, clients) as load:
            time.sleep(3.0)
            pids = ha_drills.freeze(ctl)
            frozen, frozen_wall = time.monotonic(), time.time()
            try:
                while time.monotonic() - frozen < 90 and (all_back_s is None or alert_s is None):
                    elapsed = time.monotonic() - frozen
                    state = ha.servers_state(cluster)
                    if not any(v == ("ready", "up") for (b, _h), v in state.items() if b == "nova_api"):
                        empty_s += elapsed - last
                    last = elapsed
                    if out_s is None and all(state[(b, host)] != ("ready", "up") for b in backends):
                        dropped, out_s = time.monotonic(), elapsed
                    if alert_s is None and any(a.kind is AlertKind.CONTROLLER_DOWN for a in healer.alerts()):
                        alert_s = elapsed
                    actives = {c.host: _actives(c, [s.unit for s in specs.values()]) for c in survivors}
                    if spare_s is None and any(a == "active" for a in actives[spare.host].values()):
                        spare_s = elapsed
                    for spec in specs.values():
                        backend = spec.backend.name if spec.backend is not None else None
                        serving = [
                            c for c in survivors
                            if actives[c.host][spec.unit] == "active"
                            and (backend is None or state.get((backend, c.host)) == ("ready", "up"))
                        ]  # fmt: skip
                        if spec.name not in back and len(serving) >= spec.min_replicas:
                            back[spec.name] = elapsed
                    if all_back_s is None and len(back) == len(specs):
                        all_back_s, back_at = elapsed, time.monotonic()
                    time.sleep(0.2)
                time.sleep(5.0)  # the survivors and the spare carry the load a while
            except BaseException:
                ha_drills.thaw(pids)
                raise
        alerts = [(a.kind.value, a.host) for a in healer.alerts()]
        starts = [
            f"{round(a.created_at - frozen_wall, 1)} {a.service}@{a.host}"
            for a in healer.actions() if a.kind is ActionKind.START
        ]  # fmt: skip
        others = [(a.kind.value, a.service, a.host) for a in healer.actions()
                  if a.host not in (host, spare.host)]  # fmt: skip
        ha_drills.thaw(pids)
        thawed = time.monotonic()
        while time.monotonic() - thawed < 60:  # haven returns the thawed members it took out
            state = ha.servers_state(cluster)
            if all(state[(b, host)] == ("ready", "up") for b in backends):
                back_s = time.monotonic() - thawed
                break
            time.sleep(0.2)
    _standby(cluster, spare)
    requests = load.requests
    return {
        "drill": "controller", "mode": "haven, spare", "victim": host, "requests": requests,
        "writes": load.writes, "rps": round(requests / load.seconds, 1), "failed": len(load.errors),
        "failed_after_drop": len([e for e in load.errors if out_s is not None and e[0] >= dropped]),
        "failed_after_back": len([e for e in load.errors if all_back_s is not None and e[0] >= back_at]),
        "out_s": _r(out_s), "alert_s": _r(alert_s), "spare_started_s": _r(spare_s),
        "all_back_s": _r(all_back_s), "back_s": {k: _r(v) for k, v in back.items()},
        "back_after_thaw_s": _r(back_s), "alerts": alerts, "haven_starts": starts,
        "survivor_actions": others, "nova_api_backend_empty_s": _r(empty_s),
        "errors_after_drop": dict(collections.Counter(
            e[1].split(":")[0][:40] for e in load.errors if out_s is not None and e[0] >= dropped)),
        "first_error": load.errors[:1], "load1": os.getloadavg()[0],
    }  # fmt: skip


def spare_bench(labf: Path, cluster: ha.HaLab, runs: int, clients: int) -> int:
    """``--drill controller`` with a spare: ctl-1 and ctl-2 lost in turn."""
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    token = _token(labf, cluster)
    rows = []
    for index in range(runs):
        row = spare_run(labf, cluster, ha.CONTROLLERS[index % 2], clients, token)
        rows.append(row)
        print(row, flush=True)
        time.sleep(3.0)
    print(f"load average at the end: {os.getloadavg()}", flush=True)
    _summary(f"one controller lost, a spare standing by, {clients} clients (mixed)", rows, KEYS["spare"])
    return 0


@contextlib.contextmanager
def _with_spare(labf: Path, cluster: ha.HaLab, wanted: bool) -> Iterator[None]:
    """``--spare`` on an HA lab without one: add it (recorded in the lab state, so ``haven lab down``
    stops it too) for the bench, and remove it at the end."""
    if not wanted or cluster.spares:
        yield
        return
    state = lab.running(labf)
    assert state is not None and state.ha is not None
    tools = {api.tool for api in cluster.apis} | ({"nova"} if cluster.workers else set())
    venvs = {tool: ensure_tool_env(tool) for tool in tools}
    records: list[ProcessRecord] = []

    def keep(name: str, pid1: int, log: Path) -> None:
        records.append(record(name, pid1, log, namespace=True))
        state.processes.append(records[-1])
        state.save()

    spare = ha.add_spare(cluster, labf, venvs, keep)
    print(f"added a spare controller {spare.host} ({spare.address}), its units stopped", flush=True)
    try:
        yield
    finally:
        ha.remove_spare(cluster, spare)
        state.processes = [p for p in state.processes if p not in records]
        state.save()


def worker_statuses(cluster: ha.HaLab) -> dict[tuple[str, str], tuple[str, int]]:
    """systemd's (InvocationID, NRestarts) of every worker replica: (host, unit) -> (id, restarts)."""
    out = {}
    for c in cluster.controllers:
        for w in cluster.workers:
            status = ha_drills.unit_status(c, w.unit)
            out[(c.host, w.unit)] = (status.invocation_id, status.n_restarts)
    return out


def worker_run(
    labf: Path, cluster: ha.HaLab, host: str, worker: ha.Worker, clients: int, rpc: NovaRpc
) -> dict[str, object]:
    """One hung (SIGSTOPped: master and worker) ``worker`` replica on ``host``, haven running, under load.

    From systemd: when it ran a new process (InvocationID); from the ping: when the new process answered
    (haven's nova_rpc ping, sent here every 0.5 s once it runs); haven's first action on it (from its
    record: when it found it); other worker replicas restarted meanwhile (systemd's NRestarts and
    InvocationID: false restarts) and haven's actions on any other replica."""
    url = ha.transport_url(labf)
    ctl = cluster.controller(host)
    _settled(cluster)
    for c in cluster.controllers:  # every worker replica answers before the fault
        for w in cluster.workers:
            _wait_answer(rpc, url, c.host, w, 60.0)
    before = worker_statuses(cluster)
    restarted_s = answers_s = None
    folder = Path(tempfile.mkdtemp(prefix="hv-ha-bench-haven-"))
    with ha_drills.Healer(cluster, folder) as healer:
        time.sleep(2.0)
        with ha_drills.Load(cluster.frontend_url("nova-api") + "/v2.1/servers", _token(labf, cluster),
                            clients) as load:  # fmt: skip
            time.sleep(2.0)
            pids = ha_drills.hang(ctl, worker.unit)
            hung, hung_wall = time.monotonic(), time.time()
            try:
                while time.monotonic() - hung < 90 and answers_s is None:
                    if restarted_s is None:
                        if (
                            ha_drills.unit_status(ctl, worker.unit).invocation_id
                            != before[(host, worker.unit)][0]
                        ):
                            restarted_s = time.monotonic() - hung
                    elif _pings(rpc, url, host, worker):
                        answers_s = time.monotonic() - hung
                    time.sleep(0.2 if restarted_s is None else 0.5)
            finally:
                ha_drills.resume(pids)
            time.sleep(2.0)
        actions = healer.actions()
    after = worker_statuses(cluster)
    victim = (host, worker.unit)
    mine = [a for a in actions if (a.service, a.host) == (worker.service, host)]
    false_restarts = sum(
        (after[k][1] - before[k][1]) + (after[k][0] != before[k][0]) for k in before if k != victim
    )
    return {
        "drill": "worker", "mode": "haven", "victim": f"{worker.service}@{host}",
        "requests": load.answers + len(load.errors),
        "rps": round((load.answers + len(load.errors)) / load.seconds, 1),
        "failed": len(load.errors),
        "haven_acted_s": _r(mine[0].created_at - hung_wall) if mine else None,
        "restarted_s": _r(restarted_s), "answers_s": _r(answers_s),
        "victim_restarts": len([a for a in mine if a.kind is ActionKind.RESTART]),
        "victim_systemd_restarts": after[victim][1] - before[victim][1],
        "false_restarts": false_restarts, "false_actions": len(actions) - len(mine),
        "first_error": load.errors[:1],
    }  # fmt: skip


def _pings(rpc: NovaRpc, url: str, host: str, worker: ha.Worker) -> bool:
    try:
        ha.ping_worker(rpc, url, host, worker, timeout_s=3.0)
    except ProbeFailed:
        return False
    return True


def _wait_answer(rpc: NovaRpc, url: str, host: str, worker: ha.Worker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not _pings(rpc, url, host, worker):
        if time.monotonic() > deadline:
            raise SystemExit(f"{worker.service} on {host} gives no RPC answer after {timeout_s:g} s")
        time.sleep(0.5)


def _settled(cluster: ha.HaLab, timeout_s: float = 60.0) -> None:
    """Every member ready and up before a run (a run must not start on the previous one's leftovers);
    a spare controller's in maintenance."""
    deadline = time.monotonic() + timeout_s
    spares = {c.host for c in cluster.spares}
    while True:
        state = ha.servers_state(cluster)
        if all(s == ("ready", "up") or (k[1] in spares and s[0] == "maint") for k, s in state.items()):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"members not ready and up after {timeout_s:g} s: {state}")
        time.sleep(0.5)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _summary(title: str, rows: list[dict[str, object]], keys: tuple[str, ...]) -> None:
    print(f"\n{title}, {len(rows)} runs:")
    for key in keys:
        values = [float(v) for r in rows if isinstance(v := r[key], int | float)]
        median = round(statistics.median(values), 2) if values else None
        print(f"  {key:<14} median {median}   all {[r[key] for r in rows]}")


def workers_bench(labf: Path, cluster: ha.HaLab, runs: int, clients: int) -> int:
    """``--drill worker``: a hung nova-conductor or nova-scheduler replica, alternating service and host."""
    if not cluster.workers:
        print("this HA lab has no nova-conductor/nova-scheduler replicas: start it again with this haven")
        return 2
    at_start = worker_statuses(cluster)
    start_restarts = sum(n for _i, n in at_start.values())
    print(f"systemd restarts of the worker replicas since the lab's start: {start_restarts}")
    rpc = NovaRpc()
    rows: dict[str, list[dict[str, object]]] = {}
    try:
        for index in range(runs):
            worker = cluster.workers[index % len(cluster.workers)]
            host = ha.CONTROLLERS[(index // len(cluster.workers)) % 2]
            row = worker_run(labf, cluster, host, worker, clients, rpc)
            rows.setdefault(worker.service, []).append(row)
            rows.setdefault("all", []).append(row)
            print(row, flush=True)
            time.sleep(3.0)
    finally:
        rpc.close(timeout_s=5.0)
    for name, found in rows.items():
        _summary(f"hung {name} replica, {clients} clients, haven", found, KEYS["worker"])
    print(
        f"false restarts over the whole benchmark: {sum(int(str(r['false_restarts'])) for r in rows['all'])}"
    )
    return 0


# --anchor / --compare: the same drill on the same replicas, each mode healing (or not) its own way.
MODES = ("haven", "kolla", "k8s")
WINDOWS = {"haven": 90.0, "kolla": 60.0, "k8s": 300.0}  # seconds a run waits for the replica back
COMPARE_KEYS = ("rps", "failed", "failed_after_out", "out_s", "restarted_s", "answers_s", "back_s",
                "slowest_s", "false_restarts", "false_actions", "victim_restarts")  # fmt: skip


def _member(cluster: ha.HaLab, proxy: ha_anchors.AnchorProxy, mode: str, host: str) -> tuple[str, str]:
    if mode == "haven":
        return ha.servers_state(cluster)[("nova_api", host)]
    backend = ha_anchors.KOLLA_BACKEND if mode == "kolla" else ha_anchors.K8S_BACKEND
    return proxy.state()[(backend, host)]


def _warm(url: str, token: str) -> None:
    for _ in range(2):
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url, headers={"X-Auth-Token": token}, timeout=60.0, trust_env=False)


def anchor_run(
    token: str, cluster: ha.HaLab, proxy: ha_anchors.AnchorProxy, host: str, clients: int, *,
    mode: str, drill: str, window_s: float, grace_s: float,
) -> dict[str, object]:  # fmt: skip
    """One hang (SIGSTOP of master and worker) or kill -9 of nova-api on ``host`` under ``MixedLoad``,
    healed by ``mode``: haven (its control plane, the lab's frontend), kolla (Kolla's HAProxy checks and
    restart policy, nothing else) or k8s (OpenStack-Helm's probes, the kubelet's kill, readiness as
    Service membership). Judged from HAProxy's own member state, systemd's InvocationID, a direct GET and
    what the clients saw."""
    ctl = cluster.controller(host)
    others = [c for c in cluster.controllers if c.host != host]
    _settled(cluster)
    proxy.settled()
    before = {c.host: ha_drills.unit_status(c, "nova-api.service").invocation_id for c in cluster.controllers}
    direct = f"http://{ctl.address}:{cluster.ports['nova-api']}/"
    url = cluster.frontend_url("nova-api") if mode == "haven" else proxy.url(mode)
    out_s = restarted_s = answers_s = back_s = None
    out_at = 0.0
    lowest = ha.HEALTHY
    pids: list[int] = []
    folder = Path(tempfile.mkdtemp(prefix="hv-ha-bench-anchor-"))
    mechanism: contextlib.AbstractContextManager[object]
    if mode == "haven":
        mechanism = _healer(cluster, True, folder)
    elif mode == "kolla":
        mechanism = ha_anchors.kolla_restart_policy(cluster)
    else:
        mechanism = ha_anchors.Kubelet(cluster, proxy, grace_s=grace_s)
    if TOKEN_MODE == "warm":  # each replica validates the token before the load (no herd of misses)
        for c in cluster.controllers:
            _warm(f"http://{c.address}:{cluster.ports['nova-api']}/v2.1/servers", token)
    with mechanism as running:
        policy = ha_anchors.unit_restart_policy(ctl)
        with ha_anchors.MixedLoad(url, token, clients) as load:
            time.sleep(1.0)
            _ensure_answering(load)
            if drill == "kill":
                os.kill(ha.main_pid(ctl, "nova-api.service"), signal.SIGKILL)
            else:
                pids = ha_drills.hang(ctl, "nova-api.service")
            faulted, faulted_wall = time.monotonic(), time.time()
            try:
                while time.monotonic() - faulted < window_s and back_s is None:
                    elapsed = time.monotonic() - faulted
                    member = _member(cluster, proxy, mode, host)
                    # haven's lab backend: back once its check health counter is at its top again
                    health = ha.check_health(cluster)[("nova_api", host)][1] if mode == "haven" else 0
                    lowest = min(lowest, health)
                    if out_s is None and member != ("ready", "up"):
                        out_s, out_at = elapsed, time.monotonic()
                    invocation = ha_drills.unit_status(ctl, "nova-api.service").invocation_id
                    if restarted_s is None and invocation != before[host]:
                        restarted_s = elapsed
                    if restarted_s is not None and answers_s is None and _answers(direct):
                        answers_s = elapsed
                    top = mode != "haven" or (lowest < ha.HEALTHY and health == ha.HEALTHY)
                    if out_s is not None and restarted_s is not None and member == ("ready", "up") and top:
                        back_s = elapsed
                    time.sleep(0.1)
            finally:
                ha_drills.resume(pids)  # Kolla's window over: an operator's SIGCONT
            time.sleep(3.0)
        kills = running.kills() if isinstance(running, ha_anchors.Kubelet) else []
        kubelet_events = (
            [(round(t - faulted, 2), h, what) for t, h, what in running.events]
            if isinstance(running, ha_anchors.Kubelet) else []
        )  # fmt: skip
        haven_false = victim_restarts = 0
        actions: list[str] = []
        if isinstance(running, ha_drills.Healer):
            _settled(cluster, 120.0)  # haven finishes what it started (a second restart, a member back)
            found = running.actions()
            haven_false = len([a for a in found if (a.service, a.host) != ("nova-api", host)])
            victim_restarts = len([a for a in found if (a.service, a.host, a.kind) == (
                "nova-api", host, ActionKind.RESTART)])  # fmt: skip
            actions = [f"{round(a.created_at - faulted_wall, 1)} {a.kind.value} {a.service}@{a.host}"
                       for a in found]  # fmt: skip
    after = {c.host: ha_drills.unit_status(c, "nova-api.service").invocation_id for c in cluster.controllers}
    false_restarts = sum(after[c.host] != before[c.host] for c in others)
    return {
        "drill": drill, "mode": mode, "victim": host, "unit": policy, "requests": load.requests,
        "haven_probes": (OLD_TIMING if LAB_TIMING else ha_drills.PROBE_TIMING) if mode == "haven" else None,
        "writes": load.writes, "rps": round(load.requests / load.seconds, 1), "failed": len(load.errors),
        "failed_after_out": len([e for e in load.errors if out_s is not None and e[0] >= out_at]),
        "out_s": _r(out_s), "restarted_s": _r(restarted_s), "answers_s": _r(answers_s),
        "back_s": _r(back_s), "slowest_s": _r(load.slowest), "false_restarts": false_restarts,
        "false_actions": haven_false,
        "victim_restarts": victim_restarts if mode == "haven" else len(kills), "haven": actions[:12],
        "kubelet": kubelet_events[:12], "first_error": load.errors[:1],
        "load1": os.getloadavg()[0],
    }  # fmt: skip


def compare_bench(
    labf: Path, cluster: ha.HaLab, modes: tuple[str, ...], drill: str, runs: int, clients: int,
    kolla_window_s: float, grace_s: float,
) -> int:  # fmt: skip
    """``--anchor``/``--compare``: each run index drills the same victim once per mode, in turn."""
    rows: dict[str, list[dict[str, object]]] = {}
    windows = {**WINDOWS, "kolla": kolla_window_s, "k8s": max(WINDOWS["k8s"], grace_s + 120.0)}
    print(f"load average at the start: {os.getloadavg()}", flush=True)
    token = _token(labf, cluster)  # one token for the whole bench (valid 1 h: Keystone's default)
    with ha_anchors.AnchorProxy(cluster, Path(tempfile.mkdtemp(prefix="hv-ha-bench-proxy-"))) as proxy:
        for index in range(runs):
            host = ha.CONTROLLERS[index % 2]
            for mode in modes:
                if TOKEN_MODE == "cold":  # a new token, validated nowhere, for each run
                    token = _token(labf, cluster)
                row = anchor_run(token, cluster, proxy, host, clients, mode=mode, drill=drill,
                                 window_s=windows[mode], grace_s=grace_s)  # fmt: skip
                rows.setdefault(mode, []).append(row)
                print(row, flush=True)
                time.sleep(3.0)
    print(f"load average at the end: {os.getloadavg()}", flush=True)
    medians: dict[str, dict[str, float | None]] = {}
    for mode, found in rows.items():
        _summary(f"{drill} of one nova-api replica, {clients} clients, {mode}", found, COMPARE_KEYS)
        medians[mode] = {}
        for key in COMPARE_KEYS:
            values = [float(v) for r in found if isinstance(v := r[key], int | float)]
            missing = len(found) - len(values)
            # a run without the event (never out, never back within its window) has no median
            medians[mode][key] = round(statistics.median(values), 2) if values and not missing else None
    if "haven" in medians:
        print("\nhaven / anchor (medians; None: the anchor never did it within its window):")
        for mode in (m for m in modes if m != "haven"):
            for key in ("out_s", "back_s", "failed"):
                mine, theirs = medians["haven"][key], medians[mode][key]
                ratio = round(mine / theirs, 3) if mine is not None and theirs else None
                print(f"  {key:<10} haven {mine}  {mode} {theirs}  ratio {ratio}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", type=Path, default=None, help="a running HA lab (default: start one)")
    parser.add_argument(
        "--drill", choices=("kill", "hang", "crashloop", "controller", "worker"), default="kill"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--heal", action="store_true", help="haven's control plane runs (kill)")
    parser.add_argument("--anchor", choices=MODES, action="append", default=None,
                        help="hang/kill: heal as haven, Kolla-Ansible or Kubernetes/OpenStack-Helm does "
                        "(repeatable); --compare runs all three")  # fmt: skip
    parser.add_argument("--compare", action="store_true", help="--anchor haven --anchor kolla --anchor k8s")
    parser.add_argument("--anchor-window", type=float, default=60.0, help="seconds Kolla's replica is hung")
    parser.add_argument("--k8s-grace", type=float, default=ha_anchors.OSH_GRACE_S,
                        help="the pod's terminationGracePeriodSeconds (OpenStack-Helm: 180)")  # fmt: skip
    parser.add_argument(
        "--spare",
        action="store_true",
        help="controller: with a spare controller (added to the lab if it has none)",
    )
    parser.add_argument("--client-timeout", type=float, default=30.0,
                        help="kill/hang: each client request's timeout (the lab test's: 10)")  # fmt: skip
    parser.add_argument("--lab-timing", action="store_true", help="the lab's former probe timing (2 s x 3)")
    parser.add_argument("--load-in-bench", action="store_true",
                        help="kill/hang: the clients' threads in the bench's process, beside haven's "
                        "control plane (as before 2026-12-07); default: a process of their own")  # fmt: skip
    parser.add_argument("--maxconn", type=int, default=None,
                        help="set each server of haven's HAProxy backends to this maxconn first, "
                        "via the runtime API; 0: uncapped (the lab's haproxy.cfg caps each at "
                        f"{ha.SERVER_MAXCONN}, half its gunicorn's threads); default: leave it")  # fmt: skip
    parser.add_argument("--token", choices=("warm", "cold"), default="warm",
                        help="kill/hang: warm, the clients' token validated on every nova-api replica "
                        "before the load; cold, a new token each run, validated nowhere")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    global LAB_TIMING, LOAD_IN_BENCH, CLIENT_TIMEOUT_S, TOKEN_MODE
    TOKEN_MODE = args.token
    LAB_TIMING = args.lab_timing
    CLIENT_TIMEOUT_S = args.client_timeout
    LOAD_IN_BENCH = args.load_in_bench
    modes = MODES if args.compare else tuple(dict.fromkeys(args.anchor or ()))
    if args.spare and args.drill != "controller":
        parser.error("--spare is for --drill controller")
    if modes and args.drill not in ("hang", "kill"):
        parser.error("--anchor and --compare drill hang or kill only")
    if args.runs < 1 or args.clients < 1 or args.k8s_grace < 0:
        parser.error("--runs and --clients must be at least 1, --k8s-grace not negative")
    if args.maxconn is not None and args.maxconn < 0:
        parser.error("--maxconn must be 0 (uncapped) or more")
    labf = args.folder or Path(tempfile.mkdtemp(prefix="hv-ha-bench-"))
    restore: ha.HaLab | None = None
    if args.folder is None:
        print(f"starting an HA lab in {labf}", flush=True)
        lab.up(labf, computes=1, ha=True, progress=lambda m: print(f"  {m}", flush=True))
    try:
        state = lab.running(labf)
        if state is None or not state.ha:
            print(f"no HA lab runs in {labf}: start one with `haven lab up --ha --folder {labf}`")
            return 2
        cluster = ha.from_state(state.ha)
        if args.maxconn is not None:
            _set_maxconn(cluster, args.maxconn)
            restore = cluster  # the lab's haproxy.cfg cap back at the end: a later run on it is as documented
        if cluster.workers:  # the lab's [controlplane] pings them: the transport URL, as LAB/ha/serve.env
            os.environ[ha.TRANSPORT_URL_ENV] = ha.transport_url(labf)
        if args.drill == "worker":
            return workers_bench(labf, cluster, args.runs, args.clients)
        if args.drill == "controller" and (args.spare or cluster.spares):
            with _with_spare(labf, cluster, args.spare):
                return spare_bench(labf, cluster, args.runs, args.clients)
        if modes:
            return compare_bench(labf, cluster, modes, args.drill, args.runs, args.clients,
                                 args.anchor_window, args.k8s_grace)  # fmt: skip
        rows: dict[str, list[dict[str, object]]] = {}
        for index in range(args.runs):
            host = ha.CONTROLLERS[index % 2]
            for heal in [args.drill == "hang" or args.heal]:
                if args.drill == "crashloop":
                    row = crashloop_run(labf, cluster, host, args.clients)
                elif args.drill == "controller":
                    row = controller_run(labf, cluster, host, args.clients)
                else:
                    row = fault_run(labf, cluster, host, args.clients, drill=args.drill, heal=heal)
                rows.setdefault(str(row.get("mode", "haven")), []).append(row)
                print(row, flush=True)
                time.sleep(3.0)  # the survivor settles; the other replica rises
        if args.drill != "crashloop":
            for mode, mode_rows in rows.items():
                what = (
                    "one controller lost"
                    if args.drill == "controller"
                    else f"{args.drill} of one nova-api replica"
                )
                _summary(f"{what}, {args.clients} clients, {mode}", mode_rows,
                         KEYS[args.drill])  # fmt: skip
        return 0
    finally:
        if restore is not None and args.folder is not None:
            with contextlib.suppress(Exception, SystemExit):  # a lab gone meanwhile: nothing to restore
                _set_maxconn(restore, ha.SERVER_MAXCONN)
        if args.folder is None:
            lab.down(labf)


if __name__ == "__main__":
    sys.exit(main())
