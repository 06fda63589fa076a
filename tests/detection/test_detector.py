"""The pure detector: one host's verdict from its channels (assess), a pass with the observer gate (detect).

Default settings: heartbeat every 1 s, a beat counts as missed after 1.5 s, grace 3 s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haven.detection.detector import Detection, Hold, Membership, assess, detect
from haven.domain.ids import HostName, SegmentId
from haven.domain.liveness import BmcPower, HostCondition, HostLiveness
from haven.domain.settings import DetectionSettings

NOW = 1_800_000_100.0
S = DetectionSettings()
SEG = SegmentId("seg-a")
OTHER = SegmentId("seg-b")


def h(n: int) -> HostName:
    return HostName(f"compute-{n:03d}")


def reading(
    host: HostName,
    *,
    agent_age: float | None = 0.0,
    second_age: float | None = None,
    nova_up: bool = False,
    nova_age: float | None = None,
    bmc: BmcPower = BmcPower.OFF,
    failed: Iterable[str] = (),
    now: float = NOW,
) -> HostLiveness:
    """Each channel's last beat ``*_age`` seconds before ``now`` (None: no such channel)."""
    return HostLiveness(
        host=host,
        agent_seen=None if agent_age is None else now - agent_age,
        second_seen=None if second_age is None else now - second_age,
        nova_up=nova_up,
        nova_updated_at=None if nova_age is None else now - nova_age,
        bmc=bmc,
        failed_processes=frozenset(failed),
    )


def silent(host: HostName, age: float, now: float = NOW) -> HostLiveness:
    """Both heartbeat channels silent for ``age`` seconds, Nova down."""
    return reading(host, agent_age=age, second_age=age, now=now)


def members(sizes: Mapping[SegmentId, int], start: int = 0) -> Membership:
    segment_of: dict[HostName, SegmentId] = {}
    n = start
    for segment_id, size in sizes.items():
        for _ in range(size):
            segment_of[h(n)] = segment_id
            n += 1
    return Membership(segment_of, dict(sizes))


def run(
    readings: Iterable[HostLiveness],
    membership: Membership,
    holds: Mapping[SegmentId, Hold] | None = None,
    now: float = NOW,
) -> Detection:
    return detect(list(readings), membership, holds or {}, now, S)


def conditions(result: Detection) -> dict[HostName, HostCondition]:
    return {host: v.condition for host, v in result.verdicts.items()}


# ---- assess: one host ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (0.0, HostCondition.HEALTHY),
        (1.0, HostCondition.HEALTHY),
        (1.5, HostCondition.HEALTHY),  # one and a half intervals: not yet a missed beat
        (1.51, HostCondition.SUSPECT),
        (2.99, HostCondition.SUSPECT),
        (3.0, HostCondition.DEAD),  # the grace period has elapsed
        (3.01, HostCondition.DEAD),
        (600.0, HostCondition.DEAD),
    ],
)
def test_silent_host_healthy_suspect_dead_at_the_grace_boundary(age: float, expected: HostCondition) -> None:
    assert assess(silent(h(1), age), NOW, S).condition is expected


def test_a_host_with_no_heartbeat_ever_and_nova_down_is_dead() -> None:
    verdict = assess(reading(h(1), agent_age=None, second_age=None), NOW, S)
    assert verdict.condition is HostCondition.DEAD


def test_dead_verdict_reason_names_the_silence_and_the_bmc() -> None:
    verdict = assess(silent(h(1), 4.0), NOW, S)
    assert verdict.condition is HostCondition.DEAD
    assert verdict.silent_since == NOW - 4.0
    assert (
        "4.0 s" in verdict.reason
        and "grace 3 s" in verdict.reason
        and "BMC reports power off" in verdict.reason
    )


def test_suspect_remembers_when_the_last_channel_fell_silent() -> None:
    verdict = assess(reading(h(1), agent_age=2.5, second_age=2.0), NOW, S)
    assert verdict.condition is HostCondition.SUSPECT
    assert verdict.silent_since == NOW - 2.0  # the most recent beat on any channel


def test_the_second_channel_keeps_a_host_alive_past_the_management_grace() -> None:
    # Silent on the management network for 2.5 s but beating on the second: only suspect.
    early = assess(reading(h(1), agent_age=2.5, second_age=0.2), NOW, S)
    assert early.condition is HostCondition.SUSPECT
    # Past the grace period, still beating on the second network: isolated, never dead.
    late = assess(reading(h(1), agent_age=30.0, second_age=0.2), NOW, S)
    assert late.condition is HostCondition.ISOLATED
    assert "isolated" in late.reason and "not evacuating" in late.reason


def test_a_second_channel_silent_too_is_no_alibi() -> None:
    verdict = assess(reading(h(1), agent_age=30.0, second_age=10.0), NOW, S)
    assert verdict.condition is HostCondition.DEAD
    assert verdict.silent_since == NOW - 10.0


def test_agent_down_when_nova_reported_after_the_silence_began() -> None:
    verdict = assess(reading(h(1), agent_age=20.0, second_age=20.0, nova_up=True, nova_age=5.0), NOW, S)
    assert verdict.condition is HostCondition.AGENT_DOWN
    assert verdict.silent_since == NOW - 20.0


def test_nova_report_from_before_the_silence_does_not_make_it_agent_down() -> None:
    verdict = assess(reading(h(1), agent_age=20.0, second_age=20.0, nova_up=True, nova_age=25.0), NOW, S)
    assert verdict.condition is HostCondition.DEAD


def test_nova_down_with_a_recent_report_is_still_dead() -> None:
    # force_down or service_down_time: Nova itself says the service is down.
    verdict = assess(reading(h(1), agent_age=20.0, second_age=20.0, nova_up=False, nova_age=1.0), NOW, S)
    assert verdict.condition is HostCondition.DEAD


def test_a_healthy_host_carries_its_failed_processes() -> None:
    verdict = assess(reading(h(1), failed={"nova-compute"}), NOW, S)
    assert verdict.condition is HostCondition.HEALTHY
    assert verdict.failed_processes == frozenset({"nova-compute"})


@given(
    agent_age=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e4, allow_nan=False)),
    second_age=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e4, allow_nan=False)),
    nova_up=st.booleans(),
    nova_age=st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e4, allow_nan=False)),
    bmc=st.sampled_from(list(BmcPower)),
    grace=st.floats(min_value=1.5, max_value=120.0, allow_nan=False),
)
def test_never_dead_while_any_heartbeat_channel_is_within_grace(
    agent_age: float | None,
    second_age: float | None,
    nova_up: bool,
    nova_age: float | None,
    bmc: BmcPower,
    grace: float,
) -> None:
    settings = DetectionSettings(grace_s=grace)
    r = reading(h(1), agent_age=agent_age, second_age=second_age, nova_up=nova_up, nova_age=nova_age, bmc=bmc)
    beats = [seen for seen in (r.agent_seen, r.second_seen) if seen is not None]
    verdict = assess(r, NOW, settings)
    if any(NOW - seen < grace for seen in beats):
        assert verdict.condition is not HostCondition.DEAD
    # ...and through a whole pass (gate included) of a large segment, where one host never trips the gate.
    membership = Membership({h(1): SEG}, {SEG: 100})
    passed = detect([r], membership, {}, NOW, settings).verdicts.get(h(1))
    if passed is not None and passed.condition is HostCondition.DEAD:
        assert all(NOW - seen >= grace for seen in beats)


# ---- detect: a pass over many hosts -------------------------------------------------------------


def test_hosts_outside_every_segment_are_ignored() -> None:
    membership = members({SEG: 10})
    stranger = HostName("not-in-any-segment")
    result = run([silent(stranger, 60.0), reading(stranger, agent_age=2.0, second_age=2.0)], membership)
    assert result.verdicts == {}
    assert result.recheck_at is None
    assert result.holds == {} and result.new_holds == ()


def test_healthy_hosts_are_left_out_of_the_verdicts() -> None:
    membership = members({SEG: 10})
    result = run([reading(h(0)), silent(h(1), 10.0)], membership)
    assert conditions(result) == {h(1): HostCondition.DEAD}


def test_healthy_host_with_a_failed_process_is_reported() -> None:
    membership = members({SEG: 10})
    result = run([reading(h(0), failed={"nova-compute"})], membership)
    assert result.verdicts[h(0)].condition is HostCondition.HEALTHY
    assert result.verdicts[h(0)].failed_processes == frozenset({"nova-compute"})


def test_recheck_at_is_when_the_earliest_suspect_reaches_its_grace() -> None:
    membership = members({SEG: 10})
    result = run([silent(h(0), 2.0), silent(h(1), 1.6), silent(h(2), 10.0)], membership)
    assert conditions(result) == {
        h(0): HostCondition.SUSPECT,
        h(1): HostCondition.SUSPECT,
        h(2): HostCondition.DEAD,
    }
    silent_since = result.verdicts[h(0)].silent_since
    assert silent_since == NOW - 2.0
    assert result.recheck_at == silent_since + S.grace_s


def test_isolated_suspects_do_not_ask_for_a_recheck_and_no_suspect_means_none() -> None:
    membership = members({SEG: 10})
    # Management silent 2 s but the second network beats: suspect without a silence to time.
    result = run([reading(h(0), agent_age=2.0, second_age=0.1), silent(h(1), 30.0)], membership)
    assert result.verdicts[h(0)].condition is HostCondition.SUSPECT
    assert result.recheck_at is None


def test_isolated_and_agent_down_through_a_pass() -> None:
    membership = members({SEG: 10})
    result = run(
        [
            reading(h(0), agent_age=10.0, second_age=0.5),
            reading(h(1), agent_age=10.0, second_age=10.0, nova_up=True, nova_age=2.0),
        ],
        membership,
    )
    assert conditions(result) == {h(0): HostCondition.ISOLATED, h(1): HostCondition.AGENT_DOWN}
    assert result.holds == {}


# ---- the observer gate ------------------------------------------------------------------------


def test_more_than_half_of_a_segment_silent_at_once_is_held() -> None:
    membership = members({SEG: 10})
    result = run([silent(h(n), 3.5) for n in range(6)], membership)
    assert set(conditions(result).values()) == {HostCondition.HELD}
    assert len(result.verdicts) == 6
    assert list(result.holds) == [SEG]
    (hold,) = result.new_holds
    assert hold.segment_id == SEG and hold.since == NOW
    assert hold.hosts == frozenset(h(n) for n in range(6))
    assert "6 of 10" in hold.reason
    assert result.released == ()


def test_exactly_half_of_a_segment_is_not_held() -> None:
    membership = members({SEG: 10})
    result = run([silent(h(n), 3.5) for n in range(5)], membership)
    assert set(conditions(result).values()) == {HostCondition.DEAD}
    assert result.holds == {} and result.new_holds == ()


def test_silent_suspects_count_towards_the_gate_before_any_is_dead() -> None:
    membership = members({SEG: 10})
    result = run([silent(h(n), 2.0) for n in range(6)], membership)
    assert set(conditions(result).values()) == {HostCondition.HELD}
    assert len(result.new_holds) == 1


def test_a_segment_of_three_losing_two_is_held() -> None:
    membership = members({SEG: 3})
    result = run([silent(h(0), 3.5), silent(h(1), 3.5)], membership)
    assert conditions(result) == {h(0): HostCondition.HELD, h(1): HostCondition.HELD}
    assert result.new_holds[0].hosts == frozenset({h(0), h(1)})


def test_the_small_segment_rule_holds_below_the_share() -> None:
    # With the defaults 2 of 3 is already more than half; a higher share shows the small-segment rule alone.
    settings = DetectionSettings(gate_share=0.9)
    membership = members({SEG: 3})
    result = detect([silent(h(0), 3.5), silent(h(1), 3.5)], membership, {}, NOW, settings)
    assert set(conditions(result).values()) == {HostCondition.HELD}
    assert "small segment" in result.new_holds[0].reason
    one = detect([silent(h(0), 3.5)], membership, {}, NOW, settings)
    assert conditions(one) == {h(0): HostCondition.DEAD}


def test_a_segment_of_three_losing_one_is_not_held() -> None:
    membership = members({SEG: 3})
    result = run([silent(h(0), 3.5)], membership)
    assert conditions(result) == {h(0): HostCondition.DEAD}
    assert result.holds == {}


def test_a_segment_of_four_losing_two_is_not_held() -> None:
    membership = members({SEG: 4})  # neither small nor more than half
    result = run([silent(h(0), 3.5), silent(h(1), 3.5)], membership)
    assert set(conditions(result).values()) == {HostCondition.DEAD}


def test_the_gate_counts_each_segment_on_its_own() -> None:
    membership = members({SEG: 10, OTHER: 10})
    # 4 silent in each segment: 8 of 20 overall, but below half of either segment.
    readings = [silent(h(n), 4.0) for n in (*range(4), *range(10, 14))]
    result = run(readings, membership)
    assert set(conditions(result).values()) == {HostCondition.DEAD}
    assert result.holds == {}
    # 6 of OTHER: only OTHER is held.
    readings = [silent(h(n), 4.0) for n in (*range(4), *range(10, 16))]
    result = run(readings, membership)
    assert list(result.holds) == [OTHER]
    dead = {host for host, c in conditions(result).items() if c is HostCondition.DEAD}
    assert dead == {h(n) for n in range(4)}


def test_a_host_dead_long_before_the_burst_does_not_count() -> None:
    membership = members({SEG: 10})
    # h0 died 10 minutes ago; now 5 more go silent: 6 silent, but the burst is 5 (exactly half).
    readings = [silent(h(0), 600.0), *(silent(h(n), 3.5) for n in range(1, 6))]
    result = run(readings, membership)
    assert result.holds == {}
    assert set(conditions(result).values()) == {HostCondition.DEAD}


def test_the_gate_counts_every_silence_within_its_window_not_a_burst() -> None:
    # A partition that rolls in waves is one event: silences far apart inside the window count.
    membership = members({SEG: 10})
    window = S.gate_window_s
    waves = [silent(h(n), 3.5) for n in range(3)] + [silent(h(n), window - 1.0) for n in range(3, 6)]
    assert list(run(waves, membership).holds) == [SEG]
    outside = [silent(h(n), 3.5) for n in range(5)] + [silent(h(5), window + 0.01)]
    assert run(outside, membership).holds == {}


def test_staggered_waves_five_seconds_apart_are_held() -> None:
    # The reviewer's case: 6 of 10 silent in two waves 5 s apart (the old burst gate let both pass).
    membership = members({SEG: 10})
    waves = [silent(h(n), 8.5) for n in range(3)] + [silent(h(n), 3.5) for n in range(3, 6)]
    result = run(waves, membership)
    assert list(result.holds) == [SEG]
    assert set(conditions(result).values()) == {HostCondition.HELD}


def test_more_than_half_of_the_cloud_silent_holds_every_segment_with_silent_hosts() -> None:
    # 3 segments of 4: two hosts silent in each (exactly half of each), 6 of 12 is half the cloud:
    # not held; a seventh tips the cloud over its share and every segment with silent hosts is held.
    membership = members({SEG: 4, OTHER: 4, SegmentId("seg-c"): 4})
    six = [silent(h(n), 3.5) for n in (0, 1, 4, 5, 8, 9)]
    assert run(six, membership).holds == {}
    seven = [*six, silent(h(2), 3.5)]
    assert set(run(seven, membership).holds) == {SEG, OTHER, SegmentId("seg-c")}


def test_released_hosts_are_not_counted_and_end_their_hold() -> None:
    membership = members({SEG: 10})
    silent_six = [silent(h(n), 3.5) for n in range(6)]
    first = run(silent_six, membership)
    assert list(first.holds) == [SEG]
    released = frozenset(h(n) for n in range(6))
    after = detect(silent_six, membership, first.holds, NOW, S, released)
    assert after.holds == {} and after.released == (SEG,)
    assert set(conditions(after).values()) == {HostCondition.DEAD}


def test_hold_is_kept_while_the_held_hosts_stay_silent() -> None:
    membership = members({SEG: 10})
    first = run([silent(h(n), 3.5) for n in range(6)], membership)
    later = NOW + 300.0
    second = run([silent(h(n), 303.5, now=later) for n in range(6)], membership, first.holds, later)
    # Long past the grace period, still held: never dead while the observer is the suspect.
    assert set(conditions(second).values()) == {HostCondition.HELD}
    assert second.holds[SEG].since == NOW  # the same hold, not a new one
    assert second.holds[SEG].hosts == first.holds[SEG].hosts
    assert second.new_holds == () and second.released == ()


def test_hold_is_kept_while_some_held_hosts_stay_silent() -> None:
    membership = members({SEG: 10})
    first = run([silent(h(n), 3.5) for n in range(6)], membership)
    later = NOW + 10.0
    # Four hosts beat again; two are still silent.
    readings = [reading(h(n), now=later) for n in range(4)] + [silent(h(n), 13.5, now=later) for n in (4, 5)]
    second = run(readings, membership, first.holds, later)
    assert conditions(second) == {h(4): HostCondition.HELD, h(5): HostCondition.HELD}
    assert list(second.holds) == [SEG] and second.released == ()


def test_a_host_going_silent_during_a_hold_joins_it() -> None:
    membership = members({SEG: 10})
    first = run([silent(h(n), 3.5) for n in range(6)], membership)
    later = NOW + 10.0
    readings = [silent(h(n), 13.5, now=later) for n in range(6)] + [silent(h(7), 4.0, now=later)]
    second = run(readings, membership, first.holds, later)
    assert second.verdicts[h(7)].condition is HostCondition.HELD
    assert h(7) in second.holds[SEG].hosts


def test_hold_is_released_when_the_held_hosts_beat_again() -> None:
    membership = members({SEG: 10})
    first = run([silent(h(n), 3.5) for n in range(6)], membership)
    later = NOW + 60.0
    second = run([reading(h(n), now=later) for n in range(6)], membership, first.holds, later)
    assert second.released == (SEG,)
    assert second.holds == {} and second.verdicts == {}


def test_a_long_dead_host_does_not_keep_a_hold() -> None:
    membership = members({SEG: 10})
    # h0 has been dead for 10 minutes when a burst of 6 holds the segment.
    first = run([silent(h(0), 600.0), *(silent(h(n), 3.5) for n in range(1, 7))], membership)
    assert first.holds[SEG].hosts == frozenset(h(n) for n in range(1, 7))
    assert first.verdicts[h(0)].condition is HostCondition.DEAD  # it was dead before: not held
    later = NOW + 60.0
    # The burst heals; h0 stays dead: the hold goes, and h0 is still just dead.
    readings = [silent(h(0), 660.0, now=later), *(reading(h(n), now=later) for n in range(1, 7))]
    second = run(readings, membership, first.holds, later)
    assert second.released == (SEG,)
    assert conditions(second) == {h(0): HostCondition.DEAD}


def test_released_segment_can_be_held_again_by_a_new_burst() -> None:
    membership = members({SEG: 10})
    first = run([silent(h(n), 3.5) for n in range(6)], membership)
    t2 = NOW + 60.0
    second = run([reading(h(n), now=t2) for n in range(6)], membership, first.holds, t2)
    assert second.holds == {}
    t3 = NOW + 120.0
    third = run([silent(h(n), 3.5, now=t3) for n in range(2, 8)], membership, second.holds, t3)
    assert third.holds[SEG].since == t3
    assert len(third.new_holds) == 1


# ---- a powered host: Nova must agree too --------------------------------------------------------


def test_powered_silent_host_waits_for_novas_missed_report() -> None:
    # Heartbeats silent for 4 s, BMC says on, Nova up with a report 6 s old: a live host whose agent
    # died would report again within its 10 s interval, so this is not yet dead; nor one interval
    # after the missed report, so that every other host has missed its own too if Nova lost them all.
    r = reading(h(1), agent_age=4.0, second_age=4.0, nova_up=True, nova_age=6.0, bmc=BmcPower.ON)
    verdict = assess(r, NOW, S)
    assert verdict.condition is HostCondition.SUSPECT
    assert verdict.recheck_at == NOW - 6.0 + 2 * S.nova_report_interval_s + S.grace_s
    missed = reading(h(1), agent_age=11.0, second_age=11.0, nova_up=True, nova_age=13.5, bmc=BmcPower.ON)
    assert assess(missed, NOW, S).condition is HostCondition.SUSPECT
    late = reading(h(1), agent_age=21.0, second_age=21.0, nova_up=True, nova_age=23.5, bmc=BmcPower.ON)
    assert assess(late, NOW, S).condition is HostCondition.DEAD


def test_powered_host_whose_nova_compute_reported_after_the_silence_is_agent_down() -> None:
    r = reading(h(1), agent_age=5.0, second_age=5.0, nova_up=True, nova_age=1.0, bmc=BmcPower.ON)
    assert assess(r, NOW, S).condition is HostCondition.AGENT_DOWN


def test_a_report_within_novas_timestamp_slack_of_the_silence_is_not_taken_as_later() -> None:
    # A power loss: nova-compute's last report and the agent's last beat came together, but Nova's
    # whole-second times place the report up to 1.5 s late; that is not "reported since".
    base = reading(h(1), agent_age=3.0, second_age=3.0, nova_up=True, nova_age=2.0, bmc=BmcPower.OFF)
    assert assess(base, NOW, S).condition is HostCondition.AGENT_DOWN  # exact clocks: it did report since
    rounded = dataclasses.replace(base, nova_time_slack_s=1.5)
    assert assess(rounded, NOW, S).condition is HostCondition.DEAD
    # Beyond the slack the report is later for sure: agent down, not dead.
    later = dataclasses.replace(rounded, nova_updated_at=NOW - 1.0)
    assert assess(later, NOW, S).condition is HostCondition.AGENT_DOWN
    # Within it but with the BMC powered: not agent down, not dead; waiting for Nova.
    powered = dataclasses.replace(rounded, bmc=BmcPower.ON)
    assert assess(powered, NOW, S).condition is HostCondition.SUSPECT


def test_bmc_off_confirms_at_once_even_while_nova_still_says_up() -> None:
    r = reading(h(1), agent_age=3.5, second_age=3.5, nova_up=True, nova_age=5.0, bmc=BmcPower.OFF)
    assert assess(r, NOW, S).condition is HostCondition.DEAD


def test_unreachable_bmc_waits_for_nova_like_a_powered_host() -> None:
    r = reading(h(1), agent_age=4.0, second_age=4.0, nova_up=True, nova_age=6.0, bmc=BmcPower.UNKNOWN)
    assert assess(r, NOW, S).condition is HostCondition.SUSPECT


def test_the_only_host_of_a_segment_dying_is_not_held_by_the_gate() -> None:
    result = run([silent(h(0), 3.5)], members({SEG: 1}))
    assert result.holds == {}
    assert conditions(result) == {h(0): HostCondition.DEAD}


# ---- hosts silent while powered: a network's signature --------------------------------------------


def powered_silent(host: HostName, age: float, bmc: BmcPower = BmcPower.ON) -> HostLiveness:
    """Silent on both networks and to Nova, its BMC not reporting power off."""
    return reading(host, agent_age=age, second_age=age, bmc=bmc)


@pytest.mark.parametrize("bmc", [BmcPower.ON, BmcPower.UNKNOWN])
def test_three_of_ten_silent_while_powered_are_held(bmc: BmcPower) -> None:
    # Below the segment's share, but three powered hosts falling silent together is a network fault.
    membership = members({SEG: 10})
    result = run([powered_silent(h(n), 20.0, bmc) for n in range(3)], membership)
    assert list(result.holds) == [SEG]
    assert "BMCs do not report power off" in result.holds[SEG].reason
    assert set(conditions(result).values()) == {HostCondition.HELD}


def test_one_hung_host_and_powered_off_hosts_are_not_held_by_the_unconfirmed_rule() -> None:
    membership = members({SEG: 10})
    one = run([powered_silent(h(0), 20.0)], membership)  # a hang: fenced as usual
    assert one.holds == {} and conditions(one) == {h(0): HostCondition.DEAD}
    off = run([silent(h(n), 20.0) for n in range(4)], membership)  # a rack's power: BMCs say off
    assert off.holds == {} and set(conditions(off).values()) == {HostCondition.DEAD}
    two = run([powered_silent(h(n), 20.0) for n in range(2)], membership)  # 20%: not more than 25%
    assert two.holds == {}


# ---- Nova's silence is no evidence while Nova hears no one -----------------------------------------


def test_novas_silence_about_a_powered_host_is_no_evidence_when_others_reports_stopped_too() -> None:
    # h0's agent died long ago; its nova-compute's last report came 65 s ago and Nova counts it down;
    # h1's agent beats, but its nova-compute's last report came at the same moment: the reports are
    # lost on their way (RabbitMQ, the conductor), not on the hosts.
    membership = members({SEG: 10})
    dead_agent = reading(h(0), agent_age=100.0, second_age=100.0, nova_age=65.0, bmc=BmcPower.ON)
    beating = reading(h(1), agent_age=0.0, nova_up=True, nova_age=65.5, bmc=BmcPower.ON)
    also = reading(h(2), agent_age=0.0, nova_up=True, nova_age=64.0, bmc=BmcPower.ON)
    result = run([dead_agent, beating, also], membership)
    assert result.verdicts[h(0)].condition is HostCondition.SUSPECT
    assert "control plane is the likely fault" in result.verdicts[h(0)].reason
    alone = run([dead_agent], membership)  # Nova still hears everyone else: a hang, dead
    assert alone.verdicts[h(0)].condition is HostCondition.DEAD
    # One nova-compute crashing then, among nine that report, is a coincidence: still dead.
    assert run([dead_agent, beating], membership).verdicts[h(0)].condition is HostCondition.DEAD
    # In a segment of two, the only other host counts: its reports stopped too.
    two = run([dead_agent, beating], members({SEG: 2}))
    assert two.verdicts[h(0)].condition is HostCondition.SUSPECT
    long_ago = reading(h(1), agent_age=0.0, nova_up=False, nova_age=900.0, bmc=BmcPower.ON)
    unrelated = run([dead_agent, long_ago], membership)  # a nova-compute that crashed long before
    assert unrelated.verdicts[h(0)].condition is HostCondition.DEAD
    powered_off = dataclasses.replace(dead_agent, bmc=BmcPower.OFF)  # the BMC's word needs no Nova
    assert run([powered_off, beating, also], membership).verdicts[h(0)].condition is HostCondition.DEAD
