"""Steps of a host recovery before the evacuations: fence, force down, plan, enable reserved hosts.

Called by the executor. Each handler re-reads the world before it acts, so
running it again after a crash does no harm.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from haven.domain.cloud import Host, Server, ServerGroup
from haven.domain.errors import CloudError, NotFound, TemporaryError
from haven.domain.ids import HostName, ServerGroupId, ServerId
from haven.domain.incidents import Segment, SegmentHost, Step
from haven.domain.liveness import BmcPower
from haven.domain.plan import EvacuationPlan, TargetHost, UnplacedCause
from haven.recovery.context import HAVEN_MARK, StepContext
from haven.recovery.maintenance import take_out_of_service
from haven.recovery.outcome import NewStep, Outcome, done, failed, requeue
from haven.recovery.planner import plan_evacuation
from haven.recovery.targets import short_list_size
from haven.recovery.vm_steps import OWNER_KEY
from haven.recovery.workflows import ENABLE_RESERVED, EVACUATE
from haven.safety import Action, Answer

REFUSED_KEY = "refused_by_policy"  # a fence the safety policy refused (not one that failed)


@dataclass(frozen=True, slots=True)
class FenceDetail:
    """A fence step's persisted state (its detail), typed."""

    asked_since: float | None = None  # when the safety policy was first asked
    held: str | None = None  # the policy's reason while it holds
    first_try_at: float | None = None  # when the first power-off request was tried
    requested_at: float | None = None  # when a power-off request got through to the BMC
    last_error: str | None = None
    power: str | None = None  # "off" once confirmed
    confirmed_at: float | None = None
    unexpected_errors: int | None = None  # counted by the executor (a bug's retries)
    # After a power-off request that did not get through: when the BMC answered again.
    bmc_answered_at: float | None = None

    @classmethod
    def of(cls, detail: Mapping[str, Any]) -> FenceDetail:
        def num(key: str) -> float | None:
            value = detail.get(key)
            return float(value) if value is not None else None

        def text(key: str) -> str | None:
            value = detail.get(key)
            return str(value) if value else None

        return cls(
            num("asked_since"),
            text("held"),
            num("first_try_at"),
            num("requested_at"),
            text("last_error"),
            text("power"),
            num("confirmed_at"),
            int(detail["unexpected_errors"]) if detail.get("unexpected_errors") else None,
            num("bmc_answered_at"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


async def fence(step: Step, ctx: StepContext) -> Outcome:
    """Power the host off through its BMC and poll until the BMC confirms it is off.

    The safety policy (haven.safety) is asked first, and again on every run until it allows: it
    refuses a host that still speaks on any channel and holds one in a held segment. The power-off is
    always requested, even when the BMC already says off, so the host stays off; success or failure
    is judged only on a poll made after the request.
    """
    host = HostName(step.subject)
    d = FenceDetail.of(step.detail)
    try:
        if d.requested_at is None and d.first_try_at is not None and d.bmc_answered_at is None:
            # The last power-off request did not get through: the BMC answers first, and the
            # policy is asked again on readings taken after that (see haven.safety).
            await ctx.fencer.power_status(host)
            d = replace(d, bmc_answered_at=ctx.now)
    except TemporaryError as exc:
        return _retry_or_fail(host, replace(d, last_error=str(exc)), ctx)
    except CloudError as exc:
        return _fence_failed(host, str(exc), d.to_dict())
    if d.requested_at is None:
        d = replace(d, asked_since=d.asked_since if d.asked_since is not None else ctx.now)
        waited = ctx.now - (d.asked_since or ctx.now)
        # haven.safety says yes or no
        decision = ctx.authorize(Action.FENCE, host, waited, bmc_answered_at=d.bmc_answered_at)
        if decision.answer is Answer.REFUSE:
            # Not a fence that failed: the policy's safety_hold alert says why.
            refused = {**d.to_dict(), REFUSED_KEY: True}
            return failed(f"not fenced: {decision.reason}; nothing evacuated", refused, stop_recovery=True)
        if decision.answer is Answer.HOLD:
            after = decision.retry_after_s
            if after is None:
                after = ctx.settings.hold_poll_interval_s
            return requeue(after, replace(d, held=decision.reason).to_dict())
        d = replace(d, held=None)
    d = replace(d, first_try_at=d.first_try_at if d.first_try_at is not None else ctx.now)
    try:
        if d.requested_at is None:
            await ctx.fencer.power_off(host)
            d = replace(d, requested_at=ctx.now, last_error=None)
            return requeue(ctx.settings.fence_poll_interval_s, d.to_dict())
        status = await ctx.fencer.power_status(host)
        d = replace(d, last_error=None)
        if status is BmcPower.OFF:
            return done(replace(d, power="off", confirmed_at=ctx.now).to_dict())
    except TemporaryError as exc:
        # A request that did not get through is retried only after the BMC answers again.
        d = replace(
            d, last_error=str(exc), bmc_answered_at=None if d.requested_at is None else d.bmc_answered_at
        )
    except CloudError as exc:
        return _fence_failed(host, str(exc), d.to_dict())
    return _retry_or_fail(host, d, ctx)


def _retry_or_fail(host: HostName, d: FenceDetail, ctx: StepContext) -> Outcome:
    """Poll again, or fail once the fence timeout has passed."""
    # Once a request got through, the BMC gets the whole timeout from then to apply it.
    started = d.requested_at if d.requested_at is not None else (d.first_try_at or ctx.now)
    if ctx.now - started >= ctx.settings.fence_timeout_s:
        why = d.last_error or "the BMC did not report power off"
        return _fence_failed(host, f"{why} within {ctx.settings.fence_timeout_s:g} s", d.to_dict())
    return requeue(ctx.settings.fence_poll_interval_s, d.to_dict())


def _fence_failed(host: HostName, why: str, detail: Mapping[str, Any]) -> Outcome:
    return failed(
        f"could not fence {host}: {why}; its VMs are NOT evacuated, because they might still be running",
        detail,
        stop_recovery=True,
    )


async def force_down(step: Step, ctx: StepContext) -> Outcome:
    """Tell Nova at once that the compute service is down (no service_down_time wait) and disable it.

    Whether the service was enabled before is recorded, so returning the host to service
    later undoes only what haven did (an operator's or a reserved host's disable stays).
    """
    host = HostName(step.subject)
    was_enabled = await ctx.service_enabled_before(host)
    reason = f"{HAVEN_MARK} host failure, notification {ctx.notification.id}"
    await ctx.cloud.force_down(host, True)
    await ctx.cloud.disable_service(host, reason)
    maintenance = take_out_of_service(ctx, host, host_failed=True)  # on maintenance, as Masakari puts it
    return done({"disabled_reason": reason, "service_enabled_before": was_enabled, **maintenance})


async def plan(step: Step, ctx: StepContext) -> Outcome:
    """Decide where every VM of the failed host goes; the evacuation steps are added with the result."""
    failed_host = HostName(step.subject)
    decision = ctx.authorize(Action.EVACUATE, failed_host, 0.0)
    if decision.answer is Answer.HOLD:  # no plan while Nova can place nothing (the control plane)
        return requeue(ctx.settings.hold_poll_interval_s, {**step.detail, "held": decision.reason})
    made = await make_plan(ctx, failed_host)
    if isinstance(made, Outcome):
        return made
    segment, servers, result = made.segment, made.servers, made.result
    asked_since = float(step.detail.get("asked_since", ctx.now))
    no_target = result.unplaced and all(u.cause is UnplacedCause.NO_TARGET for u in result.unplaced)
    if no_target and not result.placements and ctx.now - asked_since < ctx.settings.no_target_wait_s:
        # No usable host at all: the segment's computes may be reporting again in a moment (after a
        # control-plane outage Nova counts them down until each reports). Look again a while.
        why = f"no usable target in the segment yet: waiting up to {ctx.settings.no_target_wait_s:g} s"
        return requeue(
            ctx.settings.hold_poll_interval_s, {**step.detail, "asked_since": asked_since, "held": why}
        )
    ctx.targets.charge(segment.id, result.placements, {s.id: s for s in servers})
    detail = {**_plan_detail(result, segment, servers), OWNER_KEY: owner_list(made.left_to_owner)}
    detail["servers_on_host"] = len(servers) + len(made.left_to_owner)
    return done(detail, _plan_steps(result, servers, failed_host))


@dataclass(frozen=True, slots=True)
class MadePlan:
    segment: Segment
    servers: list[Server]  # the servers haven recovers (every one on the host but those below)
    result: EvacuationPlan
    left_to_owner: list[Server]  # HA_Mode=notify: reported, never planned nor evacuated by haven


def owner_list(servers: Sequence[Server]) -> list[dict[str, str]]:
    return [{"server": s.id, "name": s.name} for s in servers]


async def make_plan(ctx: StepContext, failed_host: HostName) -> Outcome | MadePlan:
    """The plan for a failed host (also used by dry runs), or a failed Outcome saying why there is none.

    VMs whose metadata leaves them to their owner are set apart first: the pure planner never
    sees them, so they take no capacity and count neither as placed nor as unplaced.
    """
    try:
        member = ctx.store.get_host(failed_host)
        segment = ctx.store.get_segment(member.segment_id)
    except NotFound:
        return failed(f"{failed_host} is in no failover segment: nothing to plan", {}, stop_recovery=True)
    # The failed host's servers, every server group and the segment's hosts (the target book's
    # snapshot, when it is not fresh), read side by side, each once: the list is asked without
    # groups (on Nova that would read every group a second time); they are set here.
    listed, every_group, _ = await asyncio.gather(
        ctx.cloud.list_servers(failed_host, groups=False),
        ctx.cloud.list_server_groups(),
        ctx.targets.refresh(ctx.cloud, ctx.store, segment.id, ctx.now),
    )
    group_of = {member: g.id for g in every_group for member in g.members}
    on_host = [s if s.group is not None else replace(s, group=group_of.get(s.id)) for s in listed]
    owned = [s for s in on_host if s.left_to_owner]
    servers = [s for s in on_host if not s.left_to_owner]
    ids = {s.id for s in servers}
    # Only the groups of these servers matter; a cloud may have thousands.
    groups = {g.id: g for g in every_group if g.members & ids}
    presence = await _group_presence(ctx, servers, groups)

    def usable(host: Host, member: SegmentHost) -> bool:
        return host.name != failed_host and _usable_target(host, member, ctx)

    book, limit = ctx.targets, short_list_size(len(servers))
    targets = await book.candidates(ctx.cloud, ctx.store, segment.id, ctx.now, usable, presence, limit)
    result = _plan(servers, targets, groups, segment, ctx)
    if result.unplaced:
        # The emptiest hosts were not enough (capacity or anti-affinity): plan over the whole segment.
        every = await book.candidates(ctx.cloud, ctx.store, segment.id, ctx.now, usable, presence)
        if len(every) > len(targets):
            result = _plan(servers, every, groups, segment, ctx)
    return MadePlan(segment, servers, result, owned)


def _plan(
    servers: Sequence[Server],
    targets: Sequence[TargetHost],
    groups: Mapping[ServerGroupId, ServerGroup],
    segment: Segment,
    ctx: StepContext,
) -> EvacuationPlan:
    return plan_evacuation(
        servers,
        targets,
        groups,
        segment.recovery_method,
        evacuate_all_instances=ctx.settings.evacuate_all_instances,
        ignore_instances_in_error_state=ctx.settings.ignore_instances_in_error_state,
    )


def _plan_detail(result: EvacuationPlan, segment: Segment, servers: Sequence[Server]) -> dict[str, Any]:
    names = {s.id: s.name for s in servers}
    return {
        "recovery_method": segment.recovery_method.value,
        "segment": segment.name,
        "servers_on_host": len(servers),
        "placed": len(result.placements),
        "unplaced": [
            {"server": u.server_id, "name": names.get(u.server_id, ""), "reason": u.reason}
            for u in result.unplaced
        ],
        "skipped": [
            {"server": u.server_id, "name": names.get(u.server_id, ""), "reason": u.reason}
            for u in result.skipped
        ],
        "reserved_hosts_used": list(result.reserved_hosts_used),
    }


def _plan_steps(
    result: EvacuationPlan, servers: Sequence[Server], failed_host: HostName
) -> tuple[NewStep, ...]:
    by_id = {s.id: s for s in servers}
    steps = [NewStep(ENABLE_RESERVED, host) for host in result.reserved_hosts_used]
    for placement in result.placements:
        server = by_id[placement.server_id]
        steps.append(
            NewStep(
                EVACUATE,
                placement.server_id,
                {
                    "name": server.name,
                    "source": failed_host,
                    "target": placement.target,
                    "ha": server.ha_enabled,
                    "priority": server.priority,
                    "vm_state_before": server.vm_state.value,
                    "vcpus": server.flavor.vcpus,
                    "ram_mb": server.flavor.ram_mb,
                    "disk_gb": server.flavor.disk_gb,
                },
            )
        )
    return tuple(steps)


def _usable_target(host: Host, member: SegmentHost, ctx: StepContext) -> bool:
    if member.on_maintenance or host.forced_down or not host.service_up or not ctx.host_is_healthy(host.name):
        return False
    # Reserved hosts are kept disabled in Nova until a recovery needs them.
    return host.service_enabled or member.reserved


async def _group_presence(
    ctx: StepContext, servers: Sequence[Server], groups: Mapping[ServerGroupId, ServerGroup]
) -> dict[HostName, set[ServerGroupId]]:
    """Where the other members of the affected VMs' server groups run now."""
    on_failed = {s.id for s in servers}
    wanted = [
        (gid, ServerId(member_id))
        for gid in sorted({s.group for s in servers if s.group is not None})
        if (group := groups.get(gid)) is not None
        for member_id in sorted(group.members - on_failed)
    ]
    # The members are read side by side (the pool bounds how many at once), not one after another.
    found = await asyncio.gather(*(_host_of(ctx, member_id) for _, member_id in wanted))
    presence: dict[HostName, set[ServerGroupId]] = {}
    for (gid, _), host in zip(wanted, found, strict=True):
        if host is not None:
            presence.setdefault(host, set()).add(gid)
    return presence


async def _host_of(ctx: StepContext, server_id: ServerId) -> HostName | None:
    try:
        return (await ctx.cloud.get_server(server_id)).host
    except NotFound:
        return None


async def enable_reserved(step: Step, ctx: StepContext) -> Outcome:
    """A reserved host chosen by the plan joins service, and stops being reserved (as Masakari does)."""
    host = HostName(step.subject)
    await ctx.cloud.enable_service(host)
    ctx.update_member(host, reserved=False)
    return done({"enabled": True})
