"""What the agent reports, as Masakari's notification bodies: libvirt events and process changes in.

Who calls it: ``haven.agent.libvirt_watch`` hands every libvirt domain event to ``vm_payload``;
``haven.agent.processes`` builds PROCESS payloads with ``process_payload``; both wrap them with
``notification`` and give them to the spool. Pure (no libvirt import): the numbers below are
libvirt's stable ABI values (tests check them against the libvirt module), so the translation is
testable with recorded events, which is the only way to test watchdog events (libvirt's test driver
cannot produce them).

Which events become a VM notification follows masakari-monitors' instance monitor
(masakarimonitors/instancemonitor/libvirt_handler/eventfilter_table.py) exactly, so a Masakari
engine and haven's receive the same payloads: ``{"event": "LIFECYCLE", "instance_uuid": ...,
"vir_domain_event": "STOPPED_FAILED"}``. Like the monitor, a clean stop (STOPPED_SHUTDOWN,
STOPPED_DESTROYED, SHUTDOWN_FINISHED) is reported too: only the engine knows whether Nova asked
for it (the server's vm_state), the host does not. haven adds what the monitor leaves out although
it is a guest failure: STOPPED_CRASHED (QEMU gone because the guest crashed) and the CRASHED
lifecycle event (guest panic with a pvpanic device), with the same payload shape.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# virDomainEventID
EVENT_ID_LIFECYCLE, EVENT_ID_REBOOT, EVENT_ID_WATCHDOG, EVENT_ID_IO_ERROR = 0, 1, 3, 4
EVENT_ID_IO_ERROR_REASON, EVENT_ID_CONTROL_ERROR = 6, 7
# virDomainEventType (lifecycle) and the details that matter
SUSPENDED, STOPPED, SHUTDOWN, CRASHED = 3, 5, 6, 8
SUSPENDED_IOERROR, SUSPENDED_WATCHDOG, SUSPENDED_API_ERROR = 2, 3, 6
STOPPED_SHUTDOWN, STOPPED_DESTROYED, STOPPED_CRASHED, STOPPED_FAILED = 0, 1, 2, 5
SHUTDOWN_FINISHED = 0
CRASHED_PANICKED, CRASHED_CRASHLOADED = 0, 1
# virDomainEventWatchdogAction and virDomainEventIOErrorAction
WATCHDOG_ACTIONS = {0: "NONE", 1: "PAUSE", 2: "RESET", 3: "POWEROFF", 4: "SHUTDOWN", 5: "DEBUG"}
IO_ERROR_ACTIONS = {0: "NONE", 1: "PAUSE", 2: "REPORT"}

NO_DETAIL = -1  # what the monitor passes for events that have no type/detail

_LIFECYCLE: dict[int, dict[int, str]] = {
    SUSPENDED: {
        SUSPENDED_IOERROR: "SUSPENDED_IOERROR",
        SUSPENDED_WATCHDOG: "SUSPENDED_WATCHDOG",
        SUSPENDED_API_ERROR: "SUSPENDED_API_ERROR",
    },
    STOPPED: {
        STOPPED_SHUTDOWN: "STOPPED_SHUTDOWN",
        STOPPED_DESTROYED: "STOPPED_DESTROYED",
        STOPPED_FAILED: "STOPPED_FAILED",
        STOPPED_CRASHED: "STOPPED_CRASHED",  # haven's addition (see the module docstring)
    },
    SHUTDOWN: {SHUTDOWN_FINISHED: "SHUTDOWN_FINISHED"},
    CRASHED: {CRASHED_PANICKED: "CRASHED_PANICKED", CRASHED_CRASHLOADED: "CRASHED_CRASHLOADED"},  # haven's
}

EVENT_NAMES = {
    EVENT_ID_LIFECYCLE: "LIFECYCLE",
    EVENT_ID_REBOOT: "REBOOT",
    EVENT_ID_WATCHDOG: "WATCHDOG",
    EVENT_ID_IO_ERROR: "IO_ERROR",
    EVENT_ID_IO_ERROR_REASON: "IO_ERROR_REASON",
    EVENT_ID_CONTROL_ERROR: "CONTROL_ERROR",
}


def vir_domain_event(event_id: int, event_type: int, detail: int) -> str | None:
    """The monitor's ``vir_domain_event`` name for a libvirt event, or None if it is not reported.

    ``event_type`` is the lifecycle event, the watchdog action or the I/O error action;
    ``detail`` the lifecycle detail (NO_DETAIL for the others), as the monitor's filter takes them.
    """
    if event_id == EVENT_ID_LIFECYCLE:
        return _LIFECYCLE.get(event_type, {}).get(detail)
    if event_id == EVENT_ID_WATCHDOG:
        action = WATCHDOG_ACTIONS.get(event_type)
        return f"WATCHDOG_{action}" if action else None
    if event_id == EVENT_ID_IO_ERROR:
        action = IO_ERROR_ACTIONS.get(event_type)
        return f"IO_ERROR_{action}" if action else None
    if event_id in (EVENT_ID_REBOOT, EVENT_ID_IO_ERROR_REASON, EVENT_ID_CONTROL_ERROR):
        return "UNKNOWN"
    return None


def vm_payload(event_id: int, event_type: int, detail: int, instance_uuid: str) -> dict[str, str] | None:
    """A VM notification's payload for a libvirt event, or None if the monitor would not report it."""
    name = vir_domain_event(event_id, event_type, detail)
    if name is None:
        return None
    return {"event": EVENT_NAMES[event_id], "instance_uuid": instance_uuid, "vir_domain_event": name}


def process_payload(process_name: str, running: bool) -> dict[str, str]:
    """A PROCESS notification's payload: the process monitor sends STOPPED; haven also sends STARTED."""
    return {"event": "STARTED" if running else "STOPPED", "process_name": process_name}


def notification(
    type_: str, hostname: str, payload: dict[str, str], at: datetime | None = None
) -> dict[str, Any]:
    """The body of ``POST /v1/notifications``; ``generated_time`` in UTC without a zone, as Masakari's."""
    moment = (at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    return {
        "notification": {
            "type": type_,
            "hostname": hostname,
            "generated_time": moment.isoformat(timespec="microseconds"),
            "payload": payload,
        }
    }
