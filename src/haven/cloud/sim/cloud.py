"""SimCloud: the simulated cloud's Nova-like API, liveness channels, faults and ground truth.

Called by the engine through the Cloud and LivenessSource protocols, by
SimFencer for BMC power, and by drills to inject faults and read ground truth.
Timed effects (a BMC applying power off, a rebuild finishing) are events on an
internal queue, applied whenever the cloud is touched; ``next_event_time``
lets a virtual-time runner jump straight to the next one.

Faults a drill (or the fault explorer) can inject, besides a host's own death: the observer
losing sight of hosts (with or without their BMCs), a host's own NICs dying, BMC faults
(haven.cloud.sim.bmc), Nova calls that time out (with or without their effect), a rebuild
that fails, a control-plane outage (RabbitMQ/conductor: reports stop, mutating calls fail),
and Nova's clock skewed from the engine's.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from haven.cloud.sim.bmc import SimBmcs
from haven.cloud.sim.faults import SimFaults
from haven.cloud.sim.guests import SimGuests
from haven.cloud.sim.state import (
    CallFault,
    EvacuationRecord,
    EvacuationStatus,
    NovaCall,
    SimHost,
    SimServer,
)
from haven.cloud.sim.timings import SimTimings
from haven.domain.clock import Clock
from haven.domain.cloud import (
    Host,
    PowerState,
    Server,
    ServerAction,
    ServerActionKind,
    ServerGroup,
    TaskState,
    VmState,
)
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import HostLiveness

NOVA_COMPUTE = "nova-compute"
ACTION_SUCCESS, ACTION_ERROR = "Success", "Error"  # Nova's instance-action event results


class SimCloud(SimFaults, SimGuests, SimBmcs):  # SimFaults first: it provides _mutate to SimGuests
    def __init__(
        self,
        clock: Clock,
        hosts: Iterable[SimHost],
        servers: Iterable[SimServer],
        groups: Iterable[ServerGroup] = (),
        timings: SimTimings | None = None,
    ) -> None:
        self.clock = clock
        self.timings = timings or SimTimings()
        self._hosts: dict[HostName, SimHost] = {h.name: h for h in hosts}
        self._servers: dict[ServerId, SimServer] = {}
        self._on_host: dict[HostName, set[ServerId]] = {name: set() for name in self._hosts}
        self._running_on: dict[ServerId, set[HostName]] = {}
        self._groups = {g.id: g for g in groups}
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._anomalous: set[HostName] = set()
        self.evacuations: list[EvacuationRecord] = []
        self.live_hosts_fenced: list[HostName] = []
        self._ran_twice: set[ServerId] = set()
        self.vm_actions: list[ServerAction] = []  # every action asked of a server (os-instance-actions)
        self._agent_reports: list[tuple[HostName, dict[str, Any]]] = []
        self._latest_evacuation: dict[ServerId, int] = {}  # index in ``evacuations``
        self._call_faults: list[CallFault] = []
        self.nova_calls: list[NovaCall] = []  # every mutating call that took effect (ground truth)
        self.control_plane_down = False
        # Nova's clock less the engine's: Nova stamps its reports (``nova_updated_at``) with its own.
        self.nova_clock_skew_s = 0.0
        for server in servers:
            self._add_server(server)

    # ---- construction -------------------------------------------------------------------

    def _add_server(self, server: SimServer) -> None:
        host = self._hosts[server.host]
        self._servers[server.id] = server
        self._on_host[host.name].add(server.id)
        self._charge(host, server, +1)
        self._running_on[server.id] = set()
        if server.vm_state is VmState.ACTIVE and host.powered:
            self._start_guest(host, server.id)

    # ---- the event queue ----------------------------------------------------------------

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (when, next(self._seq), action))

    def _catch_up(self) -> None:
        now = self.clock.now()
        while self._events and self._events[0][0] <= now:
            _, _, action = heapq.heappop(self._events)
            action()

    def next_event_time(self) -> float | None:
        """When the next timed effect falls due (after applying those already due)."""
        self._catch_up()
        return self._events[0][0] if self._events else None

    def settle(self) -> None:
        """Apply every effect that is due at the clock's current time."""
        self._catch_up()

    # ---- Cloud protocol: reads ----------------------------------------------------------

    async def list_hosts(self) -> Sequence[Host]:
        self._catch_up()
        return [self._host_view(h) for h in self._hosts.values()]

    async def get_host(self, name: HostName) -> Host:
        self._catch_up()
        return self._host_view(self._host(name))

    async def list_servers(self, host: HostName | None = None, *, groups: bool = True) -> Sequence[Server]:
        self._catch_up()  # with or without ``groups``: the simulated cloud's group is free to show
        if host is None:
            return [self._server_view(s) for s in self._servers.values()]
        ids = self._on_host.get(host)
        if ids is None:
            raise NotFound(f"compute host {host} not found")
        return [self._server_view(self._servers[i]) for i in sorted(ids)]

    async def get_server(self, server_id: ServerId) -> Server:
        self._catch_up()
        return self._server_view(self._server(server_id))

    async def list_server_groups(self) -> Sequence[ServerGroup]:
        return list(self._groups.values())

    # ---- Cloud protocol: actions --------------------------------------------------------

    async def force_down(self, host: HostName, down: bool) -> None:
        self._mutate("force_down", lambda: self._force_down(self._host(host), down), f"{host} down={down}")

    def _force_down(self, h: SimHost, down: bool) -> None:
        h.forced_down = down
        self._refresh(h)

    async def disable_service(self, host: HostName, reason: str) -> None:
        def disable() -> None:
            h = self._host(host)
            h.service_enabled, h.disabled_reason = False, reason

        self._mutate("disable_service", disable, host)

    async def enable_service(self, host: HostName) -> None:
        def enable() -> None:
            h = self._host(host)
            h.service_enabled, h.disabled_reason = True, ""

        self._mutate("enable_service", enable, host)

    async def reset_state(self, server_id: ServerId, state: VmState) -> None:
        def reset() -> None:
            server = self._server(server_id)
            # Nova's os-resetState sets vm_state and clears task_state (a rebuild in flight goes on).
            server.vm_state, server.task_state = state, TaskState.NONE

        self._mutate("reset_state", reset, server_id)

    async def evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        self._mutate("evacuate", lambda: self._evacuate(server_id, target), server_id)

    def _evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        server = self._server(server_id)
        source = self._hosts[server.host]
        if server.task_state is not TaskState.NONE:
            raise Conflict(f"server {server_id} is in task_state {server.task_state.value}")
        if self._nova_up(source):
            raise Conflict(f"Compute service of {source.name} is still in use.")
        dest = self._host(target) if target is not None else self._schedule(source, server)
        now = self.clock.now()
        action = len(self.vm_actions)
        self.vm_actions.append(ServerAction(server_id, ServerActionKind.EVACUATE.value, now))
        record = len(self.evacuations)
        self.evacuations.append(
            EvacuationRecord(
                server_id,
                source.name,
                dest.name if dest else source.name,
                now,
                source_powered=source.powered,
                source_failed_by_fault=self._has_failed(source),
                unsafe_double=self._would_double(server_id, source),
            )
        )
        self._latest_evacuation[server_id] = record
        if dest is None or dest is source or not self._accepts(dest, server):
            # Nova's scheduler found no valid host: the rebuild fails and the server errors.
            server.vm_state, server.fault = VmState.ERROR, "No valid host was found. "
            self._evacuation_ended(record, action, ok=False)
            return
        admitted = max(now, dest.rebuild_busy_until) + self.timings.evacuate_admit_s
        dest.rebuild_busy_until = admitted
        done_at = admitted + self.timings.evacuate_boot_s
        server.task_state = TaskState.REBUILDING
        if server.rebuild_fails:
            server.rebuild_fails = False
            self._at(done_at, lambda: self._fail_rebuild(server, record, action))
            return
        self._move(server, source, dest)
        self._at(done_at, lambda: self._finish_rebuild(server, dest, record, action))

    def _would_double(self, server_id: ServerId, source: SimHost) -> bool:
        """Ground truth: an earlier evacuation of the server may leave it running besides this one's."""
        index = self._latest_evacuation.get(server_id)
        if index is None:
            return False
        earlier = self.evacuations[index]
        if earlier.status is EvacuationStatus.ACCEPTED:
            return True  # its rebuild is still in flight
        if earlier.status is EvacuationStatus.ERROR:
            return False  # it failed: the server ran nowhere, a retry is what is wanted
        # It succeeded: moving the VM again is right only off a host that failed since (or is off).
        return earlier.target != source.name or (source.powered and not self._has_failed(source))

    def _evacuation_ended(self, record: int, action: int, ok: bool) -> None:
        status = EvacuationStatus.DONE if ok else EvacuationStatus.ERROR
        self.evacuations[record] = dataclasses.replace(self.evacuations[record], status=status)
        result = ACTION_SUCCESS if ok else ACTION_ERROR
        self.vm_actions[action] = dataclasses.replace(self.vm_actions[action], result=result)

    def _fail_rebuild(self, server: SimServer, record: int, action: int) -> None:
        """The rebuild failed on its destination: ERROR, no task, still on its source, running nowhere new."""
        server.task_state, server.vm_state, server.power_state = (
            TaskState.NONE,
            VmState.ERROR,
            PowerState.NOSTATE,
        )
        server.fault = f"Rebuild of {server.id} failed on its destination"
        self._evacuation_ended(record, action, ok=False)

    def _finish_rebuild(self, server: SimServer, dest: SimHost, record: int, action: int) -> None:
        server.task_state = TaskState.NONE
        if not dest.powered:
            server.vm_state = VmState.ERROR
        elif server.vm_state is VmState.STOPPED:
            server.power_state = PowerState.SHUTDOWN
        else:
            server.vm_state, server.power_state = VmState.ACTIVE, PowerState.RUNNING
            self._start_guest(dest, server.id)
        self._evacuation_ended(record, action, ok=dest.powered)

    def _schedule(self, source: SimHost, server: SimServer) -> SimHost | None:
        """Nova's scheduler in miniature: same zone, service usable, most free RAM that fits."""
        fitting = [
            h
            for h in self._hosts.values()
            if h is not source
            and h.zone == source.zone
            and h.service_enabled
            and self._nova_up(h)
            and self._accepts(h, server)
        ]
        return max(
            fitting, key=lambda h: (h.capacity.schedulable_ram_mb - h.used_ram_mb, h.name), default=None
        )

    # ---- LivenessSource protocol --------------------------------------------------------

    async def liveness_anomalies(self) -> Sequence[HostLiveness]:
        self._catch_up()
        readings = [self._liveness(self._hosts[name]) for name in sorted(self._anomalous)]
        # A host whose every channel flows again and that Nova sees up is no longer news.
        self._anomalous = {r.host for r in readings if not self._is_plainly_healthy(self._hosts[r.host])}
        return readings

    def _liveness(self, h: SimHost) -> HostLiveness:
        now, t = self.clock.now(), self.timings
        return HostLiveness(
            host=h.name,
            agent_seen=h.mgmt.last_beat(now, h.heartbeat_phase, t.heartbeat_interval_s),
            second_seen=(
                h.second.last_beat(now, h.heartbeat_phase, t.heartbeat_interval_s)
                if h.has_second_network
                else None
            ),
            nova_up=self._nova_up(h),
            # Nova's times are on Nova's clock, raw, as a real Nova's service list gives them.
            nova_updated_at=self._nova_last_report(h) + self.nova_clock_skew_s,
            bmc=self.bmc_power_state(h.name),
            failed_processes=frozenset({NOVA_COMPUTE}) if self._compute_looks_failed(h) else frozenset(),
            nova_now=now + self.nova_clock_skew_s,
        )

    def _compute_looks_failed(self, h: SimHost) -> bool:
        """What the real liveness source (haven.service.liveness) reports as a failed nova-compute.

        The host's agent beats and either its nova-compute died (the agent sees it at once) or Nova
        counts the service down though haven did not force it down: a control-plane outage looks
        exactly so, though every nova-compute runs. "Beats" as the engine hears it: a real agent's lease
        outlives its last heartbeat, so a host that just lost power still looks so for a moment (and
        its failed nova-compute does not look back).
        """
        now, interval = self.clock.now(), self.timings.heartbeat_interval_s
        if now - h.mgmt.last_beat(now, h.heartbeat_phase, interval) > interval * 1.5:
            return False
        return not h.nova_compute_running or (not h.forced_down and not self._nova_up(h))

    def _is_plainly_healthy(self, h: SimHost) -> bool:
        return (
            h.powered
            and h.booting_until is None
            and h.bmc_reachable
            and not h.observer_cut
            and not h.network_failed
            and not self.control_plane_down
            and h.nova_compute_running
            and not h.forced_down
            and h.mgmt.flowing
            and h.nova.flowing
            and (h.second.flowing or not h.has_second_network)
        )

    # ---- ground truth (used by drills) ----------------------------------------------------

    def hosts_running(self, server_id: ServerId) -> set[HostName]:
        return set(self._running_on.get(server_id, ()))

    def servers_running_twice(self) -> list[ServerId]:
        """Servers that ran on two hosts at any moment so far (not only now)."""
        now = {sid for sid, hosts in self._running_on.items() if len(hosts) > 1}
        return sorted(now | self._ran_twice)

    def evacuation_count(self, server_id: ServerId) -> int:
        return sum(1 for e in self.evacuations if e.server_id == server_id)

    def unsafe_double_evacuations(self) -> list[EvacuationRecord]:
        """Evacuations asked while an earlier one of the same server was in flight or had succeeded
        (see ``EvacuationRecord.unsafe_double``), in the order they were asked. A retry after a
        rebuild that failed (ERROR, running nowhere) is not one.
        """
        return [e for e in self.evacuations if e.unsafe_double]

    def evacuations_from_powered_sources(self) -> int:
        """Evacuations asked while their source was still powered (the VM could run twice)."""
        return sum(1 for e in self.evacuations if e.source_powered)

    def is_powered(self, host: HostName) -> bool:
        return self._host(host).powered

    def host_names(self) -> list[HostName]:
        return list(self._hosts)

    def sim_host(self, host: HostName) -> SimHost:
        """Direct access for drills that shape a scenario before it starts."""
        return self._host(host)

    def servers_on(self, host: HostName) -> list[SimServer]:
        """Direct access for drills: the servers Nova places on ``host`` now."""
        return [self._servers[i] for i in sorted(self._on_host[self._host(host).name])]

    def sim_server(self, server_id: ServerId) -> SimServer:
        return self._server(server_id)

    def boot_server(self, server: SimServer) -> None:
        """Nova's boot as the backup port's restores use it: placed on ``server.host``, running at once."""
        self._catch_up()
        if server.id in self._servers:
            raise Conflict(f"server {server.id} exists")
        self._add_server(server)

    def delete_server(self, server_id: ServerId) -> None:
        """Nova's delete: the server stops and is gone (NotFound afterwards)."""
        server = self._server(server_id)
        host = self._hosts[server.host]
        self._on_host[host.name].discard(server_id)
        self._charge(host, server, -1)
        for name in self._running_on.pop(server_id, set()):
            self._hosts[name].running.discard(server_id)
        del self._servers[server_id]

    # ---- internals ------------------------------------------------------------------------

    def _host(self, name: HostName) -> SimHost:
        try:
            return self._hosts[name]
        except KeyError:
            raise NotFound(f"compute host {name} not found") from None

    def _server(self, server_id: ServerId) -> SimServer:
        try:
            return self._servers[server_id]
        except KeyError:
            raise NotFound(f"server {server_id} not found") from None

    def _nova_last_report(self, h: SimHost) -> float:
        return h.nova.last_beat(self.clock.now(), h.heartbeat_phase, self.timings.nova_report_interval_s)

    def _nova_up(self, h: SimHost) -> bool:
        if h.forced_down:
            return False
        return self.clock.now() - self._nova_last_report(h) <= self.timings.nova_service_down_time_s

    def _accepts(self, h: SimHost, server: SimServer) -> bool:
        return h.powered and h.capacity.admits(server.flavor, h.used_vcpus, h.used_ram_mb, h.used_disk_gb)

    def _charge(self, h: SimHost, server: SimServer, sign: int) -> None:
        h.used_vcpus += sign * server.flavor.vcpus
        h.used_ram_mb += sign * server.flavor.ram_mb
        h.used_disk_gb += sign * server.flavor.disk_gb

    def _move(self, server: SimServer, source: SimHost, dest: SimHost) -> None:
        self._on_host[source.name].discard(server.id)
        self._charge(source, server, -1)
        self._on_host[dest.name].add(server.id)
        self._charge(dest, server, +1)
        server.host = dest.name

    def _start_guest(self, h: SimHost, server_id: ServerId) -> None:
        h.running.add(server_id)
        self._running_on[server_id].add(h.name)
        if len(self._running_on[server_id]) > 1:
            self._ran_twice.add(server_id)

    def _has_failed(self, h: SimHost) -> bool:
        """Ground truth: the host died, hung or lost its own networks (it did not merely look so)."""
        return h.failed_by_fault or h.network_failed

    def _power_off(self, h: SimHost, by_fault: bool) -> None:
        if not h.powered:
            return
        if not by_fault and not self._has_failed(h):
            self.live_hosts_fenced.append(h.name)  # ground truth: a host that had not failed lost power
        h.powered, h.booting_until, h.hung = False, None, False
        self._note_power(h)
        h.failed_by_fault = h.failed_by_fault or by_fault
        for sid in h.running:
            self._running_on[sid].discard(h.name)
        h.running.clear()
        self._refresh(h)

    def _power_on(self, h: SimHost) -> None:
        if h.powered:
            return
        h.powered, h.failed_by_fault = True, False
        self._note_power(h)
        h.booting_until = self.clock.now() + self.timings.host_boot_s
        self._refresh(h)
        self._at(h.booting_until, lambda: self._finish_boot(h))

    def _finish_boot(self, h: SimHost) -> None:
        if not h.powered:
            return
        h.booting_until = None
        # Nova does not resume guests on host boot by default: what is still assigned here is stopped.
        for sid in self._on_host[h.name]:
            server = self._servers[sid]
            if server.task_state is TaskState.NONE:
                server.vm_state, server.power_state = VmState.STOPPED, PowerState.SHUTDOWN
        self._refresh(h)

    def _refresh(self, h: SimHost) -> None:
        """Recompute which channels flow after any change to a host, and note it as news."""
        now = self.clock.now()
        alive = h.powered and h.booting_until is None and not h.hung
        wired = alive and not h.network_failed  # its own NICs work
        heard = wired and not h.observer_cut and h.agent_running  # channels are what the observer hears
        h.mgmt.set_flowing(heard and h.mgmt_up, now)
        h.second.set_flowing(heard and h.second_up and h.has_second_network, now)
        reports = wired and h.mgmt_up and h.nova_compute_running and not self.control_plane_down
        h.nova.set_flowing(reports and not h.observer_cut, now)
        self._anomalous.add(h.name)

    def _host_view(self, h: SimHost) -> Host:
        return Host(
            name=h.name,
            zone=h.zone,
            aggregate=h.aggregate,
            capacity=h.capacity,
            service_enabled=h.service_enabled,
            service_up=self._nova_up(h),
            forced_down=h.forced_down,
            disabled_reason=h.disabled_reason,
            used_vcpus=h.used_vcpus,
            used_ram_mb=h.used_ram_mb,
            used_disk_gb=h.used_disk_gb,
        )

    @staticmethod
    def _server_view(s: SimServer) -> Server:
        return Server(
            id=s.id,
            name=s.name,
            host=s.host,
            flavor=s.flavor,
            vm_state=s.vm_state,
            power_state=s.power_state,
            task_state=s.task_state,
            metadata=dict(s.metadata),
            group=s.group,
            watchdog_action=s.watchdog_action,
            fault=s.fault if s.vm_state is VmState.ERROR else "",  # Nova shows it for ERROR only
        )
