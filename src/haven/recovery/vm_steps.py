"""The steps of a VM notification: decide, then stop, start (or hard reboot) and confirm the VM.

Called by the executor (and, for the decision, by the dry-run step); the summary of a
finished VM notification is made here too. ``check_vm`` reads the VM and the recent
recoveries of it, decides (recovery/vm_policy.py) and adds the steps that follow. Each
action step re-reads the VM and Nova's instance actions since the notification opened
before acting, so an engine that restarts between asking and recording never asks twice.
None of them sleeps: they return "check again in N s".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from haven.domain.cloud import Server, ServerActionKind, TaskState, VmState
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import ServerId
from haven.domain.incidents import (
    RECOVERY_SUMMARY_KEY,
    Notification,
    NotificationStatus,
    NotificationType,
    Step,
    StepState,
)
from haven.recovery.context import StepContext
from haven.recovery.outcome import NewStep, Outcome, done, failed, requeue
from haven.recovery.vm_policy import NO_HISTORY, StopHistory, VmAction, VmDecision, VmEvent, classify, decide
from haven.recovery.workflows import CONFIRM_VM, REBOOT_VM, START_VM, STOP_VM, VM_CHECK, VM_OWNER

OWNER_KEY = "left_to_owner"
RESTARTED_KEY = "restarted"  # in a VM notification's summary: haven asked the VM to start or reboot
CRASH_LOOP_KEY = "crash_loop"
_RECENT_LIMIT = 200  # VM notifications of the host read to count a VM's recent restarts
# An owner's os-stop is asked before the guest stops: up to Nova's 60 s graceful shutdown, and more.
OWNER_STOP_LEAD_S = 120.0
# Host and Nova clocks differ a little, and Nova's start_time may have whole seconds only (MariaDB);
# Nova's own power-state sync records its stop 15 s or more after the event, well past this.
CLOCK_SLACK_S = 5.0
_FOLLOWING = {
    VmAction.RESTART: (STOP_VM, START_VM, CONFIRM_VM),
    VmAction.HARD_REBOOT: (REBOOT_VM, CONFIRM_VM),
}


def server_of(notification: Notification) -> ServerId:
    return ServerId(str(notification.payload.get("instance_uuid", "")))


async def decision_for(notification: Notification, ctx: StepContext) -> tuple[Server | None, VmDecision]:
    """The VM as the cloud shows it now, and what haven does about this notification."""
    try:
        server: Server | None = await ctx.cloud.get_server(server_of(notification))
    except NotFound:
        server = None
    recent = recent_restarts(ctx, notification) if server is not None else 0
    history = NO_HISTORY
    if server is not None and classify(notification.payload) in (VmEvent.STOPPED, VmEvent.CRASH):
        history = await stop_history(ctx, server.id, notification.generated_at)
    return server, decide(notification.payload, server, recent, ctx.settings, history)


async def stop_history(ctx: StepContext, server_id: ServerId, stopped_at: float) -> StopHistory:
    """Nova's actions around the moment the guest stopped: was a stop asked before, a start since?"""
    actions = await ctx.cloud.server_actions(server_id, since=stopped_at - OWNER_STOP_LEAD_S)
    again = (ServerActionKind.START.value, ServerActionKind.REBOOT.value)
    power = (ServerActionKind.STOP.value, *again)
    # The last power action before the guest stopped: a stop asked then is why it stopped; a stop
    # followed by a start (haven's own restart of an earlier failure) is history.
    before = [a.action for a in actions if a.action in power and a.at <= stopped_at + CLOCK_SLACK_S]
    owner_stop = bool(before) and before[-1] == ServerActionKind.STOP.value
    restarted = any(a.action in again and a.at >= stopped_at for a in actions)
    return StopHistory(owner_stop=owner_stop, restarted=restarted)


def recent_restarts(ctx: StepContext, notification: Notification) -> int:
    """How many earlier VM notifications of this VM within the crash-loop window haven restarted it in."""
    since = ctx.now - ctx.settings.crash_loop_window_s
    vm = server_of(notification)
    count = 0
    earlier = ctx.store.list_notifications(
        type=NotificationType.VM, hostname=notification.hostname, limit=_RECENT_LIMIT
    )
    for n in earlier:  # newest first
        if n.created_at < since:
            break
        if n.id != notification.id and server_of(n) == vm:
            count += bool((n.payload.get(RECOVERY_SUMMARY_KEY) or {}).get(RESTARTED_KEY))
    return count


async def check_vm(step: Step, ctx: StepContext) -> Outcome:
    server, decision = await decision_for(ctx.notification, ctx)
    detail: dict[str, Any] = {
        "server": server.id if server else server_of(ctx.notification),
        "name": server.name if server else "",
        "action": decision.action.value,
        "note": decision.note,
        OWNER_KEY: decision.action is VmAction.LEFT_TO_OWNER,
    }
    kinds = _FOLLOWING.get(decision.action, ())
    return done(detail, tuple(NewStep(kind, str(detail["server"])) for kind in kinds))


async def _asked(ctx: StepContext, server_id: ServerId, *kinds: ServerActionKind) -> bool:
    """Was any of these actions asked of the VM since this notification opened (by haven or anyone)?"""
    actions = await ctx.cloud.server_actions(server_id, since=ctx.notification.created_at)
    wanted = {k.value for k in kinds}
    return any(a.action in wanted for a in actions)


def _poll(step: Step, ctx: StepContext, **more: Any) -> Outcome:
    return requeue(ctx.settings.verify_poll_interval_s, {**step.detail, **more})


async def stop_vm(step: Step, ctx: StepContext) -> Outcome:
    server = await ctx.cloud.get_server(ServerId(step.subject))
    if server.task_state is not TaskState.NONE:
        return _poll(step, ctx, waiting_for=server.task_state.value)
    if server.vm_state is VmState.STOPPED:
        return done({**step.detail, "stopped": True})
    if await _asked(ctx, server.id, ServerActionKind.STOP):
        # Asked, and over, yet not stopped: Nova could not stop it; start_vm hard-reboots instead.
        return done({**step.detail, "stopped": False, "note": "the stop did not take: hard reboot next"})
    try:
        await ctx.cloud.stop_server(server.id)
    except Conflict as exc:
        return done({**step.detail, "stopped": False, "stop_error": str(exc)})
    return _poll(step, ctx, issued_at=ctx.now, asked=True)


async def start_vm(step: Step, ctx: StepContext) -> Outcome:
    """Bring the VM up: start it if it is stopped; hard-reboot it if it could not be stopped."""
    server = await ctx.cloud.get_server(ServerId(step.subject))
    if server.task_state is not TaskState.NONE:
        return _poll(step, ctx, waiting_for=server.task_state.value)
    if server.is_running or await _asked(ctx, server.id, ServerActionKind.START, ServerActionKind.REBOOT):
        # Running, or asked once already: confirm_vm judges the result; asking twice is never right.
        return done({**step.detail, "running": server.is_running})
    try:
        if server.vm_state is VmState.STOPPED:
            await ctx.cloud.start_server(server.id)
            how = ServerActionKind.START
        else:
            await ctx.cloud.reboot_server(server.id)
            how = ServerActionKind.REBOOT
    except Conflict as exc:
        return failed(str(exc), step.detail, stop_recovery=True)
    return _poll(step, ctx, issued_at=ctx.now, asked=True, how=how.value)


async def reboot_vm(step: Step, ctx: StepContext) -> Outcome:
    server = await ctx.cloud.get_server(ServerId(step.subject))
    if server.task_state is not TaskState.NONE:
        return _poll(step, ctx, waiting_for=server.task_state.value)
    if await _asked(ctx, server.id, ServerActionKind.REBOOT):
        return done({**step.detail, "running": server.is_running})
    try:
        await ctx.cloud.reboot_server(server.id)
    except Conflict as exc:
        return failed(str(exc), step.detail, stop_recovery=True)
    return _poll(step, ctx, issued_at=ctx.now, asked=True, how=ServerActionKind.REBOOT.value)


async def confirm_vm(step: Step, ctx: StepContext) -> Outcome:
    server = await ctx.cloud.get_server(ServerId(step.subject))
    if server.is_running:
        return done({**step.detail, "running": True, "confirmed_at": ctx.now})
    if server.task_state is TaskState.NONE and server.vm_state in (VmState.STOPPED, VmState.ERROR):
        return failed(
            f"{server.name} did not come back: {server.vm_state.value}, power {server.power_state.value}",
            step.detail,
        )
    if step.started_at is not None and ctx.now - step.started_at > ctx.settings.verify_timeout_s:
        return failed(f"{server.name} not running after {ctx.settings.verify_timeout_s:g} s", step.detail)
    return _poll(step, ctx)


# The executor runs these kinds with these handlers.
HANDLERS: Mapping[str, Callable[[Step, StepContext], Awaitable[Outcome]]] = {
    VM_OWNER: check_vm,
    VM_CHECK: check_vm,
    STOP_VM: stop_vm,
    START_VM: start_vm,
    REBOOT_VM: reboot_vm,
    CONFIRM_VM: confirm_vm,
}


# ---- the summary of a finished VM notification ---------------------------------------------------


def summarize_vm(check: Step, steps: Sequence[Step]) -> tuple[NotificationStatus, dict[str, Any]]:
    """NEW means handed to the VM's owner (custom recovery); a crash loop is FAILED, with an alert."""
    detail: Mapping[str, Any] = check.detail
    vm = {"server": detail.get("server", check.subject), "name": detail.get("name", "")}
    if check.state is not StepState.DONE:
        return NotificationStatus.FAILED, {
            **vm,
            "note": detail.get("error", ""),
            "failures": _failures(steps),
        }
    action = str(detail.get("action", VmAction.LEFT_TO_OWNER if detail.get(OWNER_KEY) else VmAction.IGNORED))
    note = str(detail.get("note", ""))
    if action == VmAction.LEFT_TO_OWNER:
        return NotificationStatus.NEW, {OWNER_KEY: [vm], "note": note}
    if action in (VmAction.IGNORED, VmAction.NOTHING):
        return NotificationStatus.IGNORED, {**vm, "action": action, "note": note}
    if action == VmAction.LEFT_STOPPED:
        return NotificationStatus.FAILED, {**vm, "action": action, "note": note, CRASH_LOOP_KEY: True}
    restarted = any(s.kind in (START_VM, REBOOT_VM) and s.detail.get("asked") for s in steps)
    failures = _failures(steps)
    ok = not failures and all(s.state is StepState.DONE for s in steps)
    if ok and action in (VmAction.RESTART, VmAction.HARD_REBOOT):
        note = f"{note}; running again"
    summary = {**vm, "action": action, "note": note, RESTARTED_KEY: restarted, "failures": failures}
    return (NotificationStatus.FINISHED if ok else NotificationStatus.FAILED), summary


def _failures(steps: Sequence[Step]) -> list[dict[str, Any]]:
    return [
        {"step": s.kind, "subject": s.subject, "error": s.detail.get("error", "")}
        for s in steps
        if s.state is StepState.FAILED
    ]
