"""How big a simulated drill's cloud may be: one place for the bounds the CLI and the API apply.

Who reads it: ``haven drill`` (haven.cli.main, CLI_DRILL_LIMITS, checked before anything is built)
and the API's ``/v1/haven/drills`` (haven.api.context.DrillLimits takes its defaults from
API_DRILL_LIMITS; a server may set its own). Why bounds at all: a drill builds the whole simulated
cloud in memory, so ``--hosts 100000000`` would grow until the machine gives out instead of failing.

The CLI's bounds are twice the README's biggest measured drill (10,000 hosts / 200,000 VMs, 3.9 s
and well under 1 GB on a 2-core machine); the API's are a tenth of that, so one request cannot
occupy the server for long. VMs per host are bounded too (40, twice the ~20 the simulated hosts
hold; the builder refuses what does not fit anyway): the check then fails at once, by arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

from haven.domain.errors import UserError


@dataclass(frozen=True, slots=True)
class DrillSizeLimits:
    max_hosts: int
    max_vms: int
    max_vms_per_host: int = 40


CLI_DRILL_LIMITS = DrillSizeLimits(max_hosts=20_000, max_vms=400_000)
API_DRILL_LIMITS = DrillSizeLimits(max_hosts=2_000, max_vms=40_000)


def check_drill_size(hosts: int, vms: int, limits: DrillSizeLimits = CLI_DRILL_LIMITS) -> None:
    """A UserError naming the flag and the limit for a cloud too small or too big to simulate."""
    if hosts < 1:
        raise UserError(f"--hosts must be at least 1, got {hosts}", "pass a positive host count")
    if vms < 0:
        raise UserError(f"--vms must not be negative, got {vms}", "pass 0 or more VMs")
    if hosts > limits.max_hosts:
        raise UserError(
            f"--hosts {hosts} is more than the drill limit of {limits.max_hosts:,} hosts",
            f"simulate at most {limits.max_hosts:,} hosts",
        )
    if vms > limits.max_vms:
        raise UserError(
            f"--vms {vms} is more than the drill limit of {limits.max_vms:,} VMs",
            f"simulate at most {limits.max_vms:,} VMs",
        )
    if vms > limits.max_vms_per_host * hosts:
        raise UserError(
            f"--vms {vms} is more than {limits.max_vms_per_host} VMs per host ({hosts} hosts hold at most "
            f"{limits.max_vms_per_host * hosts:,} VMs in a drill)",
            "use fewer --vms or more --hosts (about 20 VMs per host fit)",
        )
