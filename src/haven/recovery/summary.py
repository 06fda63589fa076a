"""Turns a finished notification's steps into its final status and a summary a person can read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from haven.domain.incidents import Alert, AlertKind, Notification, NotificationStatus, Step, StepState
from haven.recovery.vm_steps import CRASH_LOOP_KEY, OWNER_KEY, summarize_vm
from haven.recovery.workflows import DRY_RUN, EVACUATE, FENCE, PLAN, VM_CHECKS


def summarize(steps: Sequence[Step]) -> tuple[NotificationStatus, dict[str, Any]]:
    """The final status and summary; NEW means handed to the VM's owner (custom recovery), still open."""
    if not steps:
        return NotificationStatus.IGNORED, {"note": "no recovery workflow for this notification type yet"}
    check = next((s for s in steps if s.kind in VM_CHECKS), None)
    if check is not None:
        return summarize_vm(check, steps)
    evacuations = [s for s in steps if s.kind == EVACUATE]
    plan = next((s for s in steps if s.kind == PLAN and s.state is StepState.DONE), None)
    unplaced = list(plan.detail.get("unplaced", [])) if plan else []
    failures = [
        {"step": s.kind, "subject": s.subject, "error": s.detail.get("error", "")}
        for s in steps
        if s.state is StepState.FAILED
    ]
    summary: dict[str, Any] = {
        "evacuated": sum(1 for s in evacuations if s.state is StepState.DONE),
        "planned": len(evacuations),
        "unplaced": unplaced,
        "skipped": list(plan.detail.get("skipped", [])) if plan else [],
        OWNER_KEY: list(plan.detail.get(OWNER_KEY, [])) if plan else [],
        "failures": failures,
    }
    dry = next((s for s in steps if s.kind == DRY_RUN and s.state is StepState.DONE), None)
    if dry is not None:
        summary["dry_run"] = dry.detail.get("would", "")
    ok = not failures and not unplaced and all(s.state is StepState.DONE for s in steps)
    return (NotificationStatus.FINISHED if ok else NotificationStatus.FAILED), summary


def alerts_for(
    notification: Notification, steps: Sequence[Step], summary: dict[str, Any], now: float
) -> list[Alert]:
    """An operator must hear of a fence that failed, VMs left unplaced, and any other failed step."""

    def alert(kind: AlertKind, message: str) -> Alert:
        return Alert(uuid.uuid4().hex, kind, message, now, notification.segment_id, notification.hostname)

    alerts = []
    fence = next((s for s in steps if s.kind == FENCE and s.state is StepState.FAILED), None)
    if fence is not None and not fence.detail.get("refused_by_policy"):  # a refusal has its own alert
        alerts.append(alert(AlertKind.FENCE_FAILED, str(fence.detail.get("error", "fencing failed"))))
    if summary.get("unplaced"):
        names = ", ".join(u.get("name") or u["server"] for u in summary["unplaced"])
        alerts.append(
            alert(
                AlertKind.UNPLACED,
                f"{len(summary['unplaced'])} VM(s) of {notification.hostname} could not be placed: {names}",
            )
        )
    if summary.get(CRASH_LOOP_KEY):
        vm = summary.get("name") or summary.get("server", "")
        alerts.append(alert(AlertKind.CRASH_LOOP, f"VM {vm} on {notification.hostname}: {summary['note']}"))
    other = [f for f in summary.get("failures", []) if f["step"] != FENCE]
    if other:
        alerts.append(
            alert(
                AlertKind.RECOVERY_FAILED,
                f"{len(other)} recovery step(s) failed for {notification.hostname}: {other[0]['error']}",
            )
        )
    return alerts
