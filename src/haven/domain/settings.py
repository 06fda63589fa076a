"""Engine settings as grouped dataclasses, passed in explicitly (never read from globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

# Who ends the maintenance of a host haven took out of service (haven sets the host's
# on_maintenance when it forces down or disables its compute service, as Masakari does when it
# processes a host failure or a PROCESS STOPPED):
# - "masakari": an operator, clearing on_maintenance (`openstack segment host update
#   --on_maintenance False`); until then the host stays out and new notifications about it are
#   refused (409) or ignored. haven then undoes its own force down and disable once the host is healthy.
# - "automatic": haven, once every channel says the host is healthy again: it undoes its force down
#   and disable and clears on_maintenance itself.
# haven.toml's default is "masakari" (haven.service.config); the engine as a library defaults to
# "automatic", because drills, the explorer and the benchmarks judge the whole cycle, return included.
RETURN_TO_SERVICE = ("masakari", "automatic")


@dataclass(frozen=True, slots=True)
class DetectionSettings:
    heartbeat_interval_s: float = 1.0
    grace_s: float = 3.0
    nova_report_interval_s: float = 10.0  # Nova's report_interval: how often a live nova-compute reports
    gate_share: float = 0.5  # more than this share of a segment silent at once holds recovery
    gate_small_segment_size: int = 3  # segments this small or smaller...
    gate_small_segment_loss: int = 2  # ...are held when this many hosts go silent
    # The gate counts the hosts whose silence began within this window (a rolling partition is one
    # event, not several bursts), and a held segment stays held until its hosts are back or released.
    gate_window_s: float = 300.0
    cloud_gate_share: float = 0.5  # more than this share of every managed host silent holds them all
    # More than this share of a segment silent while their BMCs do not say off (a network's signature).
    gate_unconfirmed_share: float = 0.25
    # More than this share of the cloud's nova-computes down while their hosts' agents beat: the
    # control plane (RabbitMQ, conductor, database) is the likely fault, not the hosts.
    process_gate_share: float = 0.5
    fence_budget: int = 0  # hosts fenced per segment per window; 0: the gate's own share of the segment
    # An external report about a host haven still hears waits this long for haven's channels to agree.
    external_report_wait_s: float = 30.0


@dataclass(frozen=True, slots=True)
class RecoverySettings:
    max_parallel_evacuations: int = 32
    fence_poll_interval_s: float = 0.5
    fence_timeout_s: float = 30.0
    verify_poll_interval_s: float = 2.0  # Nova rebuilds take seconds; each poll lists the hosts involved
    verify_timeout_s: float = 300.0
    step_timeout_s: float = 900.0  # any step still retrying after this long fails, with an alert
    hold_poll_interval_s: float = 2.0  # a step the safety policy holds asks again this often
    max_evacuate_attempts: int = 2  # a VM whose rebuild failed (Nova says so) is evacuated again, once
    no_target_wait_s: float = 120.0  # a plan that finds no usable host at all looks again this long
    evacuate_all_instances: bool = False  # Masakari: also evacuate VMs without HA_Enabled
    ignore_instances_in_error_state: bool = False
    return_to_service: str = "automatic"  # or "masakari": see RETURN_TO_SERVICE
    # Guest recovery (VM notifications). Masakari's process_all_instances: also VMs without HA_Enabled.
    process_all_instances: bool = False
    vm_restart_method: str = "stop_start"  # or "hard_reboot"; a failed stop falls back to a hard reboot
    crash_loop_max_restarts: int = 3  # restarts of one VM within the window before it is left stopped
    crash_loop_window_s: float = 600.0
    watchdog_default_action: str = "reset"  # when neither flavor nor image sets hw:watchdog_action


@dataclass(frozen=True, slots=True)
class EngineSettings:
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    recovery: RecoverySettings = field(default_factory=RecoverySettings)
