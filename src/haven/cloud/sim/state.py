"""Mutable state of simulated hosts and servers, kept private to the simulated cloud."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

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
    network_failed: bool = False  # ground truth: its own NICs died (powered, guests run): a failure too
    hung: bool = False  # kernel hang: powered, silent on every channel, guests frozen
    booting_until: float | None = None
    mgmt_up: bool = True
    second_up: bool = True
    observer_cut: bool = False  # the observer cannot hear this host (its networks)
    observer_reaches_bmc: bool = False  # ...but still reaches its BMC out of band
    bmc_reachable: bool = True
    bmc_apply_delay_s: float | None = None  # a slow BMC: power requests applied this late (None: timings)
    bmc_stale_for_s: float = 0.0  # a stale BMC: it answers the power state of this long ago
    power_changes: list[tuple[float, bool]] = field(default_factory=list)  # (when, powered) for stale BMCs
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
    rebuild_fails: bool = False  # fault: Nova accepts its next evacuation, and the rebuild fails
    fault: str = ""  # Nova's fault message, as a server in ERROR shows it


class EvacuationStatus(StrEnum):
    """Where one evacuate call (Nova's migration record of type evacuation) stands."""

    ACCEPTED = "accepted"  # Nova accepted it; the rebuild is in flight
    DONE = "done"  # rebuilt on its target
    ERROR = "error"  # the rebuild failed: the server is in ERROR and runs nowhere


@dataclass(frozen=True, slots=True)
class EvacuationRecord:
    """Ground truth about one evacuate call, for the drill's safety counters."""

    server_id: ServerId
    source: HostName
    target: HostName
    at: float
    source_powered: bool  # True means the VM could have run twice
    source_failed_by_fault: bool  # False means the source had not failed (nor lost its own networks)
    status: EvacuationStatus = EvacuationStatus.ACCEPTED
    # An earlier evacuation of this server was still in flight, or had succeeded and its result was
    # being moved off a host that had not failed: the VM could end up twice (SimCloud.evacuate).
    unsafe_double: bool = False


@dataclass(frozen=True, slots=True)
class NovaCall:
    """Ground truth: a mutating Nova call that took effect (whether or not its answer came back)."""

    at: float
    kind: str  # as fail_nova_calls names it: "evacuate", "disable_service", ...
    subject: str  # the host or server id (force_down: "<host> down=<bool>")


@dataclass(slots=True)
class CallFault:
    """Injected: the next ``count`` Nova calls of ``kind`` ("*": any mutating call) time out."""

    kind: str
    count: int
    effect_applied: bool  # the effect happens first, only the answer is lost
    delay_s: float
