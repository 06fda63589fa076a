"""The simulated cloud's guests: Nova's stop/start/hard reboot, guest faults, and what the agent reports.

A mixin of SimCloud (kept apart so each module has one job). Engine steps call the
actions through the Cloud protocol; drills inject the faults (a guest crash, a crash
loop, a watchdog firing, a guest destroyed outside Nova) and act as every host's haven
agent by taking its reports (``take_agent_reports``: a guest that stops, Nova's stop
included, is reported as libvirt would) and submitting them as VM notifications. Every action asked
of a server is kept (``vm_actions``), which is both Nova's os-instance-actions and the
drills' ground truth for ``double_actions``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from haven.cloud.sim.state import SimHost, SimServer
from haven.cloud.sim.timings import SimTimings
from haven.domain.clock import Clock
from haven.domain.cloud import PowerState, ServerAction, ServerActionKind, TaskState, VmState
from haven.domain.errors import Conflict
from haven.domain.ids import HostName, ServerId

# Masakari's instance monitor payloads (masakari-monitors instancemonitor): event, vir_domain_event.
LIFECYCLE, STOPPED_FAILED, WATCHDOG = "LIFECYCLE", "STOPPED_FAILED", "WATCHDOG"
STOPPED_DESTROYED, STOPPED_SHUTDOWN = "STOPPED_DESTROYED", "STOPPED_SHUTDOWN"

_STOPPABLE = (VmState.ACTIVE, VmState.ERROR)
_REBOOTABLE = (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR)


class SimGuests:
    """Guest actions, faults and agent reports; SimCloud provides the state these declare."""

    clock: Clock
    timings: SimTimings
    _hosts: dict[HostName, SimHost]
    _servers: dict[ServerId, SimServer]
    _running_on: dict[ServerId, set[HostName]]
    vm_actions: list[ServerAction]
    _agent_reports: list[tuple[HostName, dict[str, Any]]]

    # Provided by SimCloud.
    def _catch_up(self) -> None:
        raise NotImplementedError

    def _at(self, when: float, action: Callable[[], None]) -> None:
        raise NotImplementedError

    def _server(self, server_id: ServerId) -> SimServer:
        raise NotImplementedError

    def _start_guest(self, h: SimHost, server_id: ServerId) -> None:
        raise NotImplementedError

    def _mutate(self, kind: str, effect: Callable[[], None], subject: str) -> None:
        raise NotImplementedError

    # ---- Cloud protocol: guest actions ----------------------------------------------------

    async def stop_server(self, server_id: ServerId) -> None:
        def stop() -> None:
            s, action = self._accept(server_id, ServerActionKind.STOP, _STOPPABLE)
            s.task_state = TaskState.POWERING_OFF
            self._at(self.clock.now() + self.timings.vm_stop_s, lambda: self._finish_stop(s, action))

        self._mutate("stop_server", stop, server_id)

    async def start_server(self, server_id: ServerId) -> None:
        def start() -> None:
            s, action = self._accept(server_id, ServerActionKind.START, (VmState.STOPPED,))
            s.task_state = TaskState.POWERING_ON
            self._at(self.clock.now() + self.timings.vm_start_s, lambda: self._boot(s, action))

        self._mutate("start_server", start, server_id)

    async def reboot_server(self, server_id: ServerId) -> None:
        def reboot() -> None:
            s, action = self._accept(server_id, ServerActionKind.REBOOT, _REBOOTABLE)
            s.task_state = TaskState.REBOOTING_HARD
            self._halt_guest(s)  # a hard reboot is a power cycle: the old guest is gone at once
            self._at(self.clock.now() + self.timings.vm_reboot_s, lambda: self._boot(s, action))

        self._mutate("reboot_server", reboot, server_id)

    async def server_actions(self, server_id: ServerId, since: float) -> Sequence[ServerAction]:
        """The server's actions since ``since``, on the engine's clock.

        A real Nova stamps them with its own clock; OpenStackCloud moves them onto haven's at its
        boundary (by the offset it measures from Nova's Date), and so does this one, exactly: a
        skewed Nova clock (``nova_clock_skew_s``) shows only in the liveness readings' raw times.
        """
        self._catch_up()
        self._server(server_id)  # NotFound for an unknown server, as Nova answers
        return [a for a in self.vm_actions if a.server_id == server_id and a.at >= since]

    def _accept(
        self, server_id: ServerId, action: ServerActionKind, allowed: tuple[VmState, ...]
    ) -> tuple[SimServer, int]:
        """Nova's API checks (task_state, vm_state), then the action is recorded (its index) and accepted."""
        s = self._server(server_id)
        if s.task_state is not TaskState.NONE:
            raise Conflict(
                f"Cannot '{action.value}' instance {server_id} while it is in task_state {s.task_state.value}"
            )
        if s.vm_state not in allowed:
            raise Conflict(
                f"Cannot '{action.value}' instance {server_id} while it is in vm_state {s.vm_state.value}"
            )
        self.vm_actions.append(ServerAction(server_id, action.value, self.clock.now()))
        return s, len(self.vm_actions) - 1

    def _action_result(self, action: int | None, result: str) -> None:
        if action is not None:
            self.vm_actions[action] = dataclasses.replace(self.vm_actions[action], result=result)

    def _finish_stop(self, s: SimServer, action: int) -> None:
        if self._running_on[s.id]:  # libvirt reports a guest that shuts down, as for any stop
            self._report(s, {"event": LIFECYCLE, "instance_uuid": s.id, "vir_domain_event": STOPPED_SHUTDOWN})
        self._halt_guest(s)
        s.task_state, s.vm_state, s.power_state = TaskState.NONE, VmState.STOPPED, PowerState.SHUTDOWN
        self._action_result(action, "Success")

    def _boot(self, s: SimServer, action: int | None = None) -> None:
        s.task_state = TaskState.NONE
        host = self._hosts[s.host]
        if not host.powered:
            s.vm_state, s.power_state = VmState.ERROR, PowerState.NOSTATE
            self._action_result(action, "Error")
            return
        self._action_result(action, "Success")
        s.vm_state, s.power_state, s.hung = VmState.ACTIVE, PowerState.RUNNING, False
        s.boots += 1
        self._start_guest(host, s.id)
        if s.crashes_left > 0:
            s.crashes_left -= 1
            boot = s.boots
            self._at(self.clock.now() + self.timings.crash_again_after_s, lambda: self._crash_boot(s, boot))

    def _halt_guest(self, s: SimServer) -> None:
        for name in self._running_on[s.id]:
            self._hosts[name].running.discard(s.id)
        self._running_on[s.id].clear()
        s.hung = False

    # ---- faults (used by drills) ----------------------------------------------------------

    def crash_guest(self, server_id: ServerId, again: int = 0, shows_error: bool = False) -> None:
        """The guest crashes (kernel panic, QEMU died); with ``again``, it crashes again after each boot."""
        self._catch_up()
        s = self._server(server_id)
        s.crashes_left, s.crash_shows_error = again, shows_error
        self._crash(s)

    def destroy_guest(self, server_id: ServerId) -> None:
        """The guest is destroyed outside Nova (``virsh destroy``, a killed QEMU): Nova still says active."""
        self._catch_up()
        s = self._server(server_id)
        self._halt_guest(s)
        s.power_state = PowerState.SHUTDOWN  # vm_state stays active: Nova's power-state sync comes later
        self._report(s, {"event": LIFECYCLE, "instance_uuid": s.id, "vir_domain_event": STOPPED_DESTROYED})

    def fire_watchdog(self, server_id: ServerId) -> None:
        """The guest's OS hangs and its watchdog fires; Nova still shows it active and running."""
        self._catch_up()
        s = self._server(server_id)
        s.hung = True
        detail = f"{WATCHDOG}_{(s.watchdog_action or 'reset').upper()}"
        self._report(s, {"event": WATCHDOG, "instance_uuid": s.id, "vir_domain_event": detail})

    def _crash_boot(self, s: SimServer, boot: int) -> None:
        if s.boots == boot and s.id in self._hosts[s.host].running and s.task_state is TaskState.NONE:
            self._crash(s)

    def _crash(self, s: SimServer) -> None:
        self._halt_guest(s)
        # libvirt reports the crash; Nova's power-state sync then shows it stopped (or error).
        if s.crash_shows_error:
            s.vm_state, s.power_state = VmState.ERROR, PowerState.CRASHED
        else:
            s.vm_state, s.power_state = VmState.STOPPED, PowerState.SHUTDOWN
        self._report(s, {"event": LIFECYCLE, "instance_uuid": s.id, "vir_domain_event": STOPPED_FAILED})

    def _report(self, s: SimServer, payload: dict[str, Any]) -> None:
        self._agent_reports.append((s.host, payload))

    # ---- the host agents' reports and ground truth (used by drills) -----------------------

    def take_agent_reports(self) -> list[tuple[HostName, dict[str, Any]]]:
        """What the hosts' agents report now; a stopped agent keeps its reports in its spool."""
        self._catch_up()
        sent = [(h, p) for h, p in self._agent_reports if self._hosts[h].agent_running]
        self._agent_reports = [(h, p) for h, p in self._agent_reports if not self._hosts[h].agent_running]
        return sent

    def action_counts(self, server_id: ServerId, start: float, end: float) -> Counter[str]:
        """How many times each action was asked of the server between ``start`` and ``end``."""
        return Counter(a.action for a in self.vm_actions if a.server_id == server_id and start <= a.at <= end)

    def guest_healthy(self, server_id: ServerId) -> bool:
        """Ground truth: the guest runs on exactly the host Nova places it on, and is not hung."""
        s = self._server(server_id)
        return self._running_on[server_id] == {s.host} and not s.hung
