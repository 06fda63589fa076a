"""What to do about a failed VM: the pure decision behind the VM recovery workflow.

Called by the VM steps (recovery/vm_steps.py) and by the dry-run step, with the VM as
the cloud shows it and the number of times haven restarted it lately. Which events are
failures follows Masakari's instance monitor payloads (``event`` and ``vir_domain_event``):
a guest that crashed or stopped unexpectedly (LIFECYCLE STOPPED_FAILED, as Masakari
recovers it, and libvirt's crash details) or hit an I/O error is restarted; a fired
watchdog follows the VM's ``hw:watchdog_action`` (Nova's name, flavor extra spec or image
property): ``reset`` (haven's default) is a hard reboot, ``poweroff``, ``pause``, ``none``,
``disabled`` and haven's own ``notify`` are recorded and left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from haven.domain.cloud import WATCHDOG_EXTRA_SPEC, Server, VmState
from haven.domain.settings import RecoverySettings

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
    CRASH = "crash"  # crashed, stopped unexpectedly, or I/O error: restart it
    WATCHDOG = "watchdog"  # the guest's watchdog fired: follow its policy
    OTHER = "other"  # not a failure haven recovers


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
    return VmEvent.OTHER


def watchdog_resets(watchdog_action: str, default: str) -> bool:
    """True when the VM's watchdog policy asks haven to reset (hard reboot) the guest."""
    return (watchdog_action.strip().lower() or default) == WATCHDOG_RESET


def span(seconds: float) -> str:
    """A window as a person says it: 600 -> '10 min', 90 -> '90 s'."""
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def decide(
    payload: Mapping[str, Any], server: Server | None, restarts_in_window: int, settings: RecoverySettings
) -> VmDecision:
    """What haven does about one VM notification; ``server`` is None when the VM no longer exists."""
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
    if server.is_running:
        return VmDecision(VmAction.NOTHING, f"{server.name} is running again: nothing to do")
    if restarts_in_window >= settings.crash_loop_max_restarts:
        return VmDecision(
            VmAction.LEFT_STOPPED,
            f"restarted {restarts_in_window} times in {span(settings.crash_loop_window_s)}; left stopped",
        )
    if settings.vm_restart_method == "hard_reboot":
        return VmDecision(VmAction.HARD_REBOOT, f"{server.name} crashed: hard reboot")
    stopped = server.vm_state is VmState.STOPPED
    how = "start" if stopped else "stop, start"
    return VmDecision(VmAction.RESTART, f"{server.name} crashed: {how}")
