"""The measured impact matrix: which user operations stop while one lab service is stopped.

Called by `haven drill controlplane-impact --cloud lab` (haven.cli.impact_drill) and bench/impact.py.
For each service named (the lab's MariaDB, RabbitMQ, Keystone, Placement, Glance, the Neutron
stand-in, Nova's API, conductor, scheduler and every nova-compute), one pass:

1. the server a delete will remove is booted while everything runs (only when server-delete is run);
2. the service is SIGSTOPped: exactly its process group(s), from the lab's own records (``ImpactLab``);
   a stopped process keeps its port open and answers nothing: the hung replica, the harder case for a
   client's timeouts;
3. every operation runs at once, each in its own thread with its own session and timeout, as a user
   would (a token taken before the stop, and a fresh token request for ``token-issue``): works (within
   5 s and 3x its baseline), slow (works, later), fails (an error, or no answer within its timeout);
4. the service is SIGCONTed (always, in a finally) and the lab proven whole again (a token, a server
   list, every compute up in Nova, an image list, a Placement query) before the next one.

A baseline pass (nothing stopped) runs first and again at the end. The operations are plain REST
calls through keystoneauth1 (haven.drill never imports openstacksdk nor haven.lab): the lab's handles,
its URLs, credentials and process groups, are an ``ImpactLab`` the CLI implements
(haven.cli.impact_drill.LabImpact). The comparison with haven's model is haven.drill.impact_matrix.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from haven.domain.errors import PermanentError
from haven.topology.openstack import (
    FLAVOR_LIST,
    HYPERVISOR_LIST,
    IMAGE_LIST,
    IMAGE_UPLOAD,
    PLACEMENT_QUERY,
    SERVER_BOOT,
    SERVER_CONSOLE,
    SERVER_DELETE,
    SERVER_LIST,
    SERVER_SHOW,
    TOKEN_ISSUE,
)

# The lab's process names (its records) and the topology's node each one is.
SERVICES: dict[str, str] = {
    "mariadb": "mariadb",
    "rabbitmq-server": "rabbitmq",
    "keystone": "keystone",
    "placement-api": "placement-api",
    "glance-api": "glance-api",
    "network-stub": "neutron-server",
    "nova-api": "nova-api",
    "nova-conductor": "nova-conductor",
    "nova-scheduler": "nova-scheduler",
    "nova-compute": "nova-compute",  # every compute host's
}
OPERATIONS: tuple[str, ...] = (
    TOKEN_ISSUE, SERVER_LIST, SERVER_SHOW, FLAVOR_LIST, HYPERVISOR_LIST, SERVER_CONSOLE, SERVER_BOOT,
    SERVER_DELETE, IMAGE_LIST, IMAGE_UPLOAD, PLACEMENT_QUERY,
)  # fmt: skip
_NEEDS_KEPT = (SERVER_SHOW, SERVER_CONSOLE)  # need a server booted once, kept for the whole run
_COMPUTE = {"OpenStack-API-Version": "compute 2.53", "X-OpenStack-Nova-API-Version": "2.53"}
_PLACEMENT = {"OpenStack-API-Version": "placement 1.26"}
SLOW_S = 5.0


class ImpactLab(Protocol):
    """What the drill needs of a running lab (haven.cli.impact_drill implements it)."""

    @property
    def auth(self) -> Mapping[str, str]:
        """The admin's credentials, as clouds.yaml gives them (auth_url, username, password, ...)."""

    @property
    def urls(self) -> Mapping[str, str]:
        """Each API's base URL: compute (with its /v2.1), image, placement."""

    @property
    def image_id(self) -> str: ...

    @property
    def flavor(self) -> str: ...

    def groups(self, process: str) -> list[int]:
        """The live process groups of ``process`` (a name of SERVICES), from the lab's records."""


@dataclass(frozen=True)
class Settings:
    request_timeout_s: float = 20.0  # one request (a healthy lab answers in 0.1-3 s under load)
    boot_timeout_s: float = 60.0  # to ACTIVE
    delete_timeout_s: float = 45.0  # to gone
    whole_timeout_s: float = 120.0  # the lab answering again after a service is continued
    settle_s: float = 1.0  # between the stop and the operations
    prepare_timeout_s: float = 60.0  # a request with nothing stopped (warming, booting the victim)


@dataclass
class Outcome:
    result: str  # "works", "slow", "fails"
    seconds: float
    detail: str = ""


class LabNotWhole(PermanentError):
    """The lab did not answer again after a pass (or failed with nothing stopped): the run stops there."""

    def __init__(self, message: str, raw: dict[str, Any]) -> None:
        super().__init__(message)
        self.raw = raw


class User:
    """The lab's admin as a client: one keystoneauth session per operation, each holding its token."""

    def __init__(self, lab: ImpactLab, operations: Sequence[str], settings: Settings) -> None:
        self.lab = lab
        self.operations = tuple(operations)
        self.settings = settings
        self.sessions: dict[str, ks_session.Session] = {}
        self.flavor_id = ""
        self.kept = ""  # a server for show and console output

    def session(self) -> ks_session.Session:
        auth = v3.Password(**dict(self.lab.auth))  # type: ignore[arg-type]  # clouds.yaml's str fields
        return ks_session.Session(auth=auth, timeout=self.settings.request_timeout_s)

    def token(self) -> None:
        self.session().get_token()

    def _url(self, service: str, path: str) -> str:
        return self.lab.urls[service].rstrip("/") + path

    def get(self, op: str, service: str, path: str, timeout_s: float | None = None) -> Any:
        headers = _COMPUTE if service == "compute" else _PLACEMENT if service == "placement" else {}
        timeout = timeout_s or self.settings.request_timeout_s
        return self.sessions[op].get(self._url(service, path), headers=headers, timeout=timeout).json()

    def prepare(self) -> None:
        self.warm()
        flavors = self.get(SERVER_LIST, "compute", "/flavors", self.settings.prepare_timeout_s)["flavors"]
        named = [f["id"] for f in flavors if f["name"] == self.lab.flavor or f["id"] == self.lab.flavor]
        if not named:
            raise PermanentError(f"the lab has no flavor {self.lab.flavor!r}")
        self.flavor_id = str(named[0])
        if not self.kept and set(_NEEDS_KEPT) & set(self.operations):
            self.kept = self.boot("impact-kept", self.settings.boot_timeout_s * 2, self.sessions[SERVER_LIST])

    def warm(self) -> None:
        """A token taken (again) by every operation's session, used once on its API (as a user's are)."""
        for name in {*self.operations, SERVER_LIST}:
            self.sessions[name] = self.session()
        for name in self.operations:
            service = _SERVICE_OF[name]
            if service == "identity":
                self.sessions[name].get_token()
            else:
                self.get(name, service, _WARM[service], self.settings.prepare_timeout_s)

    def boot(self, name: str, timeout_s: float, sess: ks_session.Session) -> str:
        body = {"server": {"name": name, "imageRef": self.lab.image_id, "flavorRef": self.flavor_id,
                           "networks": "none"}}  # fmt: skip
        made = sess.post(self._url("compute", "/servers"), json=body, headers=_COMPUTE).json()
        server_id = str(made["server"]["id"])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = sess.get(self._url("compute", f"/servers/{server_id}"), headers=_COMPUTE).json()
            status = current["server"]["status"]
            if status == "ACTIVE":
                return server_id
            if status == "ERROR":
                raise RuntimeError(f"ERROR: {(current['server'].get('fault') or {}).get('message', '')}")
            time.sleep(0.5)
        raise TimeoutError(f"not ACTIVE within {timeout_s:.0f} s")

    def delete(self, server_id: str, timeout_s: float, sess: ks_session.Session) -> None:
        sess.delete(self._url("compute", f"/servers/{server_id}"), headers=_COMPUTE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            got = sess.get(self._url("compute", f"/servers/{server_id}"), headers=_COMPUTE, raise_exc=False)
            if got.status_code == 404:
                return
            time.sleep(0.5)
        raise TimeoutError(f"not gone within {timeout_s:.0f} s")

    def upload(self, made: list[str]) -> None:
        sess = self.sessions[IMAGE_UPLOAD]
        body = {"name": "impact-upload", "disk_format": "raw", "container_format": "bare"}
        image_id = str(sess.post(self._url("image", "/v2/images"), json=body).json()["id"])
        made.append(f"image:{image_id}")
        sess.put(self._url("image", f"/v2/images/{image_id}/file"), data=b"\0" * 4096,
                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        if sess.get(self._url("image", f"/v2/images/{image_id}")).json()["status"] != "active":
            raise RuntimeError("uploaded image not active")


_SERVICE_OF = {
    TOKEN_ISSUE: "identity", SERVER_LIST: "compute", SERVER_SHOW: "compute", FLAVOR_LIST: "compute",
    HYPERVISOR_LIST: "compute", SERVER_CONSOLE: "compute", SERVER_BOOT: "compute", SERVER_DELETE: "compute",
    IMAGE_LIST: "image", IMAGE_UPLOAD: "image", PLACEMENT_QUERY: "placement",
}  # fmt: skip
_WARM = {"compute": "/servers?limit=1", "image": "/v2/images?limit=1", "placement": "/resource_providers"}


def _ops(user: User, victim: str, made: list[str]) -> dict[str, Callable[[], object]]:
    s = user.sessions
    settings = user.settings

    def boot() -> None:
        made.append(f"impact-boot-{time.monotonic_ns()}")
        user.boot(made[-1], settings.boot_timeout_s, s[SERVER_BOOT])

    def console() -> object:
        url = user._url("compute", f"/servers/{user.kept}/action")
        return s[SERVER_CONSOLE].post(url, json={"os-getConsoleOutput": {"length": 5}}, headers=_COMPUTE)

    every: dict[str, Callable[[], object]] = {
        TOKEN_ISSUE: user.token,
        SERVER_LIST: lambda: user.get(SERVER_LIST, "compute", "/servers/detail"),
        SERVER_SHOW: lambda: user.get(SERVER_SHOW, "compute", f"/servers/{user.kept}"),
        FLAVOR_LIST: lambda: user.get(FLAVOR_LIST, "compute", "/flavors/detail"),
        HYPERVISOR_LIST: lambda: user.get(HYPERVISOR_LIST, "compute", "/os-hypervisors"),
        SERVER_CONSOLE: console,
        SERVER_BOOT: boot,
        SERVER_DELETE: lambda: user.delete(victim, settings.delete_timeout_s, s[SERVER_DELETE]),
        IMAGE_LIST: lambda: user.get(IMAGE_LIST, "image", "/v2/images"),
        IMAGE_UPLOAD: lambda: user.upload(made),
        PLACEMENT_QUERY: lambda: user.get(PLACEMENT_QUERY, "placement", "/resource_providers"),
    }
    return {name: every[name] for name in user.operations}


def _timed(call: Callable[[], object]) -> tuple[bool, float, str]:
    started = time.monotonic()
    try:
        call()
    except Exception as exc:  # any error the user would see is the observation
        return False, time.monotonic() - started, f"{type(exc).__name__}: {str(exc)[:160]}"
    return True, time.monotonic() - started, ""


def run_all(user: User, victim: str, made: list[str], baseline: Mapping[str, float]) -> dict[str, Outcome]:
    ops = _ops(user, victim, made)
    with ThreadPoolExecutor(len(ops)) as pool:
        futures = {name: pool.submit(_timed, call) for name, call in ops.items()}
        results = {name: f.result() for name, f in futures.items()}
    out: dict[str, Outcome] = {}
    for name, (ok, seconds, detail) in results.items():
        slow = ok and seconds > max(SLOW_S, 3 * baseline.get(name, seconds))
        out[name] = Outcome("slow" if slow else "works" if ok else "fails", round(seconds, 2), detail)
    return out


def signal_groups(pids: Sequence[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)


def whole(user: User, timeout_s: float) -> str:
    """ "" once the lab answers again (token, servers, every compute up, images, Placement), else why not."""
    deadline = time.monotonic() + timeout_s
    why = ""
    wait = user.settings.prepare_timeout_s  # each request, with nothing stopped: slow is not broken
    while time.monotonic() < deadline:
        try:
            user.token()
            sess = user.session()
            for service, path in (("compute", "/servers"), ("image", "/v2/images"),
                                  ("placement", "/resource_providers")):  # fmt: skip
                headers = _COMPUTE if service == "compute" else _PLACEMENT if service == "placement" else {}
                sess.get(user._url(service, path), headers=headers, timeout=wait)
            listed = sess.get(user._url("compute", "/os-services"), headers=_COMPUTE, timeout=wait).json()
            states = [s["state"] for s in listed["services"] if s["binary"] == "nova-compute"]
            if states and all(s == "up" for s in states):
                return ""
            why = f"computes {states}"
        except Exception as exc:
            why = f"{type(exc).__name__}: {str(exc)[:120]}"
        time.sleep(2)
    return why or "timed out"


def cleanup(user: User, made: list[str]) -> None:
    sess = user.session()
    for item in made:
        with contextlib.suppress(Exception):
            if item.startswith("image:"):
                sess.delete(user._url("image", f"/v2/images/{item.removeprefix('image:')}"))
            else:
                found = sess.get(user._url("compute", f"/servers?name=^{item}$"), headers=_COMPUTE).json()
                for server in found["servers"]:
                    sess.delete(user._url("compute", f"/servers/{server['id']}"), headers=_COMPUTE)
    made.clear()


def chosen(only: Sequence[str], operations: Sequence[str]) -> tuple[list[str], list[str]]:
    """The lab processes to stop and the operations to run; a UserError-worthy ValueError naming the
    valid ones for an unknown name. A service is named by the topology's node or the lab's process."""
    known = {**{node: process for process, node in SERVICES.items()}, **{p: p for p in SERVICES}}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise ValueError(
            f"unknown service(s) {', '.join(unknown)}: choose from {', '.join(SERVICES.values())}"
        )
    wrong = [name for name in operations if name not in OPERATIONS]
    if wrong:
        raise ValueError(f"unknown operation(s) {', '.join(wrong)}: choose from {', '.join(OPERATIONS)}")
    processes = [p for p in SERVICES if not only or p in {known[n] for n in only}]
    return processes, [op for op in OPERATIONS if not operations or op in operations]


def measure(
    lab: ImpactLab,
    processes: Sequence[str],
    operations: Sequence[str] = OPERATIONS,
    settings: Settings | None = None,
    say: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """The baseline, each of ``processes`` stopped in turn, the baseline again: the raw observations.

    Raises LabNotWhole (with what was observed so far) when operations fail with nothing stopped or
    the lab does not answer again after a pass; every stopped group is continued whatever happens.
    """
    settings = settings or Settings()
    user = User(lab, operations, settings)
    made: list[str] = []
    observed: dict[str, dict[str, Any]] = {}
    raw: dict[str, Any] = {"operations": list(user.operations), "services": observed,
                           "settings": vars(settings)}  # fmt: skip

    def one(label: str, process: str | None) -> None:
        victim = ""
        try:  # with nothing stopped: a failure here is the lab's, not the matrix's
            user.warm()
            if SERVER_DELETE in user.operations:
                victim = user.boot(f"impact-victim-{len(observed)}", settings.boot_timeout_s * 2,
                                   user.sessions[SERVER_LIST])  # fmt: skip
        except Exception as exc:
            raise LabNotWhole(
                f"before {label}, with nothing stopped: {type(exc).__name__}: {exc}", raw
            ) from exc
        base = {k: v["seconds"] for k, v in observed.get("baseline", {}).get("ops", {}).items()}
        pids = lab.groups(process) if process else []
        if process and not pids:
            raise LabNotWhole(f"no live process {process} in the lab's records", raw)
        say(f"{label}: SIGSTOP of process group(s) {pids}" if pids else f"{label}: nothing stopped")
        signal_groups(pids, signal.SIGSTOP)
        try:
            time.sleep(settings.settle_s)
            results = run_all(user, victim, made, base)
        finally:
            signal_groups(pids, signal.SIGCONT)
        back = whole(user, settings.whole_timeout_s)
        failed = [k for k, v in results.items() if v.result == "fails"]
        say(f"{label}: {len(results) - len(failed)} of {len(results)} operations worked"
            + (f" ({', '.join(failed)} failed)" if failed else "")
            + (f"; NOT whole again: {back}" if back else "; the lab is whole again"))  # fmt: skip
        observed[label] = {
            "process": process, "groups": pids, "whole_again": not back, "not_whole": back,
            "ops": {k: vars(v) for k, v in results.items()},
        }  # fmt: skip
        cleanup(user, made)
        with contextlib.suppress(Exception):
            if victim:
                user.delete(victim, settings.delete_timeout_s, user.session())
        if back:
            raise LabNotWhole(f"the lab is not whole after {label}: {back}", raw)

    try:
        try:
            user.prepare()
        except Exception as exc:
            raise LabNotWhole(f"preparing, with nothing stopped: {type(exc).__name__}: {exc}", raw) from exc
        one("baseline", None)
        if any(o["result"] == "fails" for o in observed["baseline"]["ops"].values()):
            say("the baseline has failures: once more (a loaded machine?)")
            one("baseline", None)
            failed = [k for k, o in observed["baseline"]["ops"].items() if o["result"] == "fails"]
            if failed:
                raise LabNotWhole(f"operations fail with nothing stopped: {', '.join(failed)}", raw)
        for process in processes:
            one(SERVICES[process], process)
        one("baseline-after", None)
    finally:
        with contextlib.suppress(Exception):
            if user.kept:
                user.delete(user.kept, settings.delete_timeout_s, user.session())
    raw["measured_at"] = time.time()
    return raw
