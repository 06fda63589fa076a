"""The named failures a drill can inject into the simulated cloud, and what each expects of haven.

Called by the drill runner: a scenario shapes the cloud it needs, injects its
fault at the chosen instant, may schedule a follow-up (a process coming back),
and says which outcome counts as right.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from haven.cloud.sim import CloudSpec, SimCloud
from haven.cloud.sim.builder import SimTopology
from haven.domain.cloud import HA_ENABLED_KEY
from haven.domain.errors import UserError
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import AlertKind, RecoveryMethod


class Expect(StrEnum):
    RECOVERY = "recovery"  # the HA VMs of dead hosts come back elsewhere
    HOLD = "hold"  # haven must not evacuate: the host is isolated or the observer is the fault
    SERVICE_CYCLE = "service_cycle"  # a compute service disabled, then re-enabled, nothing evacuated
    VM_RESTART = "vm_restart"  # a failed guest is restarted (or reset) in place, once
    CRASH_LOOP = "crash_loop"  # restarted N times, then left stopped with an alert (verdict "held")
    AGENT_ALERT = "agent_alert"  # haven's agent is silent, nova up: an alert, no evacuation ("held")
    # The control plane failed (every nova-compute down, hosts alive): nothing fenced, evacuated,
    # disabled or forced down, and an alert says the control plane is the likely fault ("held").
    CONTROL_PLANE = "control_plane"


@dataclass(frozen=True, slots=True)
class Injection:
    failed_hosts: tuple[HostName, ...]  # hosts that really died (ground truth for the counters)
    touched_hosts: tuple[HostName, ...]  # every host the fault touched
    description: str
    follow_up_after_s: float | None = None
    follow_up: Callable[[], None] | None = None
    vms: tuple[ServerId, ...] = ()  # VMs the fault hit directly (guest faults); none for host faults
    # External COMPUTE_HOST notifications (as Masakari's hostmonitor posts them), submitted to the
    # engine ``reports_after_s`` after the fault.
    reports: tuple[tuple[HostName, Mapping[str, Any]], ...] = ()
    reports_after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    expect: Expect
    inject: Callable[[SimCloud, SimTopology, random.Random], Injection]
    shape: Callable[[CloudSpec], CloudSpec] = lambda spec: spec
    recovery_method: RecoveryMethod = RecoveryMethod.AUTO
    observe_for_s: float = 0.0  # keep watching this long after the fault even if all looks quiet
    needs_alert: AlertKind | None = None  # an alert of this kind must have been raised


def _usable_hosts(cloud: SimCloud, topology: SimTopology) -> list[HostName]:
    return [h for h in cloud.host_names() if h not in topology.reserved]


def _pick_host(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> HostName:
    return rng.choice(sorted(_usable_hosts(cloud, topology)))


def _host_power_loss(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    victim = _pick_host(cloud, topology, rng)
    cloud.fail_power(victim)
    return Injection((victim,), (victim,), f"power lost on {victim}")


def _host_hang(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    victim = _pick_host(cloud, topology, rng)
    cloud.hang(victim)
    return Injection((victim,), (victim,), f"{victim} hung: powered on, silent on every channel")


def _no_capacity(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    """Squeeze the victim's zone so its survivors have room for about half of its VMs, then kill it."""
    victim = _pick_host(cloud, topology, rng)
    zone = cloud.sim_host(victim).zone
    survivors = [h for h in topology.zones[zone] if h != victim and h not in topology.reserved]
    demand = sum(cloud.sim_server(s.id).flavor.ram_mb for s in cloud.servers_on(victim))
    room = {h: 0 for h in survivors}
    for k in range(max(1, demand // 2 // 2048)):  # room in 2 GB pieces: small VMs fit, big ones may not
        room[survivors[k % len(survivors)]] += 2048
    for h in survivors:
        host = cloud.sim_host(h)
        host.capacity = dataclasses.replace(host.capacity, ram_mb=host.used_ram_mb + room[h])
    cloud.fail_power(victim)
    return Injection(
        (victim,), (victim,), f"power lost on {victim}; its zone's survivors have room for about half"
    )


def _rack_loss(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    zone_size = {zone: len(hosts) for zone, hosts in topology.zones.items()}
    candidates = sorted(
        rack
        for rack, hosts in topology.racks.items()
        if len(hosts) >= 2 and len(hosts) <= zone_size[cloud.sim_host(hosts[0]).zone] / 2
    )
    if not candidates:
        raise UserError(
            "this cloud has no rack of 2 or more hosts that is at most half its zone",
            "use more hosts (--hosts 12 or more)",
        )
    rack = rng.choice(candidates)
    hosts = tuple(topology.racks[rack])
    for host in hosts:
        cloud.fail_power(host)
    return Injection(hosts, hosts, f"rack {rack} lost power: {len(hosts)} hosts")


def _management_partition(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    victim = _pick_host(cloud, topology, rng)
    cloud.partition_management(victim)
    return Injection((), (victim,), f"{victim} lost its management network; its second network still works")


def _observer_partition(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    zone = rng.choice(sorted(topology.zones))
    hosts = topology.zones[zone]
    silent = tuple(sorted(rng.sample(hosts, k=min(len(hosts), math.floor(len(hosts) * 0.6) + 1))))
    cloud.cut_observer(silent)
    return Injection((), silent, f"the observer lost sight of {len(silent)} of {len(hosts)} hosts in {zone}")


def _nova_compute_crash(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    victim = _pick_host(cloud, topology, rng)
    cloud.crash_nova_compute(victim)
    return Injection(
        (),
        (victim,),
        f"nova-compute crashed on {victim}; it is restarted 30 s later",
        follow_up_after_s=30.0,
        follow_up=lambda: cloud.crash_nova_compute(victim, crashed=False),
    )


def _pick_ha_vm(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> ServerId:
    """A running HA VM on a usable host."""
    candidates = sorted(
        s.id
        for h in _usable_hosts(cloud, topology)
        for s in cloud.servers_on(h)
        if cloud.guest_healthy(s.id) and s.metadata.get(HA_ENABLED_KEY) == "True"
    )
    if not candidates:
        raise UserError("this cloud has no running HA VM", "use more VMs or a larger --ha-fraction")
    return rng.choice(candidates)


def _vm_crash(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    vm = _pick_ha_vm(cloud, topology, rng)
    cloud.crash_guest(vm)
    name = cloud.sim_server(vm).name
    return Injection((), (cloud.sim_server(vm).host,), f"VM {name} crashed", vms=(vm,))


def _vm_crash_loop(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    vm = _pick_ha_vm(cloud, topology, rng)
    cloud.crash_guest(vm, again=CRASH_LOOP_AGAIN)
    name, after = cloud.sim_server(vm).name, cloud.timings.crash_again_after_s
    return Injection(
        (),
        (cloud.sim_server(vm).host,),
        f"VM {name} crashed, and crashes again {after:g} s after every boot",
        vms=(vm,),
    )


def _guest_watchdog(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    vm = _pick_ha_vm(cloud, topology, rng)
    cloud.fire_watchdog(vm)
    name = cloud.sim_server(vm).name
    return Injection(
        (), (cloud.sim_server(vm).host,), f"VM {name} hung and its watchdog fired (reset policy)", vms=(vm,)
    )


def _agent_down(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    victim = _pick_host(cloud, topology, rng)
    cloud.crash_agent(victim)
    return Injection((), (victim,), f"haven's agent on {victim} stopped; the host and nova-compute live on")


# ---- adversarial faults (issue 10): what a careless engine would fence or evacuate on ----------

PARTITION_SHARE = 0.6  # of a zone: 6 hosts of 10
MIN_ZONE_HOSTS = 10
WAVE_GAP_S = 5.0
OUTAGE_S = 120.0  # longer than Nova's service_down_time (60 s)
NOVA_SKEW_S = -60.0  # Nova's clock a minute behind the engine's
REPORT_AFTER_S = 30.0  # Masakari's hostmonitor posts once its cluster lost the host
# What Masakari's hostmonitor posts for a host its cluster (pacemaker/corosync) lost.
HOSTMONITOR_REPORT: Mapping[str, Any] = {
    "event": "STOPPED",
    "host_status": "UNKNOWN",
    "cluster_status": "OFFLINE",
}

Inject = Callable[[SimCloud, SimTopology, random.Random], Injection]


def _big_zone(topology: SimTopology, rng: random.Random) -> tuple[str, list[HostName]]:
    zones = sorted(z for z, hosts in topology.zones.items() if len(hosts) >= MIN_ZONE_HOSTS)
    if not zones:
        raise UserError(
            f"this drill needs a zone (segment) of {MIN_ZONE_HOSTS} or more hosts",
            "use more hosts (--hosts 30 makes three zones of 10)",
        )
    zone = rng.choice(zones)
    return zone, list(topology.zones[zone])


def staggered_partition(gap_s: float) -> Inject:
    """The observer loses 60% of a zone's networks in two waves ``gap_s`` apart; the BMCs answer ON."""

    def inject(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
        zone, hosts = _big_zone(topology, rng)
        picked = rng.sample(hosts, k=math.ceil(len(hosts) * PARTITION_SHARE))
        first, second = tuple(sorted(picked[: len(picked) // 2])), tuple(sorted(picked[len(picked) // 2 :]))
        cloud.cut_observer(first, bmc_reachable=True)
        return Injection(
            (),
            tuple(sorted(picked)),
            f"the observer lost the networks of {len(first)} of {len(hosts)} hosts in {zone}, then of "
            f"{len(second)} more {gap_s:g} s later; their BMCs still answer (power on)",
            follow_up_after_s=gap_s,
            follow_up=lambda: cloud.cut_observer(second, bmc_reachable=True),
        )

    return inject


def false_external_report(count: int | None = None) -> Inject:
    """Hosts lose their management network only, and an external monitor reports each of them down.

    ``count``: how many hosts (None: 60% of a zone of 10 or more).
    """

    def inject(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
        zone, hosts = _big_zone(topology, rng)
        k = math.ceil(len(hosts) * PARTITION_SHARE) if count is None else count
        isolated = tuple(sorted(rng.sample(hosts, k=k)))
        for host in isolated:
            cloud.partition_management(host)
        return Injection(
            (),
            isolated,
            f"{k} of {len(hosts)} hosts in {zone} lost their management network only (the second still "
            f"beats), and an external monitor reports each one down {REPORT_AFTER_S:g} s later",
            reports=tuple((host, HOSTMONITOR_REPORT) for host in isolated),
            reports_after_s=REPORT_AFTER_S,
        )

    return inject


def _ha_servers(cloud: SimCloud, host: HostName) -> list[ServerId]:
    return [s.id for s in cloud.servers_on(host) if s.metadata.get(HA_ENABLED_KEY) == "True"]


def _lost_evacuate_answer(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    """A host with the fewest HA VMs (one, nearly always) dies; the first evacuation's answer is lost and
    its rebuild fails. With several HA VMs on it, each one's first rebuild fails."""
    ha = {h: _ha_servers(cloud, h) for h in sorted(_usable_hosts(cloud, topology))}
    fewest = min((len(v) for v in ha.values() if v), default=0)
    if not fewest:
        raise UserError("this cloud has no host with an HA VM", "use more VMs or a larger --ha-fraction")
    victim = rng.choice([h for h, v in ha.items() if len(v) == fewest])
    for sid in ha[victim]:
        cloud.fail_rebuild(sid)
    cloud.fail_nova_calls("evacuate", count=1, effect_applied=True)
    cloud.fail_power(victim)
    return Injection(
        (victim,),
        (victim,),
        f"power lost on {victim}; the first evacuate call times out though Nova accepted it, and the "
        f"rebuild of {'its HA VM' if fewest == 1 else f'each of its {fewest} HA VMs'} fails "
        f"(ERROR, on {victim})",
    )


def _control_plane_outage(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
    cloud.control_plane_outage()
    return Injection(
        (),
        tuple(cloud.host_names()),
        f"the control plane (RabbitMQ, nova-conductor) is down for {OUTAGE_S:g} s: every nova-compute's "
        "reports stop reaching Nova and Nova's mutating calls fail; hosts and agents live on",
        follow_up_after_s=OUTAGE_S,
        follow_up=lambda: cloud.control_plane_outage(down=False),
    )


def nova_clock_skew(skew_s: float) -> Inject:
    """Nova's clock ``skew_s`` off the engine's; an agent dies on one host, another host loses power."""

    def inject(cloud: SimCloud, topology: SimTopology, rng: random.Random) -> Injection:
        cloud.nova_clock_skew_s = skew_s
        usable = sorted(_usable_hosts(cloud, topology))
        dead = rng.choice([h for h in usable if _ha_servers(cloud, h)] or usable)
        zone = cloud.sim_host(dead).zone
        agentless = rng.choice(
            [h for h in usable if cloud.sim_host(h).zone != zone] or [h for h in usable if h != dead]
        )
        cloud.crash_agent(agentless)
        cloud.fail_power(dead)
        way = "behind" if skew_s < 0 else "ahead of"
        return Injection(
            (dead,),
            (agentless, dead),
            f"Nova's clock is {abs(skew_s):g} s {way} haven's; haven's agent on {agentless} stopped "
            f"(nova-compute reports on), and {dead} lost power",
        )

    return inject


CRASH_LOOP_AGAIN = 10  # more than any sensible crash_loop_max_restarts

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "host-power-loss",
            "one host dies; its HA VMs come back on healthy hosts",
            Expect.RECOVERY,
            _host_power_loss,
        ),
        Scenario(
            "host-hang",
            "a host hangs but stays powered: it must be fenced (powered off) before any evacuation",
            Expect.RECOVERY,
            _host_hang,
        ),
        Scenario(
            "rack-loss",
            "every host of one rack dies at once (below the observer gate)",
            Expect.RECOVERY,
            _rack_loss,
        ),
        Scenario(
            "management-partition",
            "a host loses its management network only: isolated, not dead",
            Expect.HOLD,
            _management_partition,
            observe_for_s=120.0,
        ),
        Scenario(
            "observer-partition",
            "most of a segment goes silent at once: the observer is the fault",
            Expect.HOLD,
            _observer_partition,
            observe_for_s=120.0,
        ),
        Scenario(
            "nova-compute-crash",
            "nova-compute dies on a live host, and comes back",
            Expect.SERVICE_CYCLE,
            _nova_compute_crash,
            observe_for_s=60.0,
        ),
        Scenario(
            "no-capacity",
            "the survivors cannot take every VM: placed by priority, the rest reported",
            Expect.RECOVERY,
            _no_capacity,
            shape=lambda spec: dataclasses.replace(spec, ha_fraction=1.0),
        ),
        Scenario(
            "reserved-host",
            "a reserved_host segment recovers onto its reserved hosts",
            Expect.RECOVERY,
            _host_power_loss,
            shape=lambda spec: dataclasses.replace(spec, reserved_per_zone=max(spec.reserved_per_zone, 1)),
            recovery_method=RecoveryMethod.RESERVED_HOST,
        ),
        Scenario(
            "vm-crash",
            "one HA VM crashes: restarted in place (stop, start, confirmed running), once",
            Expect.VM_RESTART,
            _vm_crash,
        ),
        Scenario(
            "vm-crash-loop",
            "one HA VM keeps crashing: restarted up to the crash-loop limit, then left stopped with an alert",
            Expect.CRASH_LOOP,
            _vm_crash_loop,
            observe_for_s=150.0,
        ),
        Scenario(
            "guest-watchdog",
            "one HA VM hangs and its watchdog fires: hard-rebooted (reset policy), once",
            Expect.VM_RESTART,
            _guest_watchdog,
        ),
        Scenario(
            "agent-down",
            "haven's agent on a host stops heartbeating, nova-compute still reports: an alert, no evacuation",
            Expect.AGENT_ALERT,
            _agent_down,
            observe_for_s=120.0,
        ),
        Scenario(
            "staggered-partition",
            "the observer loses 6 of 10 hosts of a zone in two waves 5 s apart (their BMCs answer): held",
            Expect.HOLD,
            staggered_partition(WAVE_GAP_S),
            observe_for_s=120.0 + WAVE_GAP_S,
            needs_alert=AlertKind.GATE_HOLD,
        ),
        Scenario(
            "false-external-report",
            "6 of 10 hosts of a zone lose their management network and a monitor reports them down: no fence",
            Expect.HOLD,
            false_external_report(),
            observe_for_s=120.0 + REPORT_AFTER_S,
        ),
        Scenario(
            "lost-evacuate-answer",
            "a host dies; the first evacuate's answer is lost and its rebuild fails: recovered, never twice",
            Expect.RECOVERY,
            _lost_evacuate_answer,
            observe_for_s=120.0,
        ),
        Scenario(
            "control-plane-outage",
            "RabbitMQ/conductor down past service_down_time: nothing fenced, evacuated or disabled; an alert",
            Expect.CONTROL_PLANE,
            _control_plane_outage,
            observe_for_s=OUTAGE_S + 120.0,
            needs_alert=AlertKind.CONTROL_PLANE,
        ),
        Scenario(
            "nova-clock-skew",
            "Nova's clock 60 s behind: an agent down stays an alert (no fence), a power loss is recovered",
            Expect.RECOVERY,
            nova_clock_skew(NOVA_SKEW_S),
            observe_for_s=120.0,
            needs_alert=AlertKind.AGENT_DOWN,
        ),
    )
}


def scenario_named(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UserError(f"unknown scenario {name!r}", f"choose one of: {', '.join(SCENARIOS)}") from None
