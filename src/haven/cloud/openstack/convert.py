"""Nova's JSON (as pinned in haven.cloud.openstack.nova) turned into haven's domain snapshots.

Called by OpenStackCloud. Pure functions, no I/O. Nova has more states than haven's
domain names; the mapping keeps what the planner and the evacuate step must know:
whether a server is busy (any task state), running, stopped, in error or gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from haven.domain.cloud import (
    Capacity,
    Flavor,
    GroupPolicy,
    Host,
    PowerState,
    Server,
    ServerAction,
    ServerGroup,
    TaskState,
    VmState,
    watchdog_action_of,
)
from haven.domain.ids import HostName, ServerGroupId, ServerId

Json = Mapping[str, Any]

# Nova vm_states without a domain twin. Paused, suspended, rescued, resized and shelved servers cannot
# be evacuated (Nova accepts only active, stopped and error), so they read as "still building": the
# planner then lists them as not evacuable with a reason instead of sending a call Nova would refuse.
_VM_STATES = {
    "active": VmState.ACTIVE,
    "stopped": VmState.STOPPED,
    "error": VmState.ERROR,
    "building": VmState.BUILDING,
    "deleted": VmState.DELETED,
    "soft-delete": VmState.DELETED,
}
# Nova's power_state numbers: 0 nostate, 1 running, 3 paused, 4 shutdown, 6 crashed, 7 suspended.
_POWER_STATES = {1: PowerState.RUNNING, 3: PowerState.PAUSED, 4: PowerState.SHUTDOWN, 6: PowerState.CRASHED}
# Nova's task states for what haven asks; any other task in progress reads as "rebuilding" (busy).
_TASK_STATES = {
    "rebuild_spawning": TaskState.REBUILD_SPAWNING,
    "powering-off": TaskState.POWERING_OFF,
    "powering-on": TaskState.POWERING_ON,
    "reboot_pending_hard": TaskState.REBOOTING_HARD,
    "reboot_started_hard": TaskState.REBOOTING_HARD,
    "rebooting_hard": TaskState.REBOOTING_HARD,
}
DEFAULT_ZONE = "nova"


def vm_state(value: object) -> VmState:
    return _VM_STATES.get(str(value or "").lower(), VmState.BUILDING)


def power_state(value: object) -> PowerState:
    return _POWER_STATES.get(value if isinstance(value, int) else -1, PowerState.NOSTATE)


def task_state(value: object) -> TaskState:
    """Any Nova task in progress makes the server busy; the domain names those haven itself causes."""
    if not value:
        return TaskState.NONE
    return _TASK_STATES.get(str(value), TaskState.REBUILDING)


def flavor(embedded: Json) -> Flavor:
    """The flavor as embedded in a server since microversion 2.47."""
    return Flavor(
        name=str(embedded.get("original_name", "")),
        vcpus=int(embedded.get("vcpus", 0)),
        ram_mb=int(embedded.get("ram", 0)),
        disk_gb=int(embedded.get("disk", 0)) + int(embedded.get("ephemeral", 0)),
    )


def server(body: Json, group: ServerGroupId | None = None) -> Server:
    groups = body.get("server_groups") or []  # in a server show since 2.71
    return Server(
        id=ServerId(str(body["id"])),
        name=str(body.get("name", "")),
        host=HostName(str(body.get("OS-EXT-SRV-ATTR:host") or "")),
        flavor=flavor(body.get("flavor") or {}),
        vm_state=vm_state(body.get("OS-EXT-STS:vm_state")),
        power_state=power_state(body.get("OS-EXT-STS:power_state")),
        task_state=task_state(body.get("OS-EXT-STS:task_state")),
        metadata={str(k): str(v) for k, v in (body.get("metadata") or {}).items()},
        group=ServerGroupId(str(groups[0])) if groups else group,
        # The embedded flavor carries its extra specs (2.47+); the image's property is not read yet.
        watchdog_action=watchdog_action_of((body.get("flavor") or {}).get("extra_specs") or {}, {}),
        fault=fault_message(body),
    )


def fault_message(body: Json) -> str:
    """Nova's fault message of a server (shown for servers in ERROR), "" when it shows none."""
    fault = body.get("fault")
    return str(fault.get("message") or "") if isinstance(fault, Mapping) else ""


def server_action(server_id: ServerId, body: Json) -> ServerAction:
    """One entry of os-instance-actions (``action``, ``start_time``)."""
    return ServerAction(server_id, str(body.get("action", "")), timestamp(body.get("start_time")) or 0.0)


def server_group(body: Json) -> ServerGroup:
    policy = str(body.get("policy") or (body.get("policies") or ["anti-affinity"])[0])
    return ServerGroup(
        id=ServerGroupId(str(body["id"])),
        name=str(body.get("name", "")),
        policy=GroupPolicy(policy),
        members=frozenset(ServerId(str(m)) for m in body.get("members", [])),
    )


def timestamp(value: object) -> float | None:
    """Nova's naive UTC ISO timestamps (``updated_at``) as Unix seconds."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).rstrip("Z"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def http_date(value: str | None) -> float | None:
    """An HTTP ``Date`` header (RFC 9110, ``Sun, 06 Nov 1994 08:49:37 GMT``) as Unix seconds; None if
    absent or unreadable. It has whole seconds: the sender's clock was somewhere in [t, t + 1)."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def aggregate_of(aggregates: Iterable[Json]) -> dict[str, str]:
    """Each host's aggregate: the first by name that lists it (Nova lets a host be in several)."""
    first: dict[str, str] = {}
    for agg in sorted(aggregates, key=lambda a: str(a.get("name", ""))):
        for host in agg.get("hosts") or []:
            first.setdefault(str(host), str(agg.get("name", "")))
    return first


def host(
    service: Json,
    hypervisor: Json | None,
    aggregate: str,
    ratios: Mapping[str, float] | None = None,
) -> Host:
    """A compute service and its hypervisor (os-hypervisors at 2.53) as one Host."""
    hv: Json = hypervisor or {}
    ratios = ratios or {}
    known = {
        "VCPU": "cpu_allocation_ratio",
        "MEMORY_MB": "ram_allocation_ratio",
        "DISK_GB": "disk_allocation_ratio",
    }
    capacity = Capacity(
        vcpus=int(hv.get("vcpus") or 0),
        ram_mb=int(hv.get("memory_mb") or 0),
        disk_gb=int(hv.get("local_gb") or 0),
        # Without Placement's figures, the domain's defaults (Nova's own defaults) apply.
        **{field: ratios[rc] for rc, field in known.items() if rc in ratios},
    )
    return Host(
        name=HostName(str(service["host"])),
        zone=str(service.get("zone") or DEFAULT_ZONE),
        aggregate=aggregate,
        capacity=capacity,
        service_enabled=service.get("status") == "enabled",
        service_up=service.get("state") == "up",
        forced_down=bool(service.get("forced_down")),
        disabled_reason=str(service.get("disabled_reason") or ""),
        used_vcpus=int(hv.get("vcpus_used") or 0),
        used_ram_mb=int(hv.get("memory_mb_used") or 0),
        used_disk_gb=int(hv.get("local_gb_used") or 0),
    )


def allocation_ratios(inventories: Json) -> dict[str, float]:
    """Placement's allocation ratio per resource class (VCPU, MEMORY_MB, DISK_GB)."""
    return {rc: float(inv.get("allocation_ratio", 1.0)) for rc, inv in inventories.items()}
