"""The per-host drills (a guest crash, a crash loop, a watchdog, a silent agent) and ``double_actions``.

Judged, as every drill is, from the simulated cloud's ground truth: the actions asked of each VM, whether
its guest runs (and is not hung), evacuations; the cloud is captured as test_drills.py does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from test_drills import EXPECTED, Built, built  # noqa: F401  (built is a fixture)

from haven.cloud.sim import SimCloud
from haven.domain.cloud import ServerAction
from haven.domain.incidents import Notification
from haven.domain.settings import EngineSettings, RecoverySettings
from haven.drill import run as drill_run
from haven.drill.run import DrillOptions, run_drill
from haven.drill.scenarios import SCENARIOS

SAFETY = ("vms_lost", "vms_running_twice", "evacuated_unfenced", "false_evacuations", "double_evacuations")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_every_drill_reports_double_actions_and_it_is_zero(scenario: str) -> None:
    report = await run_drill(DrillOptions(scenario))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["double_actions"] == 0
    assert data["verdict"] == EXPECTED[scenario], data["checks"]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_crashed_vm_is_restarted_in_place_once(built: Built, seed: int) -> None:  # noqa: F811
    report = await run_drill(DrillOptions("vm-crash", seed=seed))
    assert report.verdict == "recovered", report.checks
    assert {name: getattr(report, name) for name in SAFETY} == dict.fromkeys(SAFETY, 0)
    assert report.double_actions == 0 and report.ha_vms_affected == report.ha_vms_recovered == 1
    cloud = built.cloud
    (vm,) = {a.server_id for a in cloud.vm_actions}
    assert [a.action for a in cloud.vm_actions] == ["start"] and cloud.guest_healthy(vm)
    assert cloud.evacuations == []
    assert report.detect_s is not None and report.recover_s is not None and report.recover_s <= 10.0
    assert [(n["type"], n["status"]) for n in report.notifications] == [("VM", "finished")]
    assert report.alerts == []


async def test_a_crash_loop_is_restarted_up_to_the_limit_then_held(built: Built) -> None:  # noqa: F811
    report = await run_drill(DrillOptions("vm-crash-loop"))
    assert report.verdict == "held", report.checks
    assert report.double_actions == 0 and report.vms_lost == 0 and report.vms_left_stopped == 1
    cloud = built.cloud
    (vm,) = {a.server_id for a in cloud.vm_actions}
    assert [a.action for a in cloud.vm_actions] == ["start"] * 3 and not cloud.guest_healthy(vm)
    statuses = sorted(n["status"] for n in report.notifications)
    assert statuses == ["failed", "finished", "finished", "finished"]
    (alert,) = report.alerts
    assert alert["kind"] == "crash_loop" and alert["message"].endswith(
        "restarted 3 times in 10 min; left stopped"
    )


async def test_the_crash_loop_limit_is_a_setting(built: Built) -> None:  # noqa: F811
    settings = EngineSettings(recovery=RecoverySettings(crash_loop_max_restarts=1))
    report = await run_drill(DrillOptions("vm-crash-loop", settings=settings))
    assert report.verdict == "held", report.checks
    assert [a.action for a in built.cloud.vm_actions] == ["start"]
    assert report.alerts[0]["message"].endswith("restarted 1 times in 10 min; left stopped")


async def test_a_fired_watchdog_is_reset_once(built: Built) -> None:  # noqa: F811
    report = await run_drill(DrillOptions("guest-watchdog"))
    assert report.verdict == "recovered", report.checks
    assert report.double_actions == 0 and report.vms_lost == 0
    cloud = built.cloud
    (vm,) = {a.server_id for a in cloud.vm_actions}
    assert [a.action for a in cloud.vm_actions] == ["reboot"] and cloud.guest_healthy(vm)
    assert [(n["type"], n["event"], n["status"]) for n in report.notifications] == [
        ("VM", "WATCHDOG", "finished")
    ]


async def test_a_silent_agent_on_a_live_host_is_an_alert_not_an_evacuation(built: Built) -> None:  # noqa: F811
    report = await run_drill(DrillOptions("agent-down"))
    assert report.verdict == "held", report.checks
    assert built.cloud.evacuations == [] and built.cloud.vm_actions == []
    assert [a["kind"] for a in report.alerts] == ["agent_down"]
    assert "agent down, host alive" in report.alerts[0]["message"]
    assert report.notifications == [] and report.detect_s is None


async def test_double_actions_counts_an_action_asked_twice_within_one_recovery(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The counter has teeth: a VM asked to start twice during its recovery is counted and fails the drill."""
    real = drill_run.double_actions

    def with_a_second_start(cloud: SimCloud, notifications: Sequence[Notification], now: float) -> int:
        first = cloud.vm_actions[0]
        cloud.vm_actions.append(ServerAction(first.server_id, first.action, first.at + 0.5))
        return real(cloud, notifications, now)

    monkeypatch.setattr(drill_run, "double_actions", with_a_second_start)
    report = await run_drill(DrillOptions("vm-crash"))
    assert report.double_actions == 1 and report.verdict == "failed"
    assert report.checks[0].startswith("SAFETY VIOLATED")
