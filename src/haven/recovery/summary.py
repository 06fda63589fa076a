"""Turns a finished notification's steps into its final status and a summary a person can read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from haven.domain.incidents import NotificationStatus, Step, StepState
from haven.recovery.workflows import EVACUATE, PLAN


def summarize(steps: Sequence[Step]) -> tuple[NotificationStatus, dict[str, Any]]:
    if not steps:
        return NotificationStatus.IGNORED, {"note": "no recovery workflow for this notification type yet"}
    evacuations = [s for s in steps if s.kind == EVACUATE]
    plan = next((s for s in steps if s.kind == PLAN and s.state is StepState.DONE), None)
    unplaced = list(plan.detail.get("unplaced", [])) if plan else []
    failures = [
        {"step": s.kind, "subject": s.subject, "error": s.detail.get("error", "")}
        for s in steps if s.state is StepState.FAILED
    ]
    summary: dict[str, Any] = {
        "evacuated": sum(1 for s in evacuations if s.state is StepState.DONE),
        "planned": len(evacuations),
        "unplaced": unplaced,
        "skipped": list(plan.detail.get("skipped", [])) if plan else [],
        "failures": failures,
    }
    ok = not failures and not unplaced and all(s.state is StepState.DONE for s in steps)
    return (NotificationStatus.FINISHED if ok else NotificationStatus.FAILED), summary
