"""A notification's persisted steps as Masakari shows recoveries: workflow details and vmoves.

Called by the notification show route (microversion 1.1+: ``recovery_workflow_details``)
and the vmoves routes (1.3+). Masakari reports taskflow tasks; haven's steps of one kind
become one task (every evacuate step is a line in ``EvacuateInstancesTask``), in the
order the recovery met them. A vmove is one evacuate step. Custom recovery's audit trail
(claim, progress, finish, fail by an external system) is one ``ExternalRecoveryTask``
whose progress details are the entries, with the percentage reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from haven.api.identity import number, vmove_uuid
from haven.api.views import timestamp
from haven.domain.incidents import Notification, Step, StepState
from haven.recovery.custom import FAIL, FINISH
from haven.recovery.workflows import (
    DISABLE_SERVICE,
    DRY_RUN,
    ENABLE_RESERVED,
    ENABLE_SERVICE,
    EVACUATE,
    EXTERNAL,
    FENCE,
    FORCE_DOWN,
    PLAN,
    VM_OWNER,
)

Json = dict[str, Any]

TASK_NAMES = {
    FENCE: "FenceHostTask",
    FORCE_DOWN: "ForceDownComputeServiceTask",
    PLAN: "PrepareHAEnabledInstancesTask",
    ENABLE_RESERVED: "EnableReservedHostTask",
    EVACUATE: "EvacuateInstancesTask",
    DISABLE_SERVICE: "DisableComputeNodeTask",
    ENABLE_SERVICE: "EnableComputeNodeTask",
    DRY_RUN: "DryRunTask",
    VM_OWNER: "CheckVMOwnerTask",
    EXTERNAL: "ExternalRecoveryTask",
}
# taskflow's state names, which Masakari reports.
TASK_STATES = {
    StepState.PENDING: "PENDING",
    StepState.RUNNING: "RUNNING",
    StepState.DONE: "SUCCESS",
    StepState.FAILED: "FAILURE",
    StepState.SKIPPED: "IGNORE",
}
VMOVE_STATUSES = {
    StepState.PENDING: "pending",
    StepState.RUNNING: "ongoing",
    StepState.DONE: "succeeded",
    StepState.FAILED: "failed",
    StepState.SKIPPED: "ignored",
}
_FINISHED = {StepState.DONE, StepState.FAILED, StepState.SKIPPED}


def _message(step: Step) -> str:
    detail = step.detail
    if step.kind == EXTERNAL:
        return f"{detail.get('event', '?')} by {step.subject}: {detail.get('message', '')}"
    if step.kind == DRY_RUN and "would" in detail:
        return str(detail["would"])
    if step.kind == VM_OWNER and "note" in detail:
        return f"VM {detail.get('name') or detail.get('server', '?')}: {detail['note']}"
    if step.kind == EVACUATE:
        what = f"instance {detail.get('name') or step.subject} from {detail.get('source', '?')} "
        what += f"to {detail.get('host') or detail.get('target', '?')}"
    else:
        what = f"{step.kind.replace('_', ' ')} {step.subject}"
    error = detail.get("error") or detail.get("last_error")
    return f"{what}: {VMOVE_STATUSES[step.state]}" + (f" ({error})" if error else "")


def _task_state(states: Sequence[StepState]) -> str:
    if StepState.FAILED in states:
        return TASK_STATES[StepState.FAILED]
    if all(state in _FINISHED for state in states):
        return TASK_STATES[StepState.DONE]
    if all(state is StepState.PENDING for state in states):
        return TASK_STATES[StepState.PENDING]
    return TASK_STATES[StepState.RUNNING]


def _external_task(entries: Sequence[Step]) -> Json:
    """The audit trail of an external recovery as one task: its entries, with their percentages."""
    events = [str(step.detail.get("event", "")) for step in entries]
    state = "RUNNING"
    if FINISH in events:
        state = TASK_STATES[StepState.DONE]
    elif FAIL in events:
        state = TASK_STATES[StepState.FAILED]
    progress = 0.0
    details: list[Json] = []
    for step in entries:
        if step.detail.get("percentage") is not None:
            progress = round(float(step.detail["percentage"]) / 100, 2)
        details.append(
            {
                "timestamp": timestamp(step.finished_at or step.started_at, sep=" "),
                "message": _message(step),
                "progress": str(progress),
            }
        )
    return {"name": TASK_NAMES[EXTERNAL], "state": state, "progress": progress, "progress_details": details}


def workflow_details(steps: Sequence[Step]) -> list[Json]:
    by_kind: dict[str, list[Step]] = {}
    for step in sorted(steps, key=lambda s: s.seq):
        by_kind.setdefault(step.kind, []).append(step)
    details: list[Json] = []
    for kind, group in by_kind.items():
        if kind == EXTERNAL:
            details.append(_external_task(group))
            continue
        finished = sum(step.state in _FINISHED for step in group)
        details.append(
            {
                "name": TASK_NAMES.get(kind, kind),
                "state": _task_state([step.state for step in group]),
                "progress": round(finished / len(group), 2),
                "progress_details": [
                    {
                        "timestamp": timestamp(step.finished_at or step.started_at, sep=" "),
                        "message": _message(step),
                        "progress": "1.0" if step.state in _FINISHED else "0.0",
                    }
                    for step in group
                ],
            }
        )
    return details


def vmove_view(notification: Notification, step: Step) -> Json:
    uuid = vmove_uuid(notification.id, step.seq)
    detail = step.detail
    error = detail.get("error") or detail.get("last_error")
    return {
        "id": number(uuid),
        "uuid": uuid,
        "notification_uuid": notification.id,
        "instance_uuid": step.subject,
        "instance_name": detail.get("name"),
        "source_host": detail.get("source"),
        "dest_host": detail.get("host") or detail.get("target"),
        "start_time": timestamp(step.started_at),
        "end_time": timestamp(step.finished_at),
        "status": VMOVE_STATUSES[step.state],
        "type": "evacuation",
        "message": str(error) if error else None,
        "created_at": timestamp(step.started_at),
        "updated_at": timestamp(step.finished_at),
        "deleted": False,
        "deleted_at": None,
    }


def vmoves(notification: Notification, steps: Sequence[Step]) -> list[Json]:
    return [
        vmove_view(notification, step) for step in sorted(steps, key=lambda s: s.seq) if step.kind == EVACUATE
    ]
