"""The explorer's invariants, judged against the simulated cloud's ground truth (never haven's own records).

Called by haven.drill.explore_world after every event and every engine tick (``SafetyJudge.check``) and
once at the end of a schedule (``liveness``). Safety: no VM ever ran on two hosts; no evacuation from a
powered source; no host fenced that had not failed; no unsafe double evacuation; no exception escaping an
engine's tick (recorded by the runner). Liveness: every HA VM of a host that truly died (power loss or
hang) runs again within ``LIVENESS_BOUND_S`` (plus any control-plane outage), unless the engine could not
be asked to: its segment was held (a gate or safety hold alert), its host's BMC was in trouble (no fence
can be confirmed, so no evacuation is safe), its rebuild was made to fail, the host came back, or no
healthy host of its zone had room for it.

A host fenced while silent on every channel for its own reasons (its agent and nova-compute unheard on
every network it has), or observer-cut while no more than half of its zone was, is excused: to the
observer it is a dead host, and fencing it is correct STONITH (see haven.drill.explore_schedule).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from haven.cloud.sim import SimCloud
from haven.domain.cloud import ServerGroup
from haven.domain.ids import HostName, SegmentId, ServerId
from haven.domain.incidents import Alert, AlertKind

LIVENESS_BOUND_S = 600.0
FENCE_MARGIN_S = 1.0  # a power-off lands this soon after its request (the BMC's 0.3 s, rounded up)

RAN_TWICE = "vm_ran_twice"
POWERED_SOURCE = "evacuated_from_powered_source"
LIVE_FENCED = "live_host_fenced"
DOUBLE_EVACUATION = "unsafe_double_evacuation"
ENGINE_CRASH = "engine_crash"
ENGINE_STALLED = "engine_stalled"
NOT_RECOVERED = "vm_not_recovered"
INVARIANTS = (
    RAN_TWICE,
    POWERED_SOURCE,
    LIVE_FENCED,
    DOUBLE_EVACUATION,
    ENGINE_CRASH,
    ENGINE_STALLED,
    NOT_RECOVERED,
)
# A hold alert excuses its segment's VMs (SAFETY_HOLD: the safety policy's, where the engine has one).
HOLD_KINDS = frozenset(k for k in AlertKind if k.value in ("gate_hold", "safety_hold"))


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    at: float  # seconds after the fault window opened
    detail: str

    def to_spec(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "at": round(self.at, 3), "detail": self.detail}


@dataclass(slots=True)
class Ledger:
    """What the runner saw happen, in ground truth, for the judge's excuses."""

    lost: dict[ServerId, tuple[HostName, float]] = field(default_factory=dict)  # VM -> host that died, when
    room_at_loss: dict[ServerId, bool] = field(default_factory=dict)
    revived: dict[HostName, float] = field(default_factory=dict)  # powered on again after dying
    bmc_trouble: set[HostName] = field(default_factory=set)  # unreachable, slow, stale or observer-cut
    bmc_delay_s: dict[HostName, float] = field(default_factory=dict)
    rebuild_failed: set[ServerId] = field(default_factory=set)
    outage_s: float = 0.0
    last_silent: dict[HostName, float] = field(default_factory=dict)  # last seen indistinguishable from dead


def looks_dead(cloud: SimCloud, host: HostName) -> bool:
    """Whether the observer cannot tell ``host`` from a dead host (ground truth, read now)."""
    h = cloud.sim_host(host)
    if getattr(h, "network_failed", False) or h.booting_until is not None:
        return True  # a booting host says nothing on any channel either
    heartbeats = h.agent_running and (h.mgmt_up or (h.second_up and h.has_second_network))
    reports = h.nova_compute_running and h.mgmt_up
    if not heartbeats and not reports:
        return True  # silent on every channel for its own reasons
    if h.observer_cut:
        zone = [cloud.sim_host(x) for x in cloud.host_names() if cloud.sim_host(x).zone == h.zone]
        return 2 * sum(1 for x in zone if x.observer_cut) <= len(zone)
    return False


class SafetyJudge:
    """Checks the safety invariants; each violation is reported once."""

    def __init__(self, cloud: SimCloud, origin: float, ledger: Ledger) -> None:
        self._cloud, self._origin, self._ledger = cloud, origin, ledger
        self._evacuations = 0
        self._fenced = 0
        self._twice: set[ServerId] = set()
        self._doubles = 0

    def note_silence(self, hosts: Iterable[HostName]) -> None:
        """Remember which of ``hosts`` look dead now (a later fence of them is excused)."""
        now = self._cloud.clock.now()
        for host in hosts:
            if looks_dead(self._cloud, host):
                self._ledger.last_silent[host] = now

    def check(self) -> list[Violation]:
        cloud = self._cloud
        at = cloud.clock.now() - self._origin
        found: list[Violation] = []
        for sid in cloud.servers_running_twice():
            if sid not in self._twice:
                self._twice.add(sid)
                found.append(Violation(RAN_TWICE, at, f"{cloud.sim_server(sid).name} ran on two hosts"))
        for e in cloud.evacuations[self._evacuations :]:
            if e.source_powered:
                name = cloud.sim_server(e.server_id).name
                found.append(
                    Violation(POWERED_SOURCE, at, f"{name} evacuated from {e.source}, still powered")
                )
        self._evacuations = len(cloud.evacuations)
        for host in cloud.live_hosts_fenced[self._fenced :]:
            silent_at = self._ledger.last_silent.get(host)
            margin = FENCE_MARGIN_S + self._ledger.bmc_delay_s.get(host, 0.0)
            if silent_at is None or cloud.clock.now() - silent_at > margin:
                found.append(Violation(LIVE_FENCED, at, f"{host} powered off by a fence, not failed"))
        self._fenced = len(cloud.live_hosts_fenced)
        unsafe = getattr(cloud, "unsafe_double_evacuations", None)
        if unsafe is not None:  # TODO(sim): always, once the simulator's ground truth has it
            doubles = list(unsafe())
            for d in doubles[self._doubles :]:
                what = f"{cloud.sim_server(d.server_id).name} from {d.source} to {d.target}"
                found.append(Violation(DOUBLE_EVACUATION, at, f"evacuated again while unsafe: {what}"))
            self._doubles = len(doubles)
        return found


def has_room(
    cloud: SimCloud,
    server_id: ServerId,
    zone: str,
    groups: Mapping[ServerId, ServerGroup],
    exclude: Collection[HostName] = (),
) -> bool:
    """Whether a host of ``zone``, healthy in every respect, has room for the server (anti-affinity kept)."""
    server = cloud.sim_server(server_id)
    group = groups.get(server_id)
    taken = {cloud.sim_server(m).host for m in group.members if m != server_id} if group else set()
    for name in cloud.host_names():
        h = cloud.sim_host(name)
        if h.zone != zone or name in exclude or name in taken or name == server.host:
            continue
        healthy = (
            h.powered and not h.hung and h.booting_until is None and not h.observer_cut
            and h.agent_running and h.nova_compute_running and h.mgmt_up and not h.forced_down
            and h.service_enabled and (h.second_up or not h.has_second_network)
            and not getattr(h, "network_failed", False)
        )  # fmt: skip
        if healthy and h.capacity.admits(server.flavor, h.used_vcpus, h.used_ram_mb, h.used_disk_gb):
            return True
    return False


def held_segments(
    alerts: Iterable[Alert], segment_of: Mapping[HostName, SegmentId]
) -> tuple[set[SegmentId], bool]:
    """Segments a hold alert named (a host's alert counts for its segment); whether one held everything."""
    held: set[SegmentId] = set()
    everything = False
    for a in alerts:
        if a.kind not in HOLD_KINDS:
            continue
        if a.segment_id is not None:
            held.add(a.segment_id)
        elif a.host is not None and a.host in segment_of:
            held.add(segment_of[a.host])
        else:
            everything = True
    return held, everything


def liveness(
    cloud: SimCloud,
    ledger: Ledger,
    origin: float,
    alerts: Iterable[Alert],
    segment_of: Mapping[HostName, SegmentId],
    groups: Mapping[ServerId, ServerGroup],
) -> list[Violation]:
    """HA VMs of truly dead hosts that should run again by now and do not."""
    now = cloud.clock.now()
    held, everything = held_segments(alerts, segment_of)
    found = []
    for sid, (host, died_at) in sorted(ledger.lost.items(), key=lambda kv: kv[1][1]):
        server = cloud.sim_server(sid)
        if not server.metadata or cloud.hosts_running(sid):
            continue
        if now - died_at < LIVENESS_BOUND_S + ledger.outage_s:
            continue  # not due yet
        revived = ledger.revived.get(host)
        if revived is not None and revived >= died_at:
            continue
        hosts = {host, server.host}  # where it died, and where Nova has it now (a target that died too)
        if everything or any(segment_of.get(h) in held or h in ledger.bmc_trouble for h in hosts):
            continue
        if sid in ledger.rebuild_failed or not ledger.room_at_loss.get(sid, True):
            continue
        if not has_room(cloud, sid, cloud.sim_host(host).zone, groups, exclude=(host,)):
            continue
        found.append(
            Violation(
                NOT_RECOVERED,
                now - origin,
                f"{server.name} (HA) of {host}, dead since +{died_at - origin:.1f} s, not running "
                f"({server.vm_state.value} on {server.host})",
            )
        )
    return found
