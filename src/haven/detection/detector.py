"""The detector: a pure function from liveness readings to per-host verdicts and segment holds.

Called by the engine once per pass with the readings of hosts that look
unusual (healthy hosts are not read at all, so a pass is O(anomalies)).

Rules, in short:
- A host is *dead* only when every heartbeat channel has been silent past the
  grace period and Nova has not heard from it since; *isolated* when the
  management channel is silent but another still beats; *agent down* when
  haven's agent is silent but nova-compute still reports.
- The observer gate: when more than ``gate_share`` of a segment (or, in a
  segment of ``gate_small_segment_size`` hosts or fewer, ``gate_small_segment_loss``
  hosts) goes silent inside one grace window, the likely fault is the observer,
  not the hosts: the segment is *held* and no host in it is declared dead until
  the hosts that went silent beat again.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from haven.domain.ids import HostName, SegmentId
from haven.domain.liveness import BmcPower, HostCondition, HostLiveness
from haven.domain.settings import DetectionSettings

NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class Verdict:
    host: HostName
    condition: HostCondition
    reason: str
    silent_since: float | None = None  # when the last heartbeat channel fell silent
    failed_processes: frozenset[str] = frozenset()
    recheck_at: float | None = None  # when this verdict may change without any new reading


@dataclass(frozen=True, slots=True)
class Hold:
    segment_id: SegmentId
    since: float
    reason: str
    hosts: frozenset[HostName]  # the silent hosts that caused (or joined) the hold
    silent_from: float | None = None  # when the first of them fell silent (unknown after a restart)


@dataclass(frozen=True, slots=True)
class Membership:
    """Which segment each managed host belongs to, and each segment's size."""

    segment_of: Mapping[HostName, SegmentId]
    sizes: Mapping[SegmentId, int]


@dataclass(frozen=True, slots=True)
class Detection:
    verdicts: Mapping[HostName, Verdict]  # hosts that are not plainly healthy
    holds: Mapping[SegmentId, Hold]  # every hold in force after this pass
    recheck_at: float | None  # the earliest time a verdict could change without new readings
    new_holds: tuple[Hold, ...] = field(default=())
    released: tuple[SegmentId, ...] = field(default=())


def assess(reading: HostLiveness, now: float, settings: DetectionSettings) -> Verdict:
    """One host's verdict from its own channels, before the observer gate is applied."""
    suspect_after = settings.heartbeat_interval_s * 1.5
    agent_seen = reading.agent_seen if reading.agent_seen is not None else NEVER
    agent_age = now - agent_seen
    if agent_age <= suspect_after:
        return Verdict(
            reading.host, HostCondition.HEALTHY, "heartbeating", failed_processes=reading.failed_processes
        )
    second_seen = reading.second_seen
    if second_seen is not None and now - second_seen <= suspect_after:
        if agent_age > settings.grace_s:
            return Verdict(
                reading.host,
                HostCondition.ISOLATED,
                f"management heartbeat silent for {agent_age:.1f} s but the second network still beats: "
                "isolated, not dead; not evacuating",
            )
        return Verdict(
            reading.host, HostCondition.SUSPECT, f"management heartbeat missed for {agent_age:.1f} s"
        )
    silent_since = max(agent_seen, second_seen if second_seen is not None else NEVER)
    silent_for = now - silent_since
    if silent_for < settings.grace_s:
        return Verdict(
            reading.host,
            HostCondition.SUSPECT,
            f"no heartbeat on any channel for {silent_for:.1f} s",
            silent_since,
            recheck_at=silent_since + settings.grace_s,
        )
    return _judge_silent_host(reading, silent_since, now, settings)


def _judge_silent_host(
    reading: HostLiveness, silent_since: float, now: float, settings: DetectionSettings
) -> Verdict:
    """Every heartbeat is past grace: Nova and the BMC must agree before the host counts as dead."""
    silent_for = now - silent_since
    nova_at = reading.nova_updated_at
    if reading.nova_up and nova_at is not None and nova_at > silent_since:
        return Verdict(
            reading.host,
            HostCondition.AGENT_DOWN,
            f"haven agent silent for {silent_for:.1f} s but nova-compute reported since: "
            "agent down, host alive",
            silent_since,
        )
    heard = f"silent on every channel for {silent_for:.1f} s (grace {settings.grace_s:g} s)"
    if reading.bmc is BmcPower.OFF:
        return Verdict(reading.host, HostCondition.DEAD, f"{heard}, BMC reports power off", silent_since)
    # Powered on (or the BMC is silent too): dead only once nova-compute has also missed its report,
    # since a live host whose agent died keeps reporting to Nova every report interval.
    nova_due_by = (
        (nova_at if nova_at is not None else NEVER) + settings.nova_report_interval_s + settings.grace_s
    )
    if reading.nova_up and now < nova_due_by:
        return Verdict(
            reading.host,
            HostCondition.SUSPECT,
            f"{heard}, BMC {reading.bmc.value}; waiting for nova-compute's next report",
            silent_since,
            recheck_at=nova_due_by,
        )
    nova = (
        "nova service down"
        if not reading.nova_up
        else f"no nova-compute report for {now - (nova_at or 0):.0f} s"
    )
    return Verdict(
        reading.host, HostCondition.DEAD, f"{heard}, {nova}, BMC {reading.bmc.value}", silent_since
    )


def detect(
    readings: Sequence[HostLiveness],
    membership: Membership,
    holds: Mapping[SegmentId, Hold],
    now: float,
    settings: DetectionSettings,
) -> Detection:
    verdicts: dict[HostName, Verdict] = {}
    recheck_at: float | None = None
    for reading in readings:
        if reading.host not in membership.segment_of:
            continue  # not in any failover segment: not ours to judge
        verdict = assess(reading, now, settings)
        if verdict.recheck_at is not None:
            recheck_at = verdict.recheck_at if recheck_at is None else min(recheck_at, verdict.recheck_at)
        if verdict.condition is not HostCondition.HEALTHY or verdict.failed_processes:
            verdicts[reading.host] = verdict
    new_holds, kept, released = _apply_gate(verdicts, membership, holds, now, settings)
    return Detection(verdicts, kept, recheck_at, tuple(new_holds), tuple(released))


def _is_silent(v: Verdict) -> bool:
    return v.silent_since is not None and v.condition in {HostCondition.SUSPECT, HostCondition.DEAD}


def _apply_gate(
    verdicts: dict[HostName, Verdict],
    membership: Membership,
    holds: Mapping[SegmentId, Hold],
    now: float,
    settings: DetectionSettings,
) -> tuple[list[Hold], dict[SegmentId, Hold], list[SegmentId]]:
    """Hold segments that went silent wholesale; mark their silent hosts HELD. Mutates ``verdicts``."""
    window = settings.grace_s + settings.heartbeat_interval_s
    silent_by_segment: dict[SegmentId, list[Verdict]] = defaultdict(list)
    for v in verdicts.values():
        if _is_silent(v):
            silent_by_segment[membership.segment_of[v.host]].append(v)

    kept: dict[SegmentId, Hold] = {}
    new_holds: list[Hold] = []
    released: list[SegmentId] = []
    for segment_id, hold in holds.items():
        silent = silent_by_segment.get(segment_id, [])
        if not hold.hosts & {v.host for v in silent}:
            released.append(segment_id)
            continue
        # Hosts that fall silent during the hold join it; those silent since long before it
        # (dead and recovered earlier, say) do not.
        joined_after = (hold.silent_from if hold.silent_from is not None else hold.since) - window
        joiners = {v.host for v in silent if v.silent_since is not None and v.silent_since >= joined_after}
        kept[segment_id] = dataclasses.replace(hold, hosts=hold.hosts | joiners)

    for segment_id, silent in silent_by_segment.items():
        if segment_id in kept:
            continue
        burst = _largest_burst(silent, window)
        reason = _gate_reason(len(burst), membership.sizes.get(segment_id, 0), settings)
        if reason:
            silent_from = min(v.silent_since for v in burst if v.silent_since is not None)
            hold = Hold(segment_id, now, reason, frozenset(v.host for v in burst), silent_from)
            kept[segment_id] = hold
            new_holds.append(hold)

    for hold in kept.values():
        for host in hold.hosts:
            current = verdicts.get(host)
            if current is not None and _is_silent(current):
                verdicts[host] = Verdict(
                    host,
                    HostCondition.HELD,
                    f"held by the observer gate: {hold.reason}",
                    current.silent_since,
                )
    return new_holds, kept, released


def _largest_burst(silent: list[Verdict], window: float) -> list[Verdict]:
    """The most hosts whose silences began within one window of each other.

    Judged between the hosts themselves, not against the current time, so an engine that
    starts (or takes over) well after a partition began still sees it as one burst.
    """
    ordered = sorted((v for v in silent if v.silent_since is not None), key=lambda v: v.silent_since or 0.0)
    best: list[Verdict] = []
    start = 0
    for end, v in enumerate(ordered):
        while (v.silent_since or 0.0) - (ordered[start].silent_since or 0.0) > window:
            start += 1
        if end + 1 - start > len(best):
            best = ordered[start : end + 1]
    return best


def _gate_reason(silent: int, size: int, settings: DetectionSettings) -> str:
    if size <= 0 or silent < 2:
        return ""  # one silent host is that host's failure, whatever the segment's size
    if silent > settings.gate_share * size:
        return (
            f"{silent} of {size} hosts went silent within one grace window (more than "
            f"{settings.gate_share:.0%}): the observer or its network is the likely fault; "
            "automatic recovery is held until they heartbeat again"
        )
    if size <= settings.gate_small_segment_size and silent >= settings.gate_small_segment_loss:
        return (
            f"{silent} of the {size} hosts of a small segment went silent at once: "
            "the observer or its network is the likely fault; automatic recovery is held"
        )
    return ""
