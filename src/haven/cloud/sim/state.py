"""Mutable state of simulated hosts and servers, kept private to the simulated cloud."""

from __future__ import annotations

from dataclasses import dataclass, field

from haven.cloud.sim.channels import SimChannel
from haven.domain.cloud import Capacity, Flavor, PowerState, TaskState, VmState
from haven.domain.ids import HostName, ServerGroupId, ServerId


@dataclass(slots=True)
class SimHost:
    name: HostName
    zone: str
    aggregate: str
    capacity: Capacity
    heartbeat_phase: float  # heartbeats fall at phase + k * interval
    has_second_network: bool = True
    powered: bool = True
    failed_by_fault: bool = False  # ground truth: the host died or hung on its own (not fenced)
    hung: bool = False  # kernel hang: powered, silent on every channel, guests frozen
    booting_until: float | None = None
    mgmt_up: bool = True
    second_up: bool = True
    observer_cut: bool = False  # the observer cannot hear this host at all
    bmc_reachable: bool = True
    nova_compute_running: bool = True
    agent_running: bool = True  # haven's own host agent (its heartbeats)
    service_enabled: bool = True
    forced_down: bool = False
    disabled_reason: str = ""
    mgmt: SimChannel = field(default_factory=SimChannel)  # agent heartbeat, management network
    second: SimChannel = field(default_factory=SimChannel)  # agent heartbeat, second network
    nova: SimChannel = field(default_factory=SimChannel)  # nova-compute's service reports
    rebuild_busy_until: float = 0.0  # destinations admit rebuilds one at a time
    running: set[ServerId] = field(default_factory=set)  # ground truth: guests really running here
    used_vcpus: int = 0
    used_ram_mb: int = 0
    used_disk_gb: int = 0


@dataclass(slots=True)
class SimServer:
    id: ServerId
    name: str
    host: HostName
    flavor: Flavor
    vm_state: VmState = VmState.ACTIVE
    power_state: PowerState = PowerState.RUNNING
    task_state: TaskState = TaskState.NONE
    metadata: dict[str, str] = field(default_factory=dict)
    group: ServerGroupId | None = None
    watchdog_action: str = ""  # hw:watchdog_action of its flavor or image
    hung: bool = False  # ground truth: the guest runs but its OS is stuck (its watchdog fires)
    crashes_left: int = 0  # fault: the guest crashes again this many more times after it boots
    crash_shows_error: bool = False  # fault: Nova shows a crash as vm_state error, not stopped
    boots: int = 0  # counts guest boots, so a crash scheduled for an earlier boot is dropped


@dataclass(frozen=True, slots=True)
class EvacuationRecord:
    """Ground truth about one evacuate call, for the drill's safety counters."""

    server_id: ServerId
    source: HostName
    target: HostName
    at: float
    source_powered: bool  # True means the VM could have run twice
    source_failed_by_fault: bool  # False means the source was not really dead
