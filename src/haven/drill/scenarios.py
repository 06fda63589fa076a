"""The named failures a drill can inject into the simulated cloud, and what each expects of haven.

Called by the drill runner: a scenario shapes the cloud it needs, injects its
fault at the chosen instant, may schedule a follow-up (a process coming back),
and says which outcome counts as right.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from haven.cloud.sim import CloudSpec, SimCloud
from haven.cloud.sim.builder import SimTopology
from haven.domain.cloud import HA_ENABLED_KEY
from haven.domain.errors import UserError
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import RecoveryMethod


class Expect(StrEnum):
    RECOVERY = "recovery"  # the HA VMs of dead hosts come back elsewhere
    HOLD = "hold"  # haven must not evacuate: the host is isolated or the observer is the fault
    SERVICE_CYCLE = "service_cycle"  # a compute service disabled, then re-enabled, nothing evacuated
    VM_RESTART = "vm_restart"  # a failed guest is restarted (or reset) in place, once
    CRASH_LOOP = "crash_loop"  # restarted N times, then left stopped with an alert (verdict "held")
    AGENT_ALERT = "agent_alert"  # haven's agent is silent, nova up: an alert, no evacuation ("held")


@dataclass(frozen=True, slots=True)
class Injection:
    failed_hosts: tuple[HostName, ...]  # hosts that really died (ground truth for the counters)
    touched_hosts: tuple[HostName, ...]  # every host the fault touched
    description: str
    follow_up_after_s: float | None = None
    follow_up: Callable[[], None] | None = None
    vms: tuple[ServerId, ...] = ()  # VMs the fault hit directly (guest faults); none for host faults


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    expect: Expect
    inject: Callable[[SimCloud, SimTopology, random.Random], Injection]
    shape: Callable[[CloudSpec], CloudSpec] = lambda spec: spec
    recovery_method: RecoveryMethod = RecoveryMethod.AUTO
    observe_for_s: float = 0.0  # keep watching this long after the fault even if all looks quiet


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
    )
}


def scenario_named(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise UserError(f"unknown scenario {name!r}", f"choose one of: {', '.join(SCENARIOS)}") from None
