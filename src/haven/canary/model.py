"""A canary boot's vocabulary and its pure decisions: phases seen, the verdict, the symptom to explain.

Called by haven.canary.runner (which polls the cloud and commits each run) and by the CLI, metrics and
tests that read runs back. No I/O and no clock: every time arrives as an argument.

A canary is one test boot in one availability zone: a tiny flavor, boot, wait for ACTIVE, delete, wait
until the server is gone. Each phase is the first moment its state was *seen* by polling Nova (so its
resolution is the poll interval), measured from the boot request:

    accepted   Nova's API answered the boot request (202)
    scheduled  the server has a host, or its task_state left ``scheduling``
    image      the compute reached ``spawning`` (block devices, network and image are prepared;
               with drivers that fetch the image while spawning, as libvirt does, the download is
               part of ``spawned``)
    spawned    the hypervisor reports the guest running (power_state 1)
    active     Nova says ACTIVE
    deleted    after the delete request, Nova no longer knows the server (404)

A phase skipped between two polls gets the time of the next phase seen (it took no longer than that).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from haven.canary.slow import SlowSettings
from haven.domain.canary import RUNNING, Found, ServerView
from haven.topology import SERVER_BOOT, phase_of_fault

__all__ = ["RUNNING", "Found", "ServerView"]  # re-exported: the port's types live in haven.domain

CANARY_PREFIX = "haven-canary-"
CANARY_TAG = "haven-canary"  # the metadata key every canary server carries (its value: haven's tag)


class Phase(StrEnum):
    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    IMAGE = "image"
    SPAWNED = "spawned"
    ACTIVE = "active"
    DELETED = "deleted"


BOOT_PHASES = (Phase.ACCEPTED, Phase.SCHEDULED, Phase.IMAGE, Phase.SPAWNED, Phase.ACTIVE)
PHASES = (*BOOT_PHASES, Phase.DELETED)

# What the cloud is doing while a phase is awaited: the topology's phase (haven.topology.PHASES) a
# failure or a stall there points at. Before ``spawning`` the compute prepares block devices and the image
# and binds ports; a port binding fault names its own phase (phase_of_fault) before this applies.
WORK_OF: Mapping[Phase, str] = MappingProxyType(
    {
        Phase.ACCEPTED: "api",
        Phase.SCHEDULED: "scheduling",
        Phase.IMAGE: "image download",
        Phase.SPAWNED: "spawn",
        Phase.ACTIVE: "spawn",
        Phase.DELETED: "spawn",
    }
)
# Nova's task states during a boot, and the phase they show was reached.
_TASK_REACHED: Mapping[str, Phase] = MappingProxyType(
    {
        "block_device_mapping": Phase.SCHEDULED,
        "networking": Phase.SCHEDULED,
        "spawning": Phase.IMAGE,
    }
)


class RunState(StrEnum):
    BOOTING = "booting"  # intent committed: a server with this name may exist
    DELETING = "deleting"  # the delete is asked for (or about to be)
    DONE = "done"
    ABANDONED = "abandoned"  # an engine stopped mid-run; its server was cleaned by a later run


class Outcome(StrEnum):
    OK = "ok"
    SLOW = "slow"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class CanarySettings:
    zones: tuple[str, ...] = ()  # empty: every zone the cloud's hosts are in
    flavor: str = ""
    image: str = ""
    network: str = "none"  # "none" (no port), "auto", or a network's id
    tag: str = "haven"  # several havens on one cloud: each cleans only its own canaries
    interval_s: float = 300.0
    poll_s: float = 1.0
    boot_timeout_s: float = 300.0
    delete_timeout_s: float = 120.0
    slow_s: float = 120.0  # a boot to ACTIVE slower than this is a symptom
    probes: bool = True  # the cheap API probes (token, server list, endpoints, Nova's services) per round
    endpoint_timeout_s: float = 5.0
    slow: SlowSettings = field(default_factory=SlowSettings)  # a probe that passed far slower than usual


@dataclass(frozen=True, slots=True)
class CanaryRun:
    """One canary boot as haven persists it: the intent first, then what was seen, then the verdict."""

    id: str
    zone: str
    server_name: str
    started_at: float
    state: RunState = RunState.BOOTING
    server_id: str | None = None
    phases: Mapping[str, float] = field(default_factory=dict)  # Phase → seconds since started_at
    outcome: Outcome | None = None
    failed_in: str | None = None  # the Phase awaited when it failed or was slowest
    error: str = ""
    finished_at: float | None = None
    host: str | None = None
    failed_at: float | None = None  # when the failure was seen (the symptom's time)

    def __post_init__(self) -> None:
        object.__setattr__(self, "phases", MappingProxyType(dict(self.phases)))


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One cheap API probe (``token``: a token issued; ``server-list``: Nova's server list)."""

    name: str
    at: float
    ok: bool
    seconds: float
    error: str = ""
    slow: str = ""  # passed, but far slower than its own baseline (haven.canary.slow), in words


def seen(phases: Mapping[str, float], view: ServerView | None, elapsed: float) -> dict[str, float]:
    """``phases`` with every phase ``view`` shows reached added at ``elapsed`` (earlier phases filled)."""
    reached: Phase | None = None
    if view is None:
        reached = Phase.DELETED
    elif view.status == "ACTIVE":
        reached = Phase.ACTIVE
    elif view.power_state == RUNNING:
        reached = Phase.SPAWNED
    elif view.task_state is not None and view.task_state in _TASK_REACHED:
        reached = _TASK_REACHED[view.task_state]
    elif view.host:
        reached = Phase.SCHEDULED
    result = dict(phases)
    if reached is None:
        return result
    limit = PHASES.index(reached)
    for phase in PHASES[: limit + 1]:
        if phase is Phase.DELETED and view is not None:
            continue
        result.setdefault(phase.value, elapsed)
    return result


def awaited(phases: Mapping[str, float]) -> Phase:
    """The first boot phase not reached yet (ACTIVE once all are)."""
    return next((p for p in BOOT_PHASES if p.value not in phases), Phase.ACTIVE)


def durations(phases: Mapping[str, float]) -> dict[str, float]:
    """Each reached phase's own duration: from the previous phase reached (or the request) to it."""
    result: dict[str, float] = {}
    before = 0.0
    for phase in PHASES:
        if phase.value in phases:
            at = phases[phase.value]
            result[phase.value] = max(0.0, at - before)
            before = at
    return result


def slowest(phases: Mapping[str, float], history: Sequence[Mapping[str, float]]) -> str:
    """The boot phase that most exceeds its own median over ``history`` (or the longest, without one)."""
    mine = durations(phases)
    past = [durations(h) for h in history]
    best, score = Phase.ACCEPTED.value, -1.0
    for phase in BOOT_PHASES:
        took = mine.get(phase.value)
        if took is None:
            continue
        before = sorted(d[phase.value] for d in past if phase.value in d)
        usual = before[len(before) // 2] if len(before) >= 3 else 0.0
        excess = took - usual
        if excess > score:
            best, score = phase.value, excess
    return best


# An API's error that names the dependency it failed on (Nova's 500 carries the exception's class): that
# dependency is the one to blame, not only the API that answered.
_NAMED_CAUSES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"DBConnectionError|DBConnectionFailure|Lost connection to (MySQL|MariaDB)|"
                r"Can't connect to (MySQL|MariaDB)", re.I), "mariadb"),
    (re.compile(r"MessagingTimeout|AMQPConnectionError|MessageDeliveryFailure", re.I), "rabbitmq"),
    (re.compile(r"GlanceConnectionFailed", re.I), "glance-api"),
    (re.compile(r"PlacementAPIConnectFailure", re.I), "placement-api"),
)  # fmt: skip


NAMED_NODES = tuple(dict.fromkeys(node for _pattern, node in _NAMED_CAUSES))


def named_causes(error: str) -> tuple[str, ...]:
    """The topology nodes an API error names as what it failed on (``DBConnectionError`` → mariadb)."""
    return tuple(node for pattern, node in _NAMED_CAUSES if pattern.search(error))


def failure_phase(run: CanaryRun) -> str | None:
    """The topology phase (haven.topology.PHASES) a failed or slow run points at."""
    if run.outcome is Outcome.FAILED and run.error:
        by_fault = phase_of_fault(run.error.split(":", 1)[0], run.error)
        if by_fault is not None:
            return by_fault
    if run.failed_in is None:
        return None
    return WORK_OF[Phase(run.failed_in)]


def symptom_words(run: CanaryRun, settings: CanarySettings) -> str:
    """What the symptom says: "canary boot in zone nova failed (NoValidHost: ...)"."""
    where = f"canary boot in zone {run.zone}"
    if run.outcome is Outcome.SLOW:
        total = run.phases.get(Phase.ACTIVE.value, 0.0)
        return (
            f"{where} slow: ACTIVE after {total:.1f} s (over {settings.slow_s:g} s), slowest {run.failed_in}"
        )
    cause = f" ({run.error})" if run.error else ""
    return f"{where} failed waiting for {run.failed_in}{cause}"


SYMPTOM_NODE = SERVER_BOOT


def run_json(run: CanaryRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "zone": run.zone,
        "server_name": run.server_name,
        "server_id": run.server_id,
        "host": run.host,
        "state": run.state.value,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "outcome": None if run.outcome is None else run.outcome.value,
        "failed_in": run.failed_in,
        "error": run.error,
        "failed_at": run.failed_at,
        "phases": dict(run.phases),
        "durations": durations(run.phases),
    }


def run_from_json(data: Mapping[str, Any]) -> CanaryRun:
    return CanaryRun(
        id=str(data["id"]),
        zone=str(data["zone"]),
        server_name=str(data["server_name"]),
        started_at=float(data["started_at"]),
        state=RunState(data["state"]),
        server_id=data.get("server_id"),
        phases={str(k): float(v) for k, v in (data.get("phases") or {}).items()},
        outcome=None if data.get("outcome") is None else Outcome(data["outcome"]),
        failed_in=data.get("failed_in"),
        error=str(data.get("error") or ""),
        finished_at=data.get("finished_at"),
        host=data.get("host"),
        failed_at=data.get("failed_at"),
    )


def probe_json(probe: ProbeResult) -> dict[str, Any]:
    return {
        "name": probe.name,
        "at": probe.at,
        "ok": probe.ok,
        "seconds": probe.seconds,
        "error": probe.error,
        "slow": probe.slow,
    }
