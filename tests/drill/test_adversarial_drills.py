"""The adversarial drills (issue 10): faults a careless engine would fence, evacuate or disable on.

Each runs as `haven drill NAME` runs it (30 hosts, 300 VMs) and is judged from the simulated cloud's
ground truth: which hosts lost power and why, every evacuation with its outcome, every mutating Nova
call that took effect. The variants (wave gaps, a single reported host, Nova's clock ahead) are the
same scenarios with one number changed, put in the registry for the test only.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_drills import Built, built  # noqa: F401  (built is a fixture)

from haven.cloud.sim import SimCloud
from haven.cloud.sim.state import EvacuationStatus
from haven.domain import liveness
from haven.domain.ids import HostName
from haven.drill.report import DrillReport
from haven.drill.run import DrillOptions, run_drill
from haven.drill.scenarios import (
    REPORT_AFTER_S,
    SCENARIOS,
    Inject,
    false_external_report,
    nova_clock_skew,
    staggered_partition,
)

SAFETY = (
    "vms_lost",
    "vms_running_twice",
    "evacuated_unfenced",
    "false_evacuations",
    "double_evacuations",
    "live_hosts_fenced",
    "double_actions",
)
WALL_LIMIT_S = 3.0  # well under a second alone; the machine is shared


def variant(
    monkeypatch: pytest.MonkeyPatch, base: str, name: str, inject: Inject, observe_for_s: float
) -> str:
    scenario = dataclasses.replace(SCENARIOS[base], name=name, inject=inject, observe_for_s=observe_for_s)
    monkeypatch.setitem(SCENARIOS, name, scenario)
    return name


def assert_safe(report: DrillReport) -> None:
    assert {n: getattr(report, n) for n in SAFETY} == dict.fromkeys(SAFETY, 0), report.checks
    assert report.wall_s < WALL_LIMIT_S


def alert_kinds(report: DrillReport) -> set[str]:
    return {a["kind"] for a in report.alerts}


def assert_untouched(cloud: SimCloud, since: float = 0.0) -> None:
    """Ground truth: no host lost power, nothing was evacuated, disabled or forced down."""
    assert all(cloud.is_powered(h) for h in cloud.host_names())
    assert cloud.evacuations == [] and cloud.live_hosts_fenced == []
    assert [c for c in cloud.nova_calls if c.kind in {"disable_service", "force_down", "evacuate"}] == []


# ---- staggered-partition ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_staggered_partition_is_held_by_the_gate(built: Built, seed: int) -> None:  # noqa: F811
    report = await run_drill(DrillOptions("staggered-partition", seed=seed))
    assert report.verdict == "held", report.checks
    assert_safe(report)
    assert "gate_hold" in alert_kinds(report)
    assert_untouched(built.cloud)
    silent = [h for h in built.cloud.host_names() if built.cloud.sim_host(h).observer_cut]
    assert len(silent) == 6 and len({built.cloud.sim_host(h).zone for h in silent}) == 1


@pytest.mark.parametrize("gap_s", [20.0, 60.0])
async def test_a_slower_staggered_partition_is_held_too(
    built: Built,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    gap_s: float,
) -> None:
    name = variant(
        monkeypatch, "staggered-partition", f"staggered-{gap_s:g}s", staggered_partition(gap_s), 120.0 + gap_s
    )
    for seed in (1, 2):
        report = await run_drill(DrillOptions(name, seed=seed))
        assert report.verdict == "held", report.checks
        assert_safe(report)
        assert "gate_hold" in alert_kinds(report)
    for cloud, _ in built.clouds:
        assert_untouched(cloud)


# ---- false-external-report --------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_external_reports_of_isolated_hosts_fence_nothing(built: Built, seed: int) -> None:  # noqa: F811
    report = await run_drill(DrillOptions("false-external-report", seed=seed))
    assert report.verdict == "held", report.checks
    assert_safe(report)
    assert "isolated" in alert_kinds(report)
    assert len([n for n in report.notifications if n["type"] == "COMPUTE_HOST"]) >= 6
    assert_untouched(built.cloud)


async def test_an_external_report_of_one_isolated_host_fences_nothing(
    built: Built,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = variant(
        monkeypatch,
        "false-external-report",
        "false-report-one",
        false_external_report(1),
        120.0 + REPORT_AFTER_S,
    )
    for seed in (1, 2):
        report = await run_drill(DrillOptions(name, seed=seed))
        assert report.verdict == "held", report.checks
        assert_safe(report)
    for cloud, _ in built.clouds:
        assert_untouched(cloud)


# ---- lost-evacuate-answer ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_lost_evacuate_answer_and_a_failed_rebuild_recover_without_a_double(
    built: Built,  # noqa: F811
    seed: int,
) -> None:
    report = await run_drill(DrillOptions("lost-evacuate-answer", seed=seed))
    assert report.verdict == "recovered", report.checks
    assert_safe(report)
    cloud = built.cloud
    assert cloud.unsafe_double_evacuations() == []
    first = cloud.evacuations[0]
    assert first.status is EvacuationStatus.ERROR  # the fault did happen: its rebuild failed
    again = [e for e in cloud.evacuations if e.server_id == first.server_id]
    assert [e.status for e in again][-1] is EvacuationStatus.DONE
    assert cloud.hosts_running(first.server_id) - {first.source}


# ---- control-plane-outage ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_control_plane_outage_disables_nothing_and_says_so(built: Built, seed: int) -> None:  # noqa: F811
    report = await run_drill(DrillOptions("control-plane-outage", seed=seed))
    assert report.verdict == "held", report.checks
    assert_safe(report)
    assert report.services_disabled == 0
    assert "control_plane" in alert_kinds(report)
    cloud = built.cloud
    assert_untouched(cloud)
    assert all(
        cloud.sim_host(h).service_enabled and not cloud.sim_host(h).forced_down for h in cloud.host_names()
    )
    assert not cloud.control_plane_down  # it was restored, and the drill watched what followed


# ---- nova-clock-skew --------------------------------------------------------------------------


def agentless_host(cloud: SimCloud) -> HostName:
    (host,) = [h for h in cloud.host_names() if not cloud.sim_host(h).agent_running]
    return host


@pytest.mark.parametrize("seed", [1, 2])
async def test_nova_behind_an_agent_down_is_no_death_and_a_power_loss_is_recovered(
    built: Built,  # noqa: F811
    seed: int,
) -> None:
    report = await run_drill(DrillOptions("nova-clock-skew", seed=seed))
    assert report.verdict == "recovered", report.checks
    assert_safe(report)
    assert "agent_down" in alert_kinds(report)
    cloud = built.cloud
    assert cloud.nova_clock_skew_s == -60.0
    assert cloud.is_powered(agentless_host(cloud)) and cloud.live_hosts_fenced == []


async def test_nova_ahead_changes_nothing_either(
    built: Built,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = variant(monkeypatch, "nova-clock-skew", "nova-ahead", nova_clock_skew(60.0), 120.0)
    for seed in (1, 2):
        report = await run_drill(DrillOptions(name, seed=seed))
        assert report.verdict == "recovered", report.checks
        assert_safe(report)
        assert "agent_down" in alert_kinds(report)
    for cloud, _ in built.clouds:
        assert cloud.is_powered(agentless_host(cloud))


async def test_the_skew_drill_catches_a_detector_that_reads_nova_times_on_its_own_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(liveness.HostLiveness, "nova_report_local", lambda self, now: self.nova_updated_at)
    report = await run_drill(DrillOptions("nova-clock-skew", seed=1))
    assert report.verdict == "failed" and report.live_hosts_fenced == 1


# ---- nothing at stake -------------------------------------------------------------------------


async def test_a_recovery_drill_with_no_ha_vm_at_stake_says_so() -> None:
    report = await run_drill(DrillOptions("host-power-loss", ha_fraction=0.0))
    assert report.ha_vms_affected == 0
    assert report.verdict == "nothing_at_stake", report.checks
    assert any("nothing was at stake" in c for c in report.checks)
