"""The evacuate step: move one VM off a fenced host, then verify it runs on a healthy host.

Called by the executor, many at a time (bounded). Its state is an ``EvacuateDetail`` (persisted as
the step's detail). Nova's evacuate is not idempotent, so the step commits an *issued* marker,
with the count of the server's evacuate actions Nova lists at that moment, before it asks. Whenever
it runs with the marker set (resumed by a restarted engine or a new leader, requeued after a lost
answer), it first reconciles with Nova's own records: a new evacuate action means Nova accepted
the call (then it verifies, or, if Nova reports the rebuild failed back on the fenced source, it
may ask once more, bounded by ``max_evacuate_attempts``); none means the call never reached Nova
and it may be asked. So no VM is evacuated while an earlier evacuation of it may still run.
Before every call the safety policy (haven.safety) and the source's BMC are asked again.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from haven.domain.cloud import PowerState, Server, ServerActionKind, TaskState, VmState
from haven.domain.errors import Conflict, NotFound, TemporaryError
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Step
from haven.domain.liveness import BmcPower
from haven.recovery.context import StepContext
from haven.recovery.outcome import Outcome, done, failed, requeue
from haven.safety import Action, Answer, Decision

ISSUE, VERIFY = "issue", "verify"
_EXTRA_KEYS = ("last_error", "error", "held", "unexpected_errors", "verified_at", "host", "failed_attempts")


@dataclass(frozen=True, slots=True)
class EvacuateDetail:
    """An evacuate step's persisted state (its detail), typed; the plan step writes the first fields."""

    source: HostName
    target: HostName | None  # None: Nova's scheduler chooses (a retry after a failed rebuild)
    name: str = ""
    ha: bool = False
    priority: int = 0
    vm_state_before: str = VmState.ACTIVE.value
    vcpus: int = 0
    ram_mb: int = 0
    disk_gb: int = 0
    phase: str = ISSUE
    issued: bool = False  # committed before the call: the call may have been made
    issued_at: float | None = None
    actions_before: int = 0  # the server's evacuate actions in Nova just before the call
    attempt: int = 1
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # errors, verification

    @classmethod
    def of(cls, detail: Mapping[str, Any]) -> EvacuateDetail:
        target = detail.get("target")
        return cls(
            source=HostName(str(detail["source"])),
            target=HostName(str(target)) if target else None,
            name=str(detail.get("name", "")),
            ha=bool(detail.get("ha", False)),
            priority=int(detail.get("priority", 0)),
            vm_state_before=str(detail.get("vm_state_before", VmState.ACTIVE.value)),
            vcpus=int(detail.get("vcpus", 0)),
            ram_mb=int(detail.get("ram_mb", 0)),
            disk_gb=int(detail.get("disk_gb", 0)),
            phase=str(detail.get("phase", ISSUE)),
            issued=bool(detail.get("issued", False)),
            issued_at=float(detail["issued_at"]) if detail.get("issued_at") is not None else None,
            actions_before=int(detail.get("actions_before", 0)),
            attempt=int(detail.get("attempt", 1)),
            extra={k: detail[k] for k in _EXTRA_KEYS if k in detail},
        )

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**out, **self.extra}

    def but(self, **changes: Any) -> EvacuateDetail:
        extra = dict(self.extra)
        for key in _EXTRA_KEYS:
            if key in changes:
                value = changes.pop(key)
                if value is None:
                    extra.pop(key, None)
                else:
                    extra[key] = value
        return dataclasses.replace(self, **changes, extra=extra)


def claim_of(detail: Mapping[str, Any]) -> tuple[HostName, int, int, int] | None:
    """What a planned evacuation not yet issued takes on its target (vcpus, ram, disk), or None."""
    d = EvacuateDetail.of(detail)
    if d.phase == VERIFY or d.issued or d.target is None:
        return None  # issued: the cloud already counts it on the target
    return d.target, d.vcpus, d.ram_mb, d.disk_gb


async def evacuate(step: Step, ctx: StepContext) -> Outcome:
    d = EvacuateDetail.of(step.detail)
    # Where Nova shows it now: on its way (or done), on the target; not yet, on the source. Both
    # lists are shared by the whole batch (one read per host per tick, not one per server).
    near = [d.target, d.source] if d.phase == VERIFY else [d.source, d.target]
    # A step about to issue asks the safety policy first and, if allowed, reads the server's evacuate
    # actions while the batch's lists are read, not after them (a held step costs Nova nothing). Read
    # earlier than the call, the count can only be lower than Nova's at the call: if it moves
    # meanwhile, the marker errs toward "accepted" (watch), never toward asking twice.
    decision = ctx.authorize(Action.EVACUATE, d.source, 0.0) if d.phase == ISSUE and not d.issued else None
    count = (
        asyncio.ensure_future(_evacuations(ctx, ServerId(step.subject)))
        if decision is not None and decision.answer is Answer.ALLOW
        else None
    )
    try:
        try:
            server = await ctx.server(ServerId(step.subject), near)
        except NotFound:
            return failed("the server no longer exists", d.to_dict())
        if d.phase == VERIFY:
            return _verify(server, d, ctx)
        if d.issued:
            seen = await _reconcile(server, d, ctx)
            if isinstance(seen, Outcome):
                return seen
            d = seen
        elif server.host != d.source or server.task_state is not TaskState.NONE:
            # Moved or busy although this step never asked: someone else's evacuation. Watch it.
            return _watch(d, ctx)
        return await _issue(step, server, d, ctx, decision, count)
    finally:
        if count is not None and not count.done():
            count.cancel()
        elif count is not None and not count.cancelled():
            count.exception()  # retrieved: an unused count's error is not logged as lost


async def _evacuations(ctx: StepContext, server_id: ServerId) -> int:
    """How many evacuate actions Nova lists for the server (all of them: no clock is compared)."""
    actions = await ctx.cloud.server_actions(server_id, 0.0)
    return sum(1 for a in actions if a.action == ServerActionKind.EVACUATE.value)


async def _reconcile(server: Server, d: EvacuateDetail, ctx: StepContext) -> Outcome | EvacuateDetail:
    """An evacuation may have been asked: Nova's records decide what comes next.

    Returns the Outcome when the step goes on watching (or ends), or the detail to issue with.
    """
    accepted = await _evacuations(ctx, server.id) > d.actions_before
    if not accepted:
        return d.but(issued=False)  # the call never reached Nova: it may be asked
    if server.host != d.source or server.task_state is not TaskState.NONE:
        return _watch(d, ctx)  # on its way or done: verify
    if server.vm_state is VmState.ERROR:
        return _after_failed_rebuild(server, d, ctx)
    # Accepted but no trace in the server yet: look again shortly (the verification has a timeout).
    return _watch(d, ctx)


def _after_failed_rebuild(server: Server, d: EvacuateDetail, ctx: StepContext) -> Outcome | EvacuateDetail:
    """Nova accepted an evacuation and its rebuild failed back on the fenced source: nothing runs."""
    fault = f"server in ERROR on {server.host}" + (f": {server.fault}" if server.fault else "")
    if d.attempt >= ctx.settings.max_evacuate_attempts:
        return failed(f"evacuation failed {d.attempt} time(s), {fault}", d.to_dict())
    tried = [*d.extra.get("failed_attempts", []), {"target": d.target, "fault": fault}]
    # Once more, and this time Nova's scheduler picks the host (the planned one just failed).
    return d.but(issued=False, attempt=d.attempt + 1, target=None, failed_attempts=tried, last_error=fault)


def _watch(d: EvacuateDetail, ctx: StepContext) -> Outcome:
    d = d.but(phase=VERIFY, issued_at=d.issued_at if d.issued_at is not None else ctx.now)
    return requeue(ctx.settings.verify_poll_interval_s, d.to_dict())


async def _issue(
    step: Step,
    server: Server,
    d: EvacuateDetail,
    ctx: StepContext,
    decision: Decision | None,
    count: asyncio.Future[int] | None,
) -> Outcome:
    if server.vm_state is VmState.ERROR and d.vm_state_before != VmState.ERROR.value and d.attempt == 1:
        # In ERROR although it was not when planned, and no evacuation of it is on record: Nova
        # failed it for some other reason; asking for an evacuation now could hide that.
        return failed(f"server in ERROR on {server.host} before any evacuation was asked", d.to_dict())
    if decision is None:  # resumed after an issued marker whose call never reached Nova: ask now
        decision = ctx.authorize(Action.EVACUATE, d.source, 0.0)
    if decision.answer is Answer.REFUSE:
        return failed(f"not evacuating: {decision.reason}", d.to_dict(), stop_recovery=True)
    if decision.answer is Answer.HOLD:
        return requeue(ctx.settings.hold_poll_interval_s, d.but(held=decision.reason).to_dict())
    if await ctx.power_status(d.source) is not BmcPower.OFF:
        return failed(
            f"{d.source} is not confirmed powered off any more: not evacuating, its VMs may be running there",
            d.to_dict(),
            stop_recovery=True,
        )
    before = await count if count is not None else await _evacuations(ctx, server.id)
    d = d.but(issued=True, issued_at=ctx.now, actions_before=before, held=None)
    ctx.persist(step, d.to_dict())  # the marker is committed before the call
    try:
        if server.vm_state is VmState.ERROR:
            await ctx.cloud.reset_state(server.id, VmState.ACTIVE)  # Nova evacuates ERROR servers once reset
        await ctx.cloud.evacuate(server.id, d.target)
    except TemporaryError as exc:
        # The answer may be lost while Nova accepted it: the next run reconciles before asking again.
        return requeue(exc.delay, d.but(last_error=str(exc)).to_dict())
    except (Conflict, NotFound) as exc:
        if await _evacuations(ctx, server.id) > before:
            return _watch(d, ctx)  # refused because an evacuation is already under way
        return failed(f"Nova refused the evacuation: {exc}", d.but(issued=False).to_dict())
    return _watch(d, ctx)


def _verify(server: Server, d: EvacuateDetail, ctx: StepContext) -> Outcome:
    """Recovered only when Nova shows it settled on another, healthy host: ACTIVE and running (or
    stopped, if it was stopped before)."""
    settled = server.task_state is TaskState.NONE
    if settled and server.vm_state is VmState.ERROR:
        if server.host == d.source:
            retry = _after_failed_rebuild(server, d, ctx)
            if isinstance(retry, Outcome):
                return retry
            return requeue(0.0, retry.but(phase=ISSUE).to_dict())  # asked again at once, checks first
        return failed(f"the rebuild ended in ERROR on {server.host}" + _fault(server), d.to_dict())
    if settled and server.host != d.source and ctx.host_is_healthy(server.host):
        wanted_stopped = d.vm_state_before == VmState.STOPPED.value
        if (wanted_stopped and server.vm_state is VmState.STOPPED) or (
            server.vm_state is VmState.ACTIVE and server.power_state is PowerState.RUNNING
        ):
            return done(d.but(verified_at=ctx.now, host=server.host, last_error=None).to_dict())
    issued_at = d.issued_at if d.issued_at is not None else ctx.now
    if ctx.now - issued_at > ctx.settings.verify_timeout_s:
        return failed(
            f"not verified within {ctx.settings.verify_timeout_s:g} s: vm_state {server.vm_state.value}, "
            f"power {server.power_state.value}, task {server.task_state.value or 'none'} on {server.host}"
            + _fault(server),
            d.to_dict(),
        )
    return requeue(ctx.settings.verify_poll_interval_s, d.to_dict())


def _fault(server: Server) -> str:
    return f" (Nova's fault: {server.fault})" if server.fault else ""
