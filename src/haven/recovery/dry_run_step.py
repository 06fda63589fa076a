"""The dry-run step: decide and plan as for real, then say what would have been done, doing nothing.

Called by the executor for notifications of segments in dry-run mode, so operators can
watch haven's decisions on their own cloud before they let it act.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from haven.domain.cloud import HA_MODE_KEY, HA_MODE_NOTIFY
from haven.domain.errors import TemporaryError
from haven.domain.ids import HostName
from haven.domain.incidents import NotificationType, Step
from haven.recovery.context import StepContext
from haven.recovery.host_steps import make_plan, owner_list
from haven.recovery.outcome import Outcome, done
from haven.recovery.vm_policy import VmAction
from haven.recovery.vm_steps import OWNER_KEY, decision_for, server_of

NOTHING_DONE = "did nothing (dry run)"
_WOULD = {
    VmAction.RESTART: "would restart it",
    VmAction.HARD_REBOOT: "would hard-reboot it",
    VmAction.LEFT_STOPPED: "would leave it stopped",
    VmAction.RECORDED: "would record it only",
    VmAction.IGNORED: "would do nothing",
    VmAction.NOTHING: "would do nothing",
    VmAction.LEFT_TO_OWNER: "would leave it to its owner",
}


async def dry_run(step: Step, ctx: StepContext) -> Outcome:
    host = HostName(step.subject)
    if ctx.notification.type is NotificationType.PROCESS:
        started = str(ctx.notification.payload.get("event", "")).upper() == "STARTED"
        verb = "re-enable" if started else "disable"
        return done({"would": f"would {verb} the compute service on {host}; {NOTHING_DONE}"})
    if ctx.notification.type is NotificationType.VM:
        return done(await _vm(ctx))
    try:
        power = (await ctx.fencer.power_status(host)).value
    except TemporaryError as exc:
        power = f"unknown ({exc})"
    made = await make_plan(ctx, host)
    if isinstance(made, Outcome):
        return done({"would": f"would not recover {host}: {made.detail.get('error', '')}; {NOTHING_DONE}"})
    servers, result = made.servers, made.result
    names = {s.id: s.name for s in servers}
    spread = Counter(p.target for p in result.placements)
    where = ", ".join(f"{target} ({n})" for target, n in sorted(spread.items()))
    would = (
        f"would fence {host} (BMC reports power {power}), force down and disable its compute service, "
        f"evacuate {len(result.placements)} VM(s)" + (f" to {where}" if where else "")
    )
    if result.unplaced:
        would += f"; {len(result.unplaced)} could not be placed ({result.unplaced[0].reason})"
    if made.left_to_owner:
        would += f"; leave {len(made.left_to_owner)} VM(s) to their owner ({HA_MODE_KEY}={HA_MODE_NOTIFY})"
    would += f"; held by no gate; {NOTHING_DONE}"
    detail: dict[str, Any] = {
        "would": would,
        "placements": [
            {"server": p.server_id, "name": names.get(p.server_id, ""), "target": p.target}
            for p in result.placements
        ],
        "unplaced": [
            {"server": u.server_id, "name": names.get(u.server_id, ""), "reason": u.reason}
            for u in result.unplaced
        ],
        OWNER_KEY: owner_list(made.left_to_owner),
    }
    return done(detail)


async def _vm(ctx: StepContext) -> dict[str, Any]:
    server, decision = await decision_for(ctx.notification, ctx)
    vm = server.name if server else server_of(ctx.notification)
    left = decision.action is VmAction.LEFT_TO_OWNER
    if left:
        would = f"would leave VM {vm} to its owner ({HA_MODE_KEY}={HA_MODE_NOTIFY})"
    else:
        would = f"{decision.note}; {_WOULD[decision.action]}"
    found = {
        "server": server.id if server else server_of(ctx.notification),
        "name": server.name if server else "",
    }
    return {**found, OWNER_KEY: left, "action": decision.action.value, "would": f"{would}; {NOTHING_DONE}"}
