"""The ordered steps of each kind of recovery, as Masakari's flows define them, made resumable.

Called by the engine when it opens a notification; the plan step adds the
per-VM steps later, in the same transaction that records the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from haven.domain.incidents import (
    EXTERNAL_STEP,
    RECOVERY_MODE_KEY,
    Notification,
    NotificationType,
    SegmentMode,
    Step,
)

__all__ = ["EXTERNAL", "RECOVERY_MODE_KEY", "initial_steps"]

FENCE = "fence"
FORCE_DOWN = "force_down"
PLAN = "plan"
ENABLE_RESERVED = "enable_reserved_host"
EVACUATE = "evacuate"
DISABLE_SERVICE = "disable_compute_service"
ENABLE_SERVICE = "enable_compute_service"
DRY_RUN = "dry_run"
VM_OWNER = "check_vm_owner"  # older notifications' first VM step: runs as check_vm does
VM_CHECK = "check_vm"  # decide: left to its owner, ignored, recorded, restarted, or left stopped
STOP_VM = "stop_vm"
START_VM = "start_vm"
REBOOT_VM = "reboot_vm"
CONFIRM_VM = "confirm_vm"
VM_CHECKS = frozenset({VM_CHECK, VM_OWNER})
EXTERNAL = EXTERNAL_STEP  # what an external system reported (custom recovery's audit trail)

# Steps of these kinds run side by side (bounded); every other kind runs alone, in order.
PARALLEL_KINDS = frozenset({EVACUATE})
PROCESS_STARTED = "STARTED"


def initial_steps(notification: Notification, mode: SegmentMode = SegmentMode.AUTOMATIC) -> list[Step]:
    """The steps to run; none in notify mode, where an external system recovers."""
    if mode is SegmentMode.NOTIFY:
        return []
    kinds = _kinds(notification.type, notification.payload)
    if mode is SegmentMode.DRY_RUN and kinds:
        kinds = [DRY_RUN]
    return [Step(notification.id, seq, kind, notification.hostname) for seq, kind in enumerate(kinds)]


def _kinds(type_: NotificationType, payload: Mapping[str, Any]) -> list[str]:
    if type_ is NotificationType.COMPUTE_HOST:
        return [FENCE, FORCE_DOWN, PLAN]
    if type_ is NotificationType.PROCESS:
        started = str(payload.get("event", "")).upper() == PROCESS_STARTED
        return [ENABLE_SERVICE] if started else [DISABLE_SERVICE]
    # The check adds the VM's own steps (stop, start, confirm; or hard reboot, confirm) once it knows
    # what the VM needs (recovery/vm_steps.py).
    return [VM_CHECK]
