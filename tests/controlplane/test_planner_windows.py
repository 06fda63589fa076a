"""haven.toml's ``[controlplane] gate_window_s`` and ``rise_wait_s``: the planner's two windows, read
from its settings (no global), their defaults unchanged, and a bad value refused by name with its range.

The worlds are test_planner_balancer_check's (a kill -9 survivor; a peer back by its probe but not up in
HAProxy's check); the same world planned with the default and with a changed window gives different
plans, so the setting is what the planner used.
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from controlplane.test_planner_balancer_check import (
    CHECK_FAILS,
    CHECK_PASSES,
    DOMAINS,
    KEYSTONE,
    MAINT,
    NOW,
    acts,
    replica,
    timed_out,
)
from haven.cli.main import main
from haven.controlplane.config import parse_controlplane
from haven.controlplane.planner import GATE_WINDOW_S, RISE_WAIT_S, plan
from haven.domain.controlplane import (
    ActionKind,
    ControlPlanePlan,
    ControlPlaneSettings,
    MemberAdmin,
    MemberStatus,
    ProbeResult,
    ReplicaView,
    UnitActive,
    UnitStatus,
)
from haven.domain.errors import ConfigError


def run(*views: ReplicaView, **settings: float) -> ControlPlanePlan:
    return plan([KEYSTONE], list(views), DOMAINS, NOW, ControlPlaneSettings(**settings))  # type: ignore[arg-type]


def test_the_defaults_are_unchanged() -> None:
    assert (ControlPlaneSettings().gate_window_s, ControlPlaneSettings().rise_wait_s) == (60.0, 15.0)
    assert (GATE_WINDOW_S, RISE_WAIT_S) == (60.0, 15.0)
    settings = parse_controlplane({}, "haven.toml").settings
    assert (settings.gate_window_s, settings.rise_wait_s) == (60.0, 15.0)


def test_gate_window_s_is_the_planners_window() -> None:
    # The peer was restarted 30 s ago and is not serving yet; the survivor's probes time out (hung-like).
    restarted = UnitStatus(UnitActive.ACTIVE, "running", active_since=NOW - 29)
    victim = replica("ctl-2", (), MAINT, unit=restarted, held_out=True, restarts=(NOW - 30,))
    survivor = replica("ctl-1", timed_out(), CHECK_FAILS)
    held = run(survivor, victim)  # default 60 s: within it, the survivor is held by the gate
    assert (ActionKind.DRAIN, "ctl-1") not in acts(held)
    (gate,) = [h for h in held.holds if h.kind == "mass_failure"]
    assert "restarted within the last 60 s" in gate.reason
    # 20 s: the restart is outside the window, the survivor is no longer counted with it.
    short = run(survivor, victim, gate_window_s=20.0)
    assert not [h for h in short.holds if h.kind == "mass_failure"]
    # 0: only replicas failing now count (a burst gate, as before the window).
    assert not [h for h in run(survivor, victim, gate_window_s=0.0).holds if h.kind == "mass_failure"]
    # 120 s: still held, the reason names the configured window.
    (gate,) = [h for h in run(survivor, victim, gate_window_s=120.0).holds if h.kind == "mass_failure"]
    assert "restarted within the last 120 s" in gate.reason


def test_rise_wait_s_is_how_long_the_last_member_is_kept_for_a_returning_peer() -> None:
    # ctl-2 passes haven's probe since 10 s, HAProxy's check of it still failing; ctl-1, the last member,
    # is hung. Within rise_wait_s ctl-1 is kept (ctl-2 is on its way in); past it, ctl-1 is handled.
    passing = (ProbeResult(False, NOW - 11, "503"), ProbeResult(True, NOW - 10, "200 OK"))
    back = replica("ctl-2", passing, MemberStatus(MemberAdmin.READY, "down", check_passed=False))
    hung = replica("ctl-1", timed_out(), CHECK_FAILS)
    assert acts(run(hung, back)) == []  # default 15 s > 10 s
    assert [h.kind for h in run(hung, back).holds if h.host == "ctl-1"] == ["last_serving"]
    assert acts(run(hung, back, rise_wait_s=5.0)) == [(ActionKind.DRAIN, "ctl-1")]
    assert acts(run(hung, back, rise_wait_s=0.0)) == [(ActionKind.DRAIN, "ctl-1")]
    assert acts(run(hung, back, rise_wait_s=30.0)) == []


def test_the_serving_peer_needs_no_window() -> None:
    # A control: with the peer serving, neither window keeps a hung replica in.
    serving = replica("ctl-2", (ProbeResult(True, NOW - 0.5, "200 OK", 5.0),), CHECK_PASSES)
    for settings in ({}, {"gate_window_s": 3600.0, "rise_wait_s": 600.0}):
        assert acts(run(replica("ctl-1", timed_out(), CHECK_FAILS), serving, **settings)) == [
            (ActionKind.DRAIN, "ctl-1")
        ]


def parse(text: str) -> ControlPlaneSettings:
    return parse_controlplane(tomllib.loads(text).get("controlplane"), "haven.toml").settings


def test_haven_toml_sets_them() -> None:
    settings = parse("[controlplane]\ngate_window_s = 30\nrise_wait_s = 7.5\n")
    assert (settings.gate_window_s, settings.rise_wait_s) == (30.0, 7.5)
    assert dataclasses.replace(settings, gate_window_s=60.0, rise_wait_s=15.0) == ControlPlaneSettings()


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        ("gate_window_s = 3601", "gate_window_s must be between 0 and 3600 seconds, got 3601.0", "= 60.0"),
        ("gate_window_s = -1", "gate_window_s must be between 0 and 3600 seconds, got -1.0", "= 60.0"),
        ("gate_window_s = nan", "gate_window_s must be between 0 and 3600 seconds, got nan", "= 60.0"),
        (
            "gate_window_s = 1" + "0" * 400,
            "gate_window_s must be between 0 and 3600 seconds, got inf",
            "= 60.0",
        ),
        ("rise_wait_s = 601", "rise_wait_s must be between 0 and 600 seconds, got 601.0", "= 15.0"),
        ("rise_wait_s = -0.5", "rise_wait_s must be between 0 and 600 seconds, got -0.5", "= 15.0"),
        ("rise_wait_s = 'soon'", "rise_wait_s must be a number, got 'soon'", "rise_wait_s = 2.0"),
        ("gate_window_s = true", "gate_window_s must be a number, got True", "gate_window_s = 2.0"),
    ],
)
def test_a_bad_value_is_refused_by_name_with_its_range(text: str, message: str, hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse("[controlplane]\n" + text)
    assert message in caught.value.message and "haven.toml [controlplane]" in caught.value.message
    assert hint in caught.value.hint


def test_a_bad_value_changes_nothing_and_the_cli_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "haven.toml").write_text("[controlplane]\nrise_wait_s = 900\n")
    code = main(["--home", str(tmp_path), "status"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "rise_wait_s must be between 0 and 600 seconds, got 900.0" in err
