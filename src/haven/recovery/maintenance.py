"""A host haven takes out of service goes on maintenance, as Masakari puts it there.

Called by the steps that force down or disable a host's compute service (haven.recovery.host_steps,
haven.recovery.process_steps), in the same store write that records haven's disable. Masakari sets
``on_maintenance`` when its engine processes a host failure or a PROCESS STOPPED notification
(masakari/engine/manager.py, ``_handle_notification_type_host`` and ``_handle_notification_type_process``);
its API then refuses new notifications about the host with a 409 until an operator clears it.
haven sets it when it actually takes the host's service out, not when a report arrives: a report
haven's safety policy refuses (the host still speaks) leaves the host as it was.

Who ends the maintenance is ``[recovery] return_to_service`` (haven.domain.settings): an operator
("masakari"), or haven's return to service ("automatic", haven.service.engine_return), which clears
the flag only when this step set it (``MAINTENANCE_BEFORE`` in the step's detail says).
"""

from __future__ import annotations

from haven.domain.errors import NotFound
from haven.domain.ids import HostName
from haven.domain.incidents import Step, StepState
from haven.recovery.context import StepContext
from haven.recovery.workflows import DISABLE_SERVICE, FORCE_DOWN
from haven.store import Store

# In a force_down or disable_compute_service step's detail: whether the host was on maintenance
# before haven took it out (True, or absent in older steps: haven's return leaves the flag alone).
MAINTENANCE_BEFORE = "on_maintenance_before"


def take_out_of_service(ctx: StepContext, host: HostName, *, host_failed: bool = False) -> dict[str, bool]:
    """Record that haven disabled ``host`` (it owes the return) and put it on maintenance.

    ``host_failed``: the host itself failed (not one of its processes); a reserved host then stops
    being reserved, as Masakari's ``_handle_notification_type_host`` does (``reserved = False`` with
    ``on_maintenance``): a spare that failed is no spare until an operator says so again.
    Returns the step detail to keep; nothing for a host outside every segment.
    """
    try:
        member = ctx.store.get_host(host)
    except NotFound:
        return {}
    # A re-run of this step (or a host haven took out before and never returned) finds haven's own
    # mark: the maintenance is haven's, not an operator's.
    before = member.on_maintenance and not member.disabled_by_haven
    unreserve = {"reserved": False} if host_failed and member.reserved else {}
    ctx.update_member(host, disabled_by_haven=True, on_maintenance=True, **unreserve)
    return {MAINTENANCE_BEFORE: before}


def last_haven_disable(store: Store, host: HostName) -> Step | None:
    """The most recent step by which haven disabled (or forced down) this host's compute service."""
    for notification in store.list_notifications(hostname=host, limit=20):
        for step in reversed(store.list_steps(notification.id)):
            acted = step.state is StepState.DONE and "disabled_reason" in step.detail
            if step.kind in (FORCE_DOWN, DISABLE_SERVICE) and acted:
                return step
    return None


def maintenance_is_havens(store: Store, host: HostName) -> bool:
    """Whether haven put ``host`` on maintenance when it last took it out (so it may end it)."""
    last = last_haven_disable(store, host)
    return last is not None and last.detail.get(MAINTENANCE_BEFORE) is False
