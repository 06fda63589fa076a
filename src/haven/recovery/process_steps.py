"""Steps for a failed compute process on a live host: disable its service, re-enable it when back.

Nothing is evacuated: the host and its VMs are alive; only scheduling onto it stops.
"""

from __future__ import annotations

from haven.domain.errors import NotFound
from haven.domain.ids import HostName
from haven.domain.incidents import Step
from haven.recovery.context import HAVEN_MARK, StepContext
from haven.recovery.maintenance import maintenance_is_havens, take_out_of_service
from haven.recovery.outcome import Outcome, done, requeue
from haven.safety import Action, Answer


async def disable_service(step: Step, ctx: StepContext) -> Outcome:
    host = HostName(step.subject)
    decision = ctx.authorize(Action.DISABLE_SERVICE, host, 0.0)  # haven.safety: the PROCESS gate
    if decision.answer is not Answer.ALLOW:
        return requeue(ctx.settings.hold_poll_interval_s, {**step.detail, "held": decision.reason})
    if step.detail.get("held"):
        # Held while the control plane was the likely fault: a service that reports again now was
        # never down on its own account.
        state = await ctx.cloud.get_host(host)
        if state.service_up:
            return done({"disabled": False, "why": "the service reports again: nothing to disable"})
    if not await ctx.service_enabled_before(host):
        return done(
            {"disabled": False, "why": "the service was already disabled by someone else: left as it is"}
        )
    process = str(ctx.notification.payload.get("process_name", "nova-compute"))
    reason = f"{HAVEN_MARK} {process} down on {host}, notification {ctx.notification.id}"
    await ctx.cloud.disable_service(host, reason)
    maintenance = take_out_of_service(ctx, host)  # on maintenance, as Masakari puts it
    return done({"disabled_reason": reason, "service_enabled_before": True, **maintenance})


async def enable_service(step: Step, ctx: StepContext) -> Outcome:
    host = HostName(step.subject)
    try:
        member = ctx.store.get_host(host)
    except NotFound:
        return done({"enabled": False, "why": "host is in no segment"})
    if not member.disabled_by_haven:
        # An operator (not haven) disabled it: not ours to undo.
        return done({"enabled": False, "why": "service was not disabled by haven"})
    if member.on_maintenance and ctx.settings.return_to_service == "masakari":
        # An operator ends the maintenance; haven.service.engine_return enables the service then.
        return done({"enabled": False, "why": "host on maintenance: its operator returns it"})
    # With automatic return haven ends the maintenance it began, as haven.service.engine_return does.
    ended = member.on_maintenance and maintenance_is_havens(ctx.store, host)
    await ctx.cloud.enable_service(host)
    ctx.update_member(host, disabled_by_haven=False, **({"on_maintenance": False} if ended else {}))
    return done({"enabled": True, "maintenance_ended": ended})
