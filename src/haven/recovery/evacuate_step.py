"""The evacuate step: move one VM off a fenced host, then verify it runs on a healthy host.

Called by the executor, many at a time (bounded). The step's phase is kept
in its persisted detail; after a crash, the handler re-reads the server to
learn whether the evacuate call had gone through, so no VM is evacuated twice.
"""

from __future__ import annotations

from typing import Any

from haven.domain.cloud import PowerState, Server, TaskState, VmState
from haven.domain.errors import Conflict, NotFound, TemporaryError
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Step
from haven.domain.liveness import BmcPower
from haven.recovery.context import StepContext
from haven.recovery.outcome import Outcome, done, failed, requeue

ISSUE, VERIFY = "issue", "verify"


async def evacuate(step: Step, ctx: StepContext) -> Outcome:
    detail: dict[str, Any] = dict(step.detail)
    server_id = ServerId(step.subject)
    try:
        server = await ctx.cloud.get_server(server_id)
    except NotFound:
        return failed("the server no longer exists", detail)
    if detail.get("phase", ISSUE) == ISSUE:
        return await _issue(server, detail, ctx, first_attempt=step.attempts <= 1)
    return _verify(server, detail, ctx)


async def _issue(server: Server, detail: dict[str, Any], ctx: StepContext, first_attempt: bool) -> Outcome:
    source = HostName(str(detail["source"]))
    if server.host != source or server.task_state is not TaskState.NONE:
        # The evacuate call went through before a restart: never issue it twice.
        return requeue(ctx.settings.verify_poll_interval_s, {**detail, "phase": VERIFY, "issued_at": ctx.now})
    if server.vm_state is VmState.ERROR and (
        detail.get("vm_state_before") != VmState.ERROR.value or not first_attempt
    ):
        # An earlier call may have been accepted and its rebuild failed back here: asking again
        # could run the VM twice, so stop and say so.
        return failed(
            f"the rebuild failed or may have been issued already: server in ERROR on {server.host}", detail
        )
    if await ctx.power_status(source) is not BmcPower.OFF:
        return failed(
            f"{source} is not confirmed powered off any more: not evacuating, its VMs may be running there",
            detail,
            stop_recovery=True,
        )
    try:
        if server.vm_state is VmState.ERROR:
            await ctx.cloud.reset_state(
                server.id, VmState.ACTIVE
            )  # Nova evacuates ERROR servers only once reset
        await ctx.cloud.evacuate(server.id, HostName(str(detail["target"])))
    except TemporaryError as exc:
        return requeue(exc.delay, {**detail, "last_error": str(exc)})
    except (Conflict, NotFound) as exc:
        return failed(f"Nova refused the evacuation: {exc}", detail)
    return requeue(ctx.settings.verify_poll_interval_s, {**detail, "phase": VERIFY, "issued_at": ctx.now})


def _verify(server: Server, detail: dict[str, Any], ctx: StepContext) -> Outcome:
    source = HostName(str(detail["source"]))
    settled = server.task_state is TaskState.NONE
    if settled and server.vm_state is VmState.ERROR:
        return failed(f"the rebuild ended in ERROR on {server.host}", detail)
    if settled and server.host != source and ctx.host_is_healthy(server.host):
        wanted_stopped = detail.get("vm_state_before") == VmState.STOPPED.value
        if wanted_stopped and server.vm_state is VmState.STOPPED:
            return done({**detail, "verified_at": ctx.now, "host": server.host})
        if server.vm_state is VmState.ACTIVE and server.power_state is PowerState.RUNNING:
            return done({**detail, "verified_at": ctx.now, "host": server.host})
    issued_at = float(detail.get("issued_at", ctx.now))
    if ctx.now - issued_at > ctx.settings.verify_timeout_s:
        return failed(
            f"not verified within {ctx.settings.verify_timeout_s:g} s: vm_state {server.vm_state.value}, "
            f"power {server.power_state.value}, task {server.task_state.value or 'none'} on {server.host}",
            detail,
        )
    return requeue(ctx.settings.verify_poll_interval_s, detail)
