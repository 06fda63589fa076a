"""How long things take in the simulated cloud; documented in the README."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SimTimings:
    heartbeat_interval_s: float = 1.0  # agent heartbeat on each network channel
    nova_report_interval_s: float = 10.0  # Nova's report_interval default
    nova_service_down_time_s: float = 60.0  # Nova's service_down_time default
    bmc_power_off_s: float = 0.3  # BMC applies a power-off request after this long
    host_boot_s: float = 60.0  # power on to heartbeats flowing again
    # Evacuation: a destination admits rebuilds one at a time (as measured on a real
    # Nova, about 0.5 s each), then the guest takes a few seconds to boot.
    evacuate_admit_s: float = 0.5
    evacuate_boot_s: float = 3.0
    # Guest actions (Nova's os-stop, os-start, reboot HARD): how long until the effect shows.
    vm_stop_s: float = 2.0
    vm_start_s: float = 4.0
    vm_reboot_s: float = 5.0
    crash_again_after_s: float = 20.0  # a crash-looping guest crashes this long after each boot
