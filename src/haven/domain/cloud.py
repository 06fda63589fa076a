"""What haven sees of a cloud: hosts with capacity, servers with flavors and state.

Drivers (simulated or OpenStack) return these snapshots; the planner and the
detector only ever read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from haven.domain.ids import HostName, ServerGroupId, ServerId

HA_ENABLED_KEY = "HA_Enabled"
HA_PRIORITY_KEY = "HA_Priority"
# The watchdog action Nova gives a guest: the flavor's extra spec wins over the image's property.
WATCHDOG_EXTRA_SPEC = "hw:watchdog_action"
WATCHDOG_IMAGE_PROPERTY = "hw_watchdog_action"
# Per-VM custom recovery: HA_Mode=notify leaves this VM's recovery to its owner (haven only reports).
HA_MODE_KEY = "HA_Mode"
HA_MODE_NOTIFY = "notify"


class VmState(StrEnum):
    ACTIVE = "active"
    STOPPED = "stopped"
    ERROR = "error"
    BUILDING = "building"
    DELETED = "deleted"


class PowerState(StrEnum):
    RUNNING = "running"
    SHUTDOWN = "shutdown"
    NOSTATE = "nostate"
    PAUSED = "paused"
    CRASHED = "crashed"  # libvirt reported the guest crashed (Nova's power_state 6)


class TaskState(StrEnum):
    NONE = ""
    REBUILDING = "rebuilding"
    REBUILD_SPAWNING = "rebuild_spawning"
    POWERING_OFF = "powering-off"
    POWERING_ON = "powering-on"
    REBOOTING_HARD = "rebooting_hard"


class GroupPolicy(StrEnum):
    ANTI_AFFINITY = "anti-affinity"
    SOFT_ANTI_AFFINITY = "soft-anti-affinity"
    AFFINITY = "affinity"
    SOFT_AFFINITY = "soft-affinity"


@dataclass(frozen=True, slots=True)
class Flavor:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int


@dataclass(frozen=True, slots=True)
class Capacity:
    """Physical resources and Nova's allocation ratios of one hypervisor."""

    vcpus: int
    ram_mb: int
    disk_gb: int
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0

    @property
    def schedulable_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio

    @property
    def schedulable_ram_mb(self) -> float:
        return self.ram_mb * self.ram_allocation_ratio

    @property
    def schedulable_disk_gb(self) -> float:
        return self.disk_gb * self.disk_allocation_ratio

    def admits(self, flavor: Flavor, used_vcpus: int, used_ram_mb: int, used_disk_gb: int) -> bool:
        """Whether one more VM of ``flavor`` fits beside what is already used (Nova placement's rule)."""
        return (
            used_vcpus + flavor.vcpus <= self.schedulable_vcpus
            and used_ram_mb + flavor.ram_mb <= self.schedulable_ram_mb
            and used_disk_gb + flavor.disk_gb <= self.schedulable_disk_gb
        )


@dataclass(frozen=True, slots=True)
class Host:
    """A hypervisor and its nova-compute service as the cloud reports them."""

    name: HostName
    zone: str
    aggregate: str
    capacity: Capacity
    service_enabled: bool = True
    service_up: bool = True
    forced_down: bool = False
    disabled_reason: str = ""
    # What the hypervisor already carries (Nova's os-hypervisors *_used figures).
    used_vcpus: int = 0
    used_ram_mb: int = 0
    used_disk_gb: int = 0


@dataclass(frozen=True, slots=True)
class Server:
    id: ServerId
    name: str
    host: HostName
    flavor: Flavor
    vm_state: VmState = VmState.ACTIVE
    power_state: PowerState = PowerState.RUNNING
    task_state: TaskState = TaskState.NONE
    metadata: Mapping[str, str] = field(default_factory=dict)
    group: ServerGroupId | None = None
    watchdog_action: str = ""  # hw:watchdog_action of its flavor or image; "" when neither sets it
    fault: str = ""  # Nova's fault message for a server in ERROR ("" when none)

    @property
    def ha_enabled(self) -> bool:
        return self.metadata.get(HA_ENABLED_KEY, "").strip().lower() in {"true", "1", "yes"}

    @property
    def left_to_owner(self) -> bool:
        """The VM's metadata asks haven to report its failures and let its owner recover it."""
        return self.metadata.get(HA_MODE_KEY, "").strip().lower() == HA_MODE_NOTIFY

    @property
    def priority(self) -> int:
        """Higher recovers first; anything that is not an integer counts as 0."""
        try:
            return int(self.metadata.get(HA_PRIORITY_KEY, "0"))
        except ValueError:
            return 0

    @property
    def is_running(self) -> bool:
        return (
            self.vm_state is VmState.ACTIVE
            and self.power_state is PowerState.RUNNING
            and self.task_state is TaskState.NONE
        )


@dataclass(frozen=True, slots=True)
class ServerGroup:
    id: ServerGroupId
    name: str
    policy: GroupPolicy
    members: frozenset[ServerId]


class ServerActionKind(StrEnum):
    """Nova's instance action names (os-instance-actions) for what haven asks of a server."""

    STOP = "stop"
    START = "start"
    REBOOT = "reboot"
    EVACUATE = "evacuate"


@dataclass(frozen=True, slots=True)
class ServerAction:
    """One action asked of a server, as Nova's os-instance-actions lists it (start_time in epoch s)."""

    server_id: ServerId
    action: str
    at: float
    result: str | None = None  # its events' result: "Success", "Error"; None while in progress


def watchdog_action_of(flavor_extra_specs: Mapping[str, str], image_properties: Mapping[str, str]) -> str:
    """The guest's watchdog action the way Nova's libvirt driver picks it: flavor first, then image."""
    return (
        str(
            flavor_extra_specs.get(WATCHDOG_EXTRA_SPEC) or image_properties.get(WATCHDOG_IMAGE_PROPERTY) or ""
        )
        .strip()
        .lower()
    )
