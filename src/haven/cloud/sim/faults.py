"""Faults a drill or the fault explorer injects into the simulated cloud (besides guest and BMC faults).

A mixin of SimCloud (kept apart so each module has one job): a host's own death (power loss, a
hang, its NICs), the observer losing sight of hosts (with or without their BMCs), a lost
management network, a dead agent or nova-compute, Nova calls that time out (with or without
their effect), a rebuild that fails, and a control-plane outage. Each fault marks its ground
truth: whether the host really failed (so fencing it is right) or only looks so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from haven.cloud.sim.state import CallFault, NovaCall, SimHost, SimServer
from haven.domain.clock import Clock
from haven.domain.errors import CloudError, TemporaryError
from haven.domain.ids import HostName, ServerId

# Nova's mutating calls, by the names fail_nova_calls takes ("*": any of them).
NOVA_CALLS = frozenset(
    {
        "evacuate",
        "force_down",
        "disable_service",
        "enable_service",
        "reset_state",
        "stop_server",
        "start_server",
        "reboot_server",
    }
)


class SimFaults:
    """Fault injection; SimCloud provides the state these declare."""

    clock: Clock
    _hosts: dict[HostName, SimHost]
    _running_on: dict[ServerId, set[HostName]]
    _call_faults: list[CallFault]
    nova_calls: list[NovaCall]
    control_plane_down: bool

    # Provided by SimCloud.
    def _catch_up(self) -> None:
        raise NotImplementedError

    def _host(self, name: HostName) -> SimHost:
        raise NotImplementedError

    def _server(self, server_id: ServerId) -> SimServer:
        raise NotImplementedError

    def _refresh(self, h: SimHost) -> None:
        raise NotImplementedError

    def _power_off(self, h: SimHost, by_fault: bool) -> None:
        raise NotImplementedError

    # ---- a host's own failures ------------------------------------------------------------

    def fail_power(self, host: HostName) -> None:
        self._catch_up()
        self._power_off(self._host(host), by_fault=True)

    def hang(self, host: HostName) -> None:
        """The host's kernel hangs: still powered (the BMC says on), silent everywhere, guests frozen."""
        self._catch_up()
        h = self._host(host)
        h.hung, h.failed_by_fault = True, True
        for sid in h.running:
            self._running_on[sid].discard(h.name)
        h.running.clear()
        self._refresh(h)

    def partition_management(self, host: HostName, cut: bool = True) -> None:
        self._catch_up()
        h = self._host(host)
        h.mgmt_up = not cut
        self._refresh(h)

    def cut_observer(self, hosts: Iterable[HostName], cut: bool = True, bmc_reachable: bool = False) -> None:
        """The observer (haven) loses the hosts' networks: management, second, and their Nova reports.

        With ``bmc_reachable`` it still reaches their BMCs out of band: they answer ON and accept
        power requests. Either way the hosts did not fail: fencing one is a live host fenced.
        """
        self._catch_up()
        for name in hosts:
            h = self._host(name)
            h.observer_cut, h.observer_reaches_bmc = cut, cut and bmc_reachable
            self._refresh(h)

    def fail_networks(self, host: HostName, failed: bool = True) -> None:
        """The host's own NICs die: silent on every network and to Nova, still powered, guests running.

        This is the host's failure (ground truth): fencing it is not a live host fenced, and its BMC
        (out of band) still answers. Its guests run on until it is powered off.
        """
        self._catch_up()
        h = self._host(host)
        h.network_failed = failed
        self._refresh(h)

    def fail_nova_calls(
        self, kind: str, count: int = 1, effect_applied: bool = False, delay_s: float = 1.0
    ) -> None:
        """The next ``count`` Nova calls of ``kind`` (or "*", any mutating call) raise TemporaryError.

        With ``effect_applied`` the call's effect happens and only its answer is lost ("timed out").
        """
        if kind != "*" and kind not in NOVA_CALLS:
            raise ValueError(f"unknown Nova call {kind!r}: one of {sorted(NOVA_CALLS)} or '*'")
        self._call_faults.append(CallFault(kind, count, effect_applied, delay_s))

    def fail_rebuild(self, server_id: ServerId) -> None:
        """The server's next evacuation is accepted, and its rebuild fails.

        The server then shows vm_state ERROR, no task, its host still the source, running nowhere;
        its instance action shows the evacuation with result "Error".
        """
        self._server(server_id).rebuild_fails = True

    def control_plane_outage(self, down: bool = True) -> None:
        """RabbitMQ or nova-conductor down: no nova-compute report reaches Nova, mutating calls fail.

        Every compute service goes down by Nova's account after service_down_time while the hosts
        and their agents live on; reads still answer (nova-api reads the database). Undone, every
        nova-compute reports again at once.
        """
        self._catch_up()
        self.control_plane_down = down
        for h in self._hosts.values():
            self._refresh(h)

    def crash_agent(self, host: HostName, crashed: bool = True) -> None:
        """haven's agent dies: its heartbeats stop, the host and nova-compute live on."""
        self._catch_up()
        h = self._host(host)
        h.agent_running = not crashed
        self._refresh(h)

    def crash_nova_compute(self, host: HostName, crashed: bool = True) -> None:
        self._catch_up()
        h = self._host(host)
        h.nova_compute_running = not crashed
        self._refresh(h)

    # ---- Nova's mutating calls --------------------------------------------------------------

    def _mutate(self, kind: str, effect: Callable[[], None], subject: str) -> None:
        """A mutating Nova call: refused while the control plane is down; a fault may time it out.

        Every call whose effect took place is kept in ``nova_calls`` (ground truth), even when its
        answer was lost.
        """
        self._catch_up()
        if self.control_plane_down:
            raise TemporaryError(f"Nova {kind}: timed out (the control plane does not answer)", delay=5.0)
        fault = self._take_call_fault(kind)
        if fault is None:
            effect()
            self.nova_calls.append(NovaCall(self.clock.now(), kind, subject))
            return
        if fault.effect_applied:
            with contextlib.suppress(CloudError):  # its answer, whatever it was, is lost
                effect()
                self.nova_calls.append(NovaCall(self.clock.now(), kind, subject))
        raise TemporaryError(f"Nova {kind}: timed out", delay=fault.delay_s)

    def _take_call_fault(self, kind: str) -> CallFault | None:
        for fault in self._call_faults:
            if fault.kind in (kind, "*") and fault.count > 0:
                fault.count -= 1
                if fault.count == 0:
                    self._call_faults.remove(fault)
                return fault
        return None
