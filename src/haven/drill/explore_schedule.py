"""Fault schedules for the explorer: a small random cloud and timed fault events, as a replayable spec.

Called by haven.drill.explore (generate, shrink, replay) and by the tests. A schedule is plain data:
``Schedule.to_spec()`` is JSON that ``Schedule.from_spec`` reads back, so a failing schedule printed by
``haven explore`` can be pasted into a regression test. Generation is deterministic per seed.

Hosts are named by number (``3`` is ``compute-00003``), VMs by their rank among the cloud's HA VMs,
so a spec reads without ids and a smaller cloud (when shrinking) simply drops the events it cannot hold.

Fairness choices (what the engine cannot be asked to tell apart):
- An observer-side cut with the BMCs still answering covers more than half of one zone (one segment),
  all cut within ``FAIR_STAGGER_S`` (less than the detector's grace period): a single host silent on
  every channel while its BMC answers is indistinguishable from a dead host, and fencing it is correct
  STONITH. With the BMCs unreachable a cut may cover any number of hosts, staggered over longer: the
  engine cannot fence them, so it must not evacuate them.
- The management and second networks are cut on one host at different times (both at once is a host
  cut off on every channel, again indistinguishable); the judge excuses such overlaps anyway, since
  shrinking may create them.
- A false report targets a live host, an isolated one (management cut) or a merely suspect one
  (reported within the grace period of a management cut).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from haven.domain.errors import UserError
from haven.domain.ids import HostName

WINDOW_S = 180.0  # faults fall within this many seconds after the warm-up
FAIR_STAGGER_S = 2.5  # an observer cut with BMCs answering reaches all its hosts within this
MAX_HOSTS, MAX_VMS, MAX_ZONES, MAX_EVENTS = 40, 400, 4, 200
NOVA_CALLS = (
    "evacuate", "force_down", "disable_service", "enable_service", "reset_state",
    "stop_server", "start_server", "reboot_server", "*",
)  # fmt: skip

# Every event kind, with the keys of its arguments (beyond ``at``, ``kind`` and ``hosts``).
KINDS: Mapping[str, tuple[str, ...]] = {
    "power_loss": (),
    "power_on": (),  # undo: power back on through the BMC
    "hang": (),
    "mgmt_cut": ("cut",),
    "second_cut": ("cut",),
    "nic_fail": ("failed",),  # the host's own NICs die: a real host failure
    "observer_cut": ("cut", "bmc_reachable"),
    "bmc": ("reachable", "apply_delay_s", "stale_for_s"),
    "nova_error": ("call", "count", "applied", "delay_s"),
    "rebuild_fail": ("vm",),
    "outage": ("down",),
    "clock_skew": ("skew_s",),
    "agent_crash": ("crashed",),
    "compute_crash": ("crashed",),
    "engine_crash": ("down_s",),
    "commit_crash": ("after",),
    "leader_change": ("stale_s",),
    "report": ("truth",),  # an external COMPUTE_HOST report; truth: dead, live, isolated or suspect
}


def host_name(number: int) -> HostName:
    return HostName(f"compute-{number:05d}")


@dataclass(frozen=True, slots=True)
class FaultEvent:
    at: float  # seconds after the fault window opens
    kind: str
    hosts: tuple[int, ...] = ()
    args: tuple[tuple[str, Any], ...] = ()  # kind-specific, in KINDS order

    def arg(self, key: str, default: Any = None) -> Any:
        return dict(self.args).get(key, default)

    def to_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"at": round(self.at, 3), "kind": self.kind}
        if self.hosts:
            spec["hosts"] = list(self.hosts)
        spec.update(self.args)
        return spec

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FaultEvent:
        kind = str(spec.get("kind"))
        if kind not in KINDS:
            raise UserError(f"unknown fault kind {kind!r}", f"use one of: {', '.join(KINDS)}")
        extra = set(spec) - {"at", "kind", "hosts", *KINDS[kind]}
        if extra:
            raise UserError(f"fault {kind!r} has unknown keys {sorted(extra)}", f"keys: {KINDS[kind]}")
        args = tuple((k, spec[k]) for k in KINDS[kind] if k in spec)
        return cls(float(spec["at"]), kind, tuple(int(h) for h in spec.get("hosts", ())), args)


def ev(at: float, kind: str, hosts: Sequence[int] = (), **args: Any) -> FaultEvent:
    """A FaultEvent, its arguments given by keyword."""
    return FaultEvent(at, kind, tuple(hosts), tuple((k, args[k]) for k in KINDS[kind] if k in args))


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int  # the cloud's seed (build_cloud)
    hosts: int = 10
    zones: int = 1
    vms: int = 60
    ha_fraction: float = 0.5
    second_network: bool = True
    engines: int = 1  # 2: two engines over one store under a controllable leadership
    events: tuple[FaultEvent, ...] = field(default=())

    def validate(self) -> None:
        if not 2 <= self.hosts <= MAX_HOSTS:
            raise UserError(f"a schedule's cloud has 2 to {MAX_HOSTS} hosts, got {self.hosts}")
        if not 1 <= self.zones <= min(MAX_ZONES, self.hosts):
            raise UserError(f"a schedule's cloud has 1 to {MAX_ZONES} zones (at most one per host)")
        if not 0 <= self.vms <= min(MAX_VMS, 20 * self.hosts):
            raise UserError(f"a schedule's cloud has 0 to {MAX_VMS} VMs, about 20 per host at most")
        if self.engines not in (1, 2):
            raise UserError(f"a schedule runs 1 or 2 engines, got {self.engines}")
        if len(self.events) > MAX_EVENTS:
            raise UserError(f"a schedule has at most {MAX_EVENTS} events, got {len(self.events)}")
        for e in self.events:
            if not 0.0 <= e.at <= 3600.0 or any(not 1 <= h <= self.hosts for h in e.hosts):
                raise UserError(
                    f"event {e.to_spec()} is outside the schedule (0-3600 s, hosts 1-{self.hosts})"
                )

    def to_spec(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "hosts": self.hosts, "zones": self.zones, "vms": self.vms,
            "ha_fraction": self.ha_fraction, "second_network": self.second_network,
            "engines": self.engines, "events": [e.to_spec() for e in self.events],
        }  # fmt: skip

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Schedule:
        try:
            schedule = cls(
                seed=int(spec["seed"]),
                hosts=int(spec.get("hosts", 10)),
                zones=int(spec.get("zones", 1)),
                vms=int(spec.get("vms", 60)),
                ha_fraction=float(spec.get("ha_fraction", 0.5)),
                second_network=bool(spec.get("second_network", True)),
                engines=int(spec.get("engines", 1)),
                events=tuple(sorted((FaultEvent.from_spec(e) for e in spec.get("events", ())), key=_when)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"not a schedule spec: {exc!r}", "see Schedule.to_spec() for the shape") from exc
        schedule.validate()
        return schedule

    def with_events(self, events: Sequence[FaultEvent]) -> Schedule:
        return replace(self, events=tuple(sorted(events, key=_when)))


def _when(e: FaultEvent) -> float:
    return e.at


def zone_hosts(hosts: int, zones: int) -> list[list[int]]:
    """Host numbers per zone, as haven.cloud.sim.build_cloud lays them out."""
    out, number = [], 0
    for z in range(zones):
        count = hosts // zones + (1 if z < hosts % zones else 0)
        out.append(list(range(number + 1, number + count + 1)))
        number += count
    return out


# ---- generation -------------------------------------------------------------------------------


def generate(seed: int) -> Schedule:
    """A random schedule: a small cloud and one to five incidents, each a fault and perhaps its undo."""
    rng = random.Random(seed)
    hosts = rng.randint(8, 12)
    zones = rng.choice((1, 1, 2))
    shape = Schedule(
        seed=rng.randrange(1 << 30),
        hosts=hosts,
        zones=zones,
        vms=rng.randint(40, 80),
        ha_fraction=rng.choice((0.3, 0.5, 0.7)),
        second_network=rng.random() < 0.85,
    )
    events: list[FaultEvent] = []
    for _ in range(rng.randint(1, 5)):
        at = round(rng.uniform(0.0, WINDOW_S), 1)
        events += INCIDENTS[rng.choice(_INCIDENT_NAMES)](rng, at, shape)
    engines = 2 if any(e.kind == "leader_change" for e in events) else 1
    return replace(shape, engines=engines).with_events(events)


Incident = Any  # Callable[[random.Random, float, Schedule], list[FaultEvent]]


def _later(rng: random.Random, at: float, low: float, high: float) -> float:
    return max(0.0, round(at + rng.uniform(low, high), 1))


def _host(rng: random.Random, s: Schedule) -> int:
    return rng.randint(1, s.hosts)


def _power_loss(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    h = _host(rng, s)
    out = [ev(at, "power_loss", [h])]
    if rng.random() < 0.3:
        out.append(ev(_later(rng, at, 20, 300), "power_on", [h]))
    return out


def _hang(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    return [ev(at, "hang", [_host(rng, s)])]


def _net_cut(kind: str) -> Incident:
    def make(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
        h = _host(rng, s)
        out = [ev(at, kind, [h], cut=True)]
        if rng.random() < 0.7:
            out.append(ev(_later(rng, at, 5, 120), kind, [h], cut=False))
        return out

    return make


def _nic_fail(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    h = _host(rng, s)
    out = [ev(at, "nic_fail", [h], failed=True)]
    if rng.random() < 0.5:
        out.append(ev(_later(rng, at, 10, 200), "nic_fail", [h], failed=False))
    return out


def _observer_cut(staggered: bool) -> Incident:
    def make(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
        zone = rng.choice(zone_hosts(s.hosts, s.zones))
        bmc_reachable = rng.random() < 0.5
        low = len(zone) // 2 + 1 if bmc_reachable else 1  # more than half: see the module docstring
        cut = sorted(rng.sample(zone, rng.randint(low, len(zone))))
        spread = (FAIR_STAGGER_S if bmc_reachable else 30.0) if staggered else 0.0
        times = sorted(round(at + rng.uniform(0, spread), 2) for _ in cut) if staggered else [at] * len(cut)
        out = [
            ev(t, "observer_cut", [h], cut=True, bmc_reachable=bmc_reachable)
            for t, h in zip(times, cut, strict=True)
        ]
        if not staggered:
            out = [ev(at, "observer_cut", cut, cut=True, bmc_reachable=bmc_reachable)]
        if rng.random() < 0.8:
            out.append(ev(_later(rng, max(times), 10, 150), "observer_cut", cut, cut=False))
        return out

    return make


def _bmc(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    h = _host(rng, s)
    trouble = rng.choice(("unreachable", "slow", "stale"))
    if trouble == "unreachable":
        fault = ev(at, "bmc", [h], reachable=False)
    elif trouble == "slow":
        fault = ev(at, "bmc", [h], reachable=True, apply_delay_s=round(rng.uniform(2, 60), 1))
    else:
        fault = ev(at, "bmc", [h], reachable=True, stale_for_s=round(rng.uniform(2, 60), 1))
    out = [fault]
    if rng.random() < 0.5:  # and the host fails while its BMC is in trouble
        out.append(ev(_later(rng, at, 0, 20), rng.choice(("power_loss", "hang")), [h]))
    if rng.random() < 0.7:
        out.append(ev(_later(rng, at, 10, 200), "bmc", [h], reachable=True))
    return out


def _nova_error(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    call = rng.choice(NOVA_CALLS)
    fault = ev(
        at, "nova_error", call=call, count=rng.randint(1, 3),
        applied=rng.random() < 0.5, delay_s=rng.choice((1.0, 5.0, 30.0)),
    )  # fmt: skip
    return [fault, ev(_later(rng, at, 0, 10), "power_loss", [_host(rng, s)])]  # calls are made in recoveries


def _rebuild_fail(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    h = _host(rng, s)
    return [ev(at, "rebuild_fail", vm=rng.randrange(10)), ev(_later(rng, at, 0, 5), "power_loss", [h])]


def _outage(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    out = [ev(at, "outage", down=True), ev(_later(rng, at, 5, 90), "outage", down=False)]
    if rng.random() < 0.5:
        out.append(ev(_later(rng, at, -20, 20), "power_loss", [_host(rng, s)]))
    return out


def _clock_skew(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    return [ev(at, "clock_skew", skew_s=round(rng.uniform(-60, 60), 1))]


def _process_crash(kind: str) -> Incident:
    def make(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
        h = _host(rng, s)
        out = [ev(at, kind, [h], crashed=True)]
        if rng.random() < 0.6:
            out.append(ev(_later(rng, at, 5, 200), kind, [h], crashed=False))
        return out

    return make


def _engine_crash(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    out = [ev(at, "engine_crash", down_s=rng.choice((0.0, 0.0, 5.0, 20.0)))]
    if rng.random() < 0.5:  # crash in the middle of a recovery
        out.insert(0, ev(_later(rng, at, -30, 0), "power_loss", [_host(rng, s)]))
    return out


def _commit_crash(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    return [
        ev(at, "power_loss", [_host(rng, s)]),
        ev(_later(rng, at, 0, 5), "commit_crash", after=rng.randint(1, 12)),
    ]


def _leader_change(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    out = [ev(at, "leader_change", stale_s=rng.choice((0.0, 0.0, 3.0, 15.0)))]
    if rng.random() < 0.6:
        out.insert(0, ev(_later(rng, at, -30, 0), "power_loss", [_host(rng, s)]))
    return out


def _true_report(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    h = _host(rng, s)
    return [
        ev(at, rng.choice(("power_loss", "hang")), [h]),
        ev(_later(rng, at, 0, 20), "report", [h], truth="dead"),
    ]


def _false_report(rng: random.Random, at: float, s: Schedule) -> list[FaultEvent]:
    h = _host(rng, s)
    truth = rng.choice(("live", "isolated", "suspect"))
    if truth == "live":
        return [ev(at, "report", [h], truth="live")]
    after = rng.uniform(1.6, 2.9) if truth == "suspect" else rng.uniform(5, 60)
    return [
        ev(at, "mgmt_cut", [h], cut=True),
        ev(round(at + after, 2), "report", [h], truth=truth),
        ev(_later(rng, at + after, 10, 120), "mgmt_cut", [h], cut=False),
    ]


INCIDENTS: Mapping[str, Incident] = {
    "power_loss": _power_loss,
    "hang": _hang,
    "mgmt_cut": _net_cut("mgmt_cut"),
    "second_cut": _net_cut("second_cut"),
    "nic_fail": _nic_fail,
    "observer_cut": _observer_cut(staggered=False),
    "observer_cut_staggered": _observer_cut(staggered=True),
    "bmc": _bmc,
    "nova_error": _nova_error,
    "rebuild_fail": _rebuild_fail,
    "outage": _outage,
    "clock_skew": _clock_skew,
    "agent_crash": _process_crash("agent_crash"),
    "compute_crash": _process_crash("compute_crash"),
    "engine_crash": _engine_crash,
    "commit_crash": _commit_crash,
    "leader_change": _leader_change,
    "true_report": _true_report,
    "false_report": _false_report,
}
_INCIDENT_NAMES = tuple(INCIDENTS)
