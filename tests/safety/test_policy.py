"""haven.safety's policy, rule by rule (pure: no cloud, no store)."""

from __future__ import annotations

import dataclasses

import pytest

from haven.domain.ids import HostName, SegmentId
from haven.domain.liveness import HostCondition
from haven.domain.settings import DetectionSettings
from haven.safety import (
    Action,
    Answer,
    SafetyView,
    Source,
    authorize,
    cloud_gate_reason,
    fence_budget,
    process_gate_reason,
    segment_gate_reason,
)

S = DetectionSettings()
HOST = HostName("compute-7")
DEAD = SafetyView(HOST, HostCondition.DEAD, "silent on every channel", SegmentId("seg"), 10)


@pytest.mark.parametrize(
    "condition", [HostCondition.HEALTHY, HostCondition.ISOLATED, HostCondition.AGENT_DOWN]
)
@pytest.mark.parametrize("source", list(Source))
@pytest.mark.parametrize("action", [Action.FENCE, Action.EVACUATE])
def test_a_host_that_speaks_on_any_channel_is_never_fenced_nor_emptied(
    condition: HostCondition, source: Source, action: Action
) -> None:
    # Whoever reported it, released or not, budget or not: the host speaks, so no. A report from
    # outside waits a while first (a monitor may be a moment ahead of haven's channels), never yes.
    view = dataclasses.replace(DEAD, condition=condition, source=source, released=True)
    for waited in (0.0, S.external_report_wait_s - 0.1, S.external_report_wait_s, 3600.0):
        decision = authorize(action, dataclasses.replace(view, waited_s=waited), S)
        early = source is Source.EXTERNAL and waited < S.external_report_wait_s
        assert decision.answer is (Answer.HOLD if early else Answer.REFUSE)
        assert HOST in decision.reason
        if source is Source.EXTERNAL:
            assert "external report" in decision.reason


def test_an_external_report_about_a_suspect_host_waits_for_havens_own_verdict() -> None:
    view = dataclasses.replace(DEAD, condition=HostCondition.SUSPECT, source=Source.EXTERNAL)
    decision = authorize(Action.FENCE, view, S)
    assert decision.answer is Answer.HOLD
    assert "do not confirm it dead yet" in decision.reason


def test_a_dead_host_is_fenced() -> None:
    assert authorize(Action.FENCE, DEAD, S).answer is Answer.ALLOW
    assert authorize(Action.FENCE, dataclasses.replace(DEAD, source=Source.EXTERNAL), S).allowed


def test_a_held_host_or_segment_holds_the_fence_until_released() -> None:
    held = dataclasses.replace(DEAD, condition=HostCondition.HELD, reason="held by the observer gate: x")
    assert authorize(Action.FENCE, held, S).answer is Answer.HOLD
    in_held_segment = dataclasses.replace(DEAD, segment_hold="6 of 10 hosts went silent")
    decision = authorize(Action.FENCE, in_held_segment, S)
    assert decision.answer is Answer.HOLD and "6 of 10" in decision.reason
    assert authorize(Action.FENCE, dataclasses.replace(in_held_segment, released=True), S).allowed


def test_the_fence_budget_holds_a_chain_of_fences_in_one_window() -> None:
    assert fence_budget(10, S) == 5
    assert fence_budget(2, S) == 1 and fence_budget(1, S) == 1
    assert fence_budget(10, dataclasses.replace(S, fence_budget=2)) == 2
    assert authorize(Action.FENCE, dataclasses.replace(DEAD, fenced_in_window=4), S).allowed
    spent = authorize(Action.FENCE, dataclasses.replace(DEAD, fenced_in_window=5), S)
    assert spent.answer is Answer.HOLD and "budget" in spent.reason
    released = dataclasses.replace(DEAD, fenced_in_window=5, released=True)
    assert authorize(Action.FENCE, released, S).allowed


def test_evacuating_a_silent_host_is_not_held_by_a_gate() -> None:
    # The step checks the BMC says off just before the call; a gate protects live hosts from fencing.
    held = dataclasses.replace(DEAD, condition=HostCondition.HELD, segment_hold="held", fenced_in_window=9)
    assert authorize(Action.EVACUATE, held, S).allowed


def test_disabling_a_service_is_held_while_the_control_plane_is_the_likely_fault() -> None:
    healthy = dataclasses.replace(DEAD, condition=HostCondition.HEALTHY)
    assert authorize(Action.DISABLE_SERVICE, healthy, S).allowed
    held = dataclasses.replace(healthy, control_plane_hold="9 of 10 nova-compute services stopped")
    decision = authorize(Action.DISABLE_SERVICE, held, S)
    assert decision.answer is Answer.HOLD and "9 of 10" in decision.reason


@pytest.mark.parametrize(
    ("silent", "size", "held"),
    [
        (1, 1, False),
        (1, 10, False),
        (5, 10, False),
        (6, 10, True),
        (2, 3, True),
        (1, 3, False),
        (2, 4, False),
    ],
)
def test_the_segment_gate(silent: int, size: int, held: bool) -> None:
    assert bool(segment_gate_reason(silent, size, S)) is held


def test_the_cloud_and_process_gates() -> None:
    assert not cloud_gate_reason(50, 100, S) and cloud_gate_reason(51, 100, S)
    assert not process_gate_reason(1, 2, S)  # one nova-compute is that host's failure
    assert not process_gate_reason(5, 10, S)
    reason = process_gate_reason(6, 10, S)
    assert "control plane" in reason and "6 of 10" in reason


def test_no_fence_on_stale_readings_nor_of_a_host_fenced_already() -> None:
    fresh = S.grace_s + S.heartbeat_interval_s
    assert authorize(Action.FENCE, dataclasses.replace(DEAD, readings_age_s=fresh), S).allowed
    stale = authorize(Action.FENCE, dataclasses.replace(DEAD, readings_age_s=fresh + 0.1), S)
    assert stale.answer is Answer.HOLD and "old" in stale.reason
    again = authorize(Action.FENCE, dataclasses.replace(DEAD, fenced_already=True, released=True), S)
    assert again.answer is Answer.REFUSE and "fenced and emptied already" in again.reason


def test_evacuations_wait_for_the_control_plane() -> None:
    held = dataclasses.replace(DEAD, control_plane_hold="6 of 10 nova-compute services stopped")
    decision = authorize(Action.EVACUATE, held, S)
    assert decision.answer is Answer.HOLD and "control plane" in decision.reason


def test_a_powered_host_dead_on_silence_waits_a_grace_period_before_its_fence() -> None:
    powered = dataclasses.replace(DEAD, powered=True)
    early = authorize(Action.FENCE, powered, S)
    assert early.answer is Answer.HOLD and not early.alert and "partition" in early.reason
    assert authorize(Action.FENCE, dataclasses.replace(powered, waited_s=S.grace_s), S).allowed
    assert authorize(Action.FENCE, DEAD, S).allowed  # its BMC says off: no wait


def test_a_power_off_goes_out_only_on_readings_of_the_current_tick() -> None:
    # A host heard again between the last pass and the power-off would be powered off live.
    old = authorize(Action.FENCE, dataclasses.replace(DEAD, readings_this_tick=False), S)
    assert old.answer is Answer.HOLD and old.until_next_pass and not old.alert
    # Evacuating a host already fenced needs no such wait.
    assert authorize(Action.EVACUATE, dataclasses.replace(DEAD, readings_this_tick=False), S).allowed


def test_a_fence_retried_after_its_bmc_failed_waits_for_readings_after_the_bmc_answers() -> None:
    # The fault that cut the BMC off may have cut the host off too: two heartbeats show it back.
    wanted = 2 * S.heartbeat_interval_s
    for after in (-5.0, 0.0, wanted - 0.1):
        early = authorize(Action.FENCE, dataclasses.replace(DEAD, readings_after_bmc_s=after), S)
        assert early.answer is Answer.HOLD and "BMC answers again" in early.reason
    assert authorize(Action.FENCE, dataclasses.replace(DEAD, readings_after_bmc_s=wanted), S).allowed
