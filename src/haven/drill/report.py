"""What a drill reports: phase timings from the engine's events, safety counters from ground truth.

Called by the drill runner once the drill is over. Every counter about VMs is
read from the simulated cloud's ground truth (what really runs where), never
from haven's own bookkeeping.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.domain.ids import HostName, ServerId
from haven.recovery.workflows import (
    CONFIRM_VM,
    EVACUATE,
    FENCE,
    FORCE_DOWN,
    PLAN,
    REBOOT_VM,
    START_VM,
    STOP_VM,
    VM_CHECK,
)


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    start_s: float
    end_s: float


@dataclass(slots=True)
class DrillReport:
    scenario: str
    seed: int
    hosts: int
    vms: int
    injected: str
    ha_vms_affected: int
    ha_vms_recovered: int
    vms_lost: int
    vms_running_twice: int
    evacuated_unfenced: int
    false_evacuations: int
    double_evacuations: int  # unsafe: while an earlier one of the VM was in flight or had succeeded
    live_hosts_fenced: int  # hosts powered off by haven that had not failed
    unplaced: list[dict[str, Any]]
    phases: list[Phase]
    detect_s: float | None
    fence_s: float | None
    recover_s: float | None
    held_by_gate: bool
    verdict: str
    checks: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    simulated_s: float = 0.0
    wall_s: float = 0.0
    cpu_s_to_all_issued: float | None = None
    # Actions asked twice (the same action on one VM within one recovery, or an evacuation twice): 0.
    double_actions: int = 0
    vms_left_stopped: int = 0  # crash loops: VMs haven deliberately left stopped (not lost)
    services_disabled: int = 0  # compute services disabled or forced down (Nova's calls, ground truth)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EventRecorder:
    """An EventSink that keeps every event with the process CPU time it arrived at, then passes it on."""

    def __init__(self, forward: EventSink) -> None:
        self._forward = forward
        self.events: list[tuple[EngineEvent, float]] = []

    def __call__(self, event: EngineEvent) -> None:
        self.events.append((event, time.process_time()))
        self._forward(event)


def _step_events(events: Sequence[EngineEvent], kind: EventKind, step_kind: str) -> list[EngineEvent]:
    return [e for e in events if e.kind is kind and e.detail.get("kind") == step_kind]


def _span(name: str, starts: Sequence[float], ends: Sequence[float], origin: float) -> Phase | None:
    if not starts:
        return None
    end = max(ends) if ends else max(starts)
    return Phase(name, round(min(starts) - origin, 3), round(end - origin, 3))


def phases_of(events: Sequence[EngineEvent], fault_at: float) -> list[Phase]:
    """The recovery's phases in the order they happen, each from its first start to its last end."""

    def at(kind: EventKind) -> list[float]:
        return [e.at for e in events if e.kind is kind]

    def steps(step_kind: str, done_only: bool = False) -> tuple[list[float], list[float]]:
        started = [e.at for e in _step_events(events, EventKind.STEP_STARTED, step_kind)]
        finished = [
            e.at
            for e in _step_events(events, EventKind.STEP_FINISHED, step_kind)
            if not done_only or e.detail.get("state") == "done"
        ]
        return started, finished

    confirmed = at(EventKind.HOST_CONFIRMED_DEAD)
    held = at(EventKind.SEGMENT_HELD)
    evac_started, evac_finished = steps(EVACUATE, done_only=True)
    candidates = [
        _span("suspected", at(EventKind.HOST_SUSPECTED), confirmed or held, fault_at),
        _span("confirmed", confirmed, confirmed, fault_at),
        _span("held", held, held, fault_at),
        _span("isolated", at(EventKind.HOST_ISOLATED), at(EventKind.HOST_ISOLATED), fault_at),
        _span("fenced", *steps(FENCE), fault_at),
        _span("forced down", *steps(FORCE_DOWN), fault_at),
        _span("planned", *steps(PLAN), fault_at),
        _span("evacuating", evac_started, evac_started, fault_at),
        _span("verified", evac_finished, evac_finished, fault_at),
        _span("vm checked", *steps(VM_CHECK), fault_at),
        _span("vm stopped", *steps(STOP_VM), fault_at),
        _span("vm started", *steps(START_VM), fault_at),
        _span("vm rebooted", *steps(REBOOT_VM), fault_at),
        _span("vm confirmed running", *steps(CONFIRM_VM, done_only=True), fault_at),
    ]
    return sorted((p for p in candidates if p is not None), key=lambda p: (p.start_s, p.end_s))


def worst_time(
    events: Sequence[EngineEvent], kind: EventKind, hosts: Collection[HostName], origin: float
) -> float | None:
    """Seconds from ``origin`` to each host's first ``kind`` event, the worst of ``hosts``.

    The first, not the last: a host confirmed dead again later (its condition flapped after its
    recovery, seen once on the lab 1.5 s after every VM was verified) was detected the first time."""
    first = _first_per_host(events, kind, hosts)
    return round(max(first.values()) - origin, 3) if first else None


def _first_per_host(
    events: Sequence[EngineEvent], kind: EventKind, hosts: Collection[HostName]
) -> dict[HostName, float]:
    first: dict[HostName, float] = {}
    for e in events:
        if e.kind is kind and e.host is not None and e.host in hosts:
            first[e.host] = min(e.at, first.get(e.host, e.at))
    return first


def fence_time(events: Sequence[EngineEvent], hosts: Collection[HostName]) -> float | None:
    """Seconds from a host's (first) confirmed death to its fence confirmed, the worst of ``hosts``."""
    confirmed = _first_per_host(events, EventKind.HOST_CONFIRMED_DEAD, hosts)
    fenced = [
        e.at - confirmed[e.host]
        for e in events
        if e.kind is EventKind.STEP_FINISHED
        and e.detail.get("kind") == FENCE
        and e.detail.get("state") == "done"
        and e.host in confirmed
    ]
    return round(max(fenced), 3) if fenced else None


def recover_time(
    events: Sequence[EngineEvent], affected: Collection[ServerId], origin: float
) -> float | None:
    """Seconds from ``origin`` to the last of ``affected`` verified by haven; None unless all were."""
    verified = [
        e.at - origin
        for e in events
        if e.kind is EventKind.STEP_FINISHED
        and e.detail.get("kind") == EVACUATE
        and e.detail.get("state") == "done"
        and e.detail.get("subject") in affected
    ]
    return round(max(verified), 3) if len(verified) == len(affected) and verified else None
