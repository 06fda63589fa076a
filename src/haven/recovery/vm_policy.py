"""What to do about a failed VM: the pure decision behind the VM recovery workflow.

Called by the VM steps (recovery/vm_steps.py) and by the dry-run step, with the VM as
the cloud shows it and the number of times haven restarted it lately. Which events are
failures follows Masakari's instance monitor payloads (``event`` and ``vir_domain_event``):
a guest that crashed (LIFECYCLE STOPPED_FAILED, as Masakari recovers it, and libvirt's
crash details) or hit an I/O error is restarted; a fired watchdog follows the VM's
``hw:watchdog_action`` (Nova's name, flavor extra spec or image property): ``reset``
(haven's default) is a hard reboot, ``poweroff``, ``pause``, ``none``, ``disabled`` and
haven's own ``notify`` are recorded and left as they are.

A guest that stopped (STOPPED_DESTROYED, STOPPED_SHUTDOWN, SHUTDOWN_FINISHED: what the
monitor reports for a destroy or a shutdown) is restarted too, unless its owner asked Nova to
stop it: the host cannot tell the two apart, Nova's instance actions can (``StopHistory``).
An owner's os-stop is recorded as a ``stop`` action *before* libvirt sees the guest stop
(Nova asks, then powers off: up to its 60 s graceful shutdown timeout); a stop nobody asked
for has none. Nova's own power-state sync also records a ``stop`` and sets vm_state stopped,
but only *after* the event (nova-compute waits 15 s after a lifecycle event, or its periodic
sync), so neither vm_state stopped nor a later stop action is taken as the owner's wish. Nova's
power_state is not trusted either, for a crash or a stop: it still says running until that sync,
so a guest is "running again" only if a start or reboot was asked since the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from haven.domain.cloud import WATCHDOG_EXTRA_SPEC, Server, TaskState, VmState
from haven.domain.settings import RecoverySettings

# What the monitor reports when a guest stops without crashing: destroyed from outside, or shut down.
STOP_DETAILS = frozenset({"STOPPED_DESTROYED", "STOPPED_SHUTDOWN", "SHUTDOWN_FINISHED"})
# libvirt's CRASHED details are PANICKED and CRASHLOADED; the latter means a crash kernel (kdump)
# took over and will reboot the guest itself, so haven leaves it alone.
CRASH_DETAILS = frozenset({"STOPPED_FAILED", "STOPPED_CRASHED", "CRASHED_PANICKED"})
IO_ERROR = "IO_ERROR"
LIFECYCLE = "LIFECYCLE"
WATCHDOG = "WATCHDOG"
RESTART_METHODS = frozenset({"stop_start", "hard_reboot"})
WATCHDOG_RESET = "reset"
# Watchdog actions that leave the guest as the hypervisor left it (haven records the event only).
WATCHDOG_LEAVE = frozenset({"poweroff", "pause", "none", "disabled", "notify", "shutdown", "dump"})
WATCHDOG_ACTIONS = WATCHDOG_LEAVE | {WATCHDOG_RESET}


class VmEvent(StrEnum):
    CRASH = "crash"  # crashed, or hit an I/O error: restart it
    WATCHDOG = "watchdog"  # the guest's watchdog fired: follow its policy
    STOPPED = "stopped"  # the guest stopped: restart it unless its owner asked Nova to stop it
    OTHER = "other"  # not a failure haven recovers


@dataclass(frozen=True, slots=True)
class StopHistory:
    """What Nova's instance actions say about a guest that crashed or stopped (read around the event)."""

    owner_stop: bool = False  # a stop was asked through Nova just before the guest stopped (os-stop)
    restarted: bool = False  # a start or reboot was asked since the guest crashed or stopped


NO_HISTORY = StopHistory()


class VmAction(StrEnum):
    LEFT_TO_OWNER = "left_to_owner"  # HA_Mode=notify: its owner recovers it
    IGNORED = "ignored"  # not haven's to recover (not HA_Enabled, not a failure, gone)
    NOTHING = "nothing_to_do"  # already running again
    RECORDED = "recorded"  # watchdog policy other than reset: recorded, left as it is
    RESTART = "restart"  # stop, start, confirm
    HARD_REBOOT = "hard_reboot"  # reboot HARD, confirm
    LEFT_STOPPED = "left_stopped"  # crash loop: restarted too often within the window


@dataclass(frozen=True, slots=True)
class VmDecision:
    action: VmAction
    note: str


def classify(payload: Mapping[str, Any]) -> VmEvent:
    """Which kind of failure a VM notification reports (Masakari's payload, or haven's agent's)."""
    event = str(payload.get("event", "")).upper()
    detail = str(payload.get("vir_domain_event", "")).upper()
    if event == WATCHDOG:
        return VmEvent.WATCHDOG
    if event == IO_ERROR or (event == LIFECYCLE and detail in CRASH_DETAILS):
        return VmEvent.CRASH
    if event == LIFECYCLE and detail in STOP_DETAILS:
        return VmEvent.STOPPED
    return VmEvent.OTHER


def watchdog_resets(watchdog_action: str, default: str) -> bool:
    """True when the VM's watchdog policy asks haven to reset (hard reboot) the guest."""
    return (watchdog_action.strip().lower() or default) == WATCHDOG_RESET


def span(seconds: float) -> str:
    """A window as a person says it: 600 -> '10 min', 90 -> '90 s'."""
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def decide(
    payload: Mapping[str, Any],
    server: Server | None,
    restarts_in_window: int,
    settings: RecoverySettings,
    history: StopHistory = NO_HISTORY,
) -> VmDecision:
    """What haven does about one VM notification; ``server`` is None when the VM no longer exists.

    ``history`` matters for a crashed or stopped guest: was it started again since, was the stop
    asked through Nova. Nova's power_state is not trusted for either: it lags the event.
    """
    event = classify(payload)
    if server is None:
        return VmDecision(VmAction.IGNORED, "the VM does not exist")
    if server.left_to_owner:
        return VmDecision(
            VmAction.LEFT_TO_OWNER, "left to its owner (HA_Mode=notify): haven does not act on it"
        )
    if event is VmEvent.OTHER:
        what = f"{payload.get('event', '')} {payload.get('vir_domain_event', '')}".strip() or "no event"
        return VmDecision(VmAction.IGNORED, f"{what} is not a failure haven recovers")
    if not server.ha_enabled and not settings.process_all_instances:
        return VmDecision(
            VmAction.IGNORED,
            f"{server.name} is not HA_Enabled (and [recovery] process_all_instances is off): ignored",
        )
    if event is VmEvent.WATCHDOG:
        policy = server.watchdog_action or settings.watchdog_default_action
        if watchdog_resets(server.watchdog_action, settings.watchdog_default_action):
            return VmDecision(
                VmAction.HARD_REBOOT, f"watchdog fired; {WATCHDOG_EXTRA_SPEC}={policy}: hard reboot"
            )
        return VmDecision(
            VmAction.RECORDED, f"watchdog fired; {WATCHDOG_EXTRA_SPEC}={policy}: recorded, left as it is"
        )
    if event is VmEvent.STOPPED:
        if history.owner_stop or (server.task_state is TaskState.POWERING_OFF and not history.restarted):
            return VmDecision(
                VmAction.IGNORED, f"{server.name} was stopped through Nova (os-stop): not restarted"
            )
        if history.restarted:
            return VmDecision(VmAction.NOTHING, f"{server.name} was started again since: nothing to do")
        return _restart(server, restarts_in_window, settings, "stopped unexpectedly")
    if history.restarted:
        return VmDecision(VmAction.NOTHING, f"{server.name} was started again since: nothing to do")
    return _restart(server, restarts_in_window, settings, "crashed")


def _restart(server: Server, restarts_in_window: int, settings: RecoverySettings, why: str) -> VmDecision:
    """Restart the VM the configured way, unless it was restarted too often lately (a crash loop)."""
    if restarts_in_window >= settings.crash_loop_max_restarts:
        return VmDecision(
            VmAction.LEFT_STOPPED,
            f"restarted {restarts_in_window} times in {span(settings.crash_loop_window_s)}; left stopped",
        )
    if settings.vm_restart_method == "hard_reboot":
        return VmDecision(VmAction.HARD_REBOOT, f"{server.name} {why}: hard reboot")
    stopped = server.vm_state is VmState.STOPPED
    how = "start" if stopped else "stop, start"
    return VmDecision(VmAction.RESTART, f"{server.name} {why}: {how}")
