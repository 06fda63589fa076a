"""The judgement of the per-host drills (a guest crash, a crash loop, a watchdog, a silent agent) and
the ``double_actions`` counter of every drill, all from the simulated cloud's ground truth.

Called by the drill runner once a drill is over.
"""

from __future__ import annotations

from collections.abc import Sequence

from haven.cloud.sim import SimCloud
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind, Notification, NotificationStatus, NotificationType
from haven.drill.report import DrillReport
from haven.recovery.vm_steps import CRASH_LOOP_KEY, RESTARTED_KEY
from haven.recovery.workflows import CONFIRM_VM


def double_actions(cloud: SimCloud, notifications: Sequence[Notification], now: float) -> int:
    """Actions asked twice: the same action on the same VM within one recovery, or an unsafe double
    evacuation (an earlier one in flight or succeeded: SimCloud.unsafe_double_evacuations; a retry
    after a rebuild that failed is not one).

    One recovery spans its notification's life (opened to last saved, or now while still open).
    """
    flagged: set[tuple[str, ServerId, str]] = set()
    for n in notifications:
        end = n.updated_at if n.status.is_terminal else now
        for sid in {a.server_id for a in cloud.vm_actions if n.created_at <= a.at <= end}:
            for action, count in cloud.action_counts(sid, n.created_at, end).items():
                if count > 1 and action != "evacuate":
                    flagged.add((n.id, sid, action))
    twice = {("", e.server_id, "evacuate") for e in cloud.unsafe_double_evacuations()}
    return len(flagged | twice)


def left_stopped(notifications: Sequence[Notification], vms: Sequence[ServerId]) -> list[ServerId]:
    """VMs haven deliberately left stopped after a crash loop (its notification says so)."""
    return [
        sid
        for sid in vms
        if any(
            n.payload.get("instance_uuid") == sid and (n.payload.get("recovery") or {}).get(CRASH_LOOP_KEY)
            for n in notifications
        )
    ]


def vm_times(events: Sequence[EngineEvent], fault_at: float) -> tuple[float | None, float | None]:
    """Seconds from the fault to the first VM notification, and to the last confirmed-running VM."""
    opened = [
        e.at - fault_at
        for e in events
        if e.kind is EventKind.NOTIFICATION_CREATED and e.detail.get("type") == NotificationType.VM.value
    ]
    confirmed = [
        e.at - fault_at
        for e in events
        if e.kind is EventKind.STEP_FINISHED
        and e.detail.get("kind") == CONFIRM_VM
        and e.detail.get("state") == "done"
    ]
    return (
        round(min(opened), 3) if opened else None,
        round(max(confirmed), 3) if confirmed else None,
    )


def vm_restart_verdict(r: DrillReport, cloud: SimCloud, vms: Sequence[ServerId]) -> tuple[str, list[str]]:
    """One guest failed: it must run again (not hung), by one start or one reboot, in one recovery."""
    asked = {sid: sum(cloud.action_counts(sid, 0.0, float("inf")).values()) for sid in vms}
    checks = [
        f"{r.ha_vms_recovered} of {r.ha_vms_affected} VMs running again (ground truth, not hung)",
        f"actions asked of them: {sum(asked.values())}",
        f"evacuations: {len(cloud.evacuations)} (expected none)",
    ]
    ok = r.vms_lost == 0 and not cloud.evacuations and all(0 < n <= 2 for n in asked.values())
    return ("recovered" if ok else "failed"), checks


def crash_loop_verdict(
    r: DrillReport,
    cloud: SimCloud,
    notifications: Sequence[Notification],
    vms: Sequence[ServerId],
    limit: int,
) -> tuple[str, list[str]]:
    """Verdict "held": restarted exactly ``limit`` times, then left stopped with an alert that says so."""
    (vm,) = vms
    mine = [n for n in notifications if n.payload.get("instance_uuid") == vm]
    restarts = [n for n in mine if (n.payload.get("recovery") or {}).get(RESTARTED_KEY)]
    last = max(mine, key=lambda n: n.created_at, default=None)
    stopped = last is not None and last.status is NotificationStatus.FAILED and vm in left_stopped(mine, [vm])
    alerted = any(a["kind"] == AlertKind.CRASH_LOOP.value for a in r.alerts)
    starts = cloud.action_counts(vm, 0.0, float("inf"))
    checks = [
        f"restarted {len(restarts)} times (limit {limit}); starts asked: {starts.get('start', 0)}",
        f"left stopped with a failed notification: {stopped}; crash-loop alert: {alerted}",
        f"still running: {cloud.guest_healthy(vm)} (expected not)",
    ]
    ok = len(restarts) == limit == starts.get("start", 0) and stopped and alerted
    ok = ok and not cloud.guest_healthy(vm) and not cloud.evacuations
    return ("held" if ok else "failed"), checks


def agent_alert_verdict(r: DrillReport, cloud: SimCloud) -> tuple[str, list[str]]:
    """Verdict "held": an agent_down alert, no host notification, nothing evacuated."""
    alerted = any(a["kind"] == AlertKind.AGENT_DOWN.value for a in r.alerts)
    host_notes = [n for n in r.notifications if n["type"] == NotificationType.COMPUTE_HOST.value]
    checks = [
        f"agent-down alert: {alerted}",
        f"host notifications: {len(host_notes)}, evacuations: {len(cloud.evacuations)} (expected none)",
    ]
    return ("held" if alerted and not host_notes and not cloud.evacuations else "failed"), checks
