"""The detector: a pure function from liveness readings to per-host verdicts and segment holds.

Called by the engine once per pass with the readings of hosts that look
unusual (healthy hosts are not read at all, so a pass is O(anomalies)).

Rules, in short:
- A host is *dead* only when every heartbeat channel has been silent past the
  grace period and Nova has not heard from it since; *isolated* when the
  management channel is silent but another still beats; *agent down* when
  haven's agent is silent but nova-compute still reports. A host with no
  heartbeat channel at all (no haven agent) is dead only when its BMC reports
  power off: Nova's word alone cannot tell a hung host from a crashed nova-compute.
- Nova's report times are judged in Nova's own clock (``HostLiveness.nova_now``),
  never against the engine's.
- The observer gate (its rules live in haven.safety): the hosts whose silence
  began within the gate window are counted per segment and over the whole
  cloud; past the share, the segment is *held* and no host in it is declared
  dead until the hosts beat again or an operator releases it. Released hosts
  are exempt from the gate until they are healthy again.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from haven.domain.ids import HostName, SegmentId
from haven.domain.liveness import BmcPower, HostCondition, HostLiveness
from haven.domain.settings import DetectionSettings
from haven.safety import cloud_gate_reason, segment_gate_reason, unconfirmed_gate_reason

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
    # Hosts whose haven agent beats while their nova-compute's reports are overdue or down.
    nova_stalled: frozenset[HostName] = frozenset()


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
    nova_at = reading.nova_report_local(now)
    nova_due_by = (
        (nova_at if nova_at is not None else NEVER) + settings.nova_report_interval_s + settings.grace_s
    )
    # Agent down while nova-compute still reports on time; once its reports are overdue too, the host
    # is silent on every channel, like any other.
    reported_since = nova_at is not None and nova_at - reading.nova_time_slack_s > silent_since
    if reading.nova_up and reported_since and now < nova_due_by:
        return Verdict(
            reading.host,
            HostCondition.AGENT_DOWN,
            f"haven agent silent for {silent_for:.1f} s but nova-compute reported since: "
            "agent down, host alive",
            silent_since,
        )
    heard = f"silent on every channel for {silent_for:.1f} s (grace {settings.grace_s:g} s)"
    if silent_since == NEVER:  # no heartbeat channel: the last word from the host is Nova's
        heard = "no haven agent on this host; nova-compute " + (
            "reports down" if not reading.nova_up else "missed its reports"
        )
        silent_since = nova_at if nova_at is not None else now
    if reading.bmc is BmcPower.OFF:
        return Verdict(reading.host, HostCondition.DEAD, f"{heard}, BMC reports power off", silent_since)
    if reading.agent_seen is None and reading.second_seen is None:
        return Verdict(
            reading.host,
            HostCondition.SUSPECT,
            f"{heard}, BMC {reading.bmc.value}: without a heartbeat channel a hung host cannot be told "
            "from a crashed nova-compute, so it is not fenced (run haven's agent on it, or recover by hand)",
            silent_since,
        )
    # Powered on (or the BMC is silent too): dead only once nova-compute has also missed its report,
    # since a live host whose agent died keeps reporting to Nova every report interval; and one report
    # interval later still, so that every other host has missed its own report too if the reports
    # are lost on the way (the control plane), whatever the phase of each host's reports.
    confirm_by = nova_due_by + settings.nova_report_interval_s
    if nova_at is not None and now < confirm_by:
        return Verdict(
            reading.host,
            HostCondition.SUSPECT,
            f"{heard}, BMC {reading.bmc.value}; waiting for nova-compute's reports to be missed",
            silent_since,
            recheck_at=confirm_by,
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
    released: frozenset[HostName] = frozenset(),
    noticed: Mapping[HostName, float] | None = None,
) -> Detection:
    """Verdicts and holds.

    ``released``: hosts an operator released from the gate (not counted). ``noticed``: when haven
    first saw each silent host silent; a host seen late (after a spell without readings, or by an
    engine that just started) counts in the gate as of then, since haven cannot tell when it fell.
    """
    verdicts: dict[HostName, Verdict] = {}
    recheck_at: float | None = None
    suspect_after = settings.heartbeat_interval_s * 1.5
    segment_of = membership.segment_of
    for reading in readings:
        if reading.host not in segment_of:
            continue  # not in any failover segment: not ours to judge
        seen = reading.agent_seen
        if seen is not None and now - seen <= suspect_after and not reading.failed_processes:
            continue  # heartbeating, nothing failed: healthy (as assess says), nothing to keep
        verdict = assess(reading, now, settings)
        if verdict.recheck_at is not None:
            recheck_at = verdict.recheck_at if recheck_at is None else min(recheck_at, verdict.recheck_at)
        if verdict.condition is not HostCondition.HEALTHY or verdict.failed_processes:
            verdicts[reading.host] = verdict
    late, stalled = _nova_stalls(readings, now, settings)
    _distrust_novas_silence(verdicts, readings, now, settings, sum(membership.sizes.values()), late)
    unconfirmed = frozenset(r.host for r in readings if r.bmc is not BmcPower.OFF)
    quiet = _fell_quiet(verdicts, readings, now, noticed)
    new_holds, kept, ended = _apply_gate(
        verdicts, membership, holds, now, settings, released, unconfirmed, quiet
    )
    return Detection(verdicts, kept, recheck_at, tuple(new_holds), tuple(ended), stalled)


def _fell_quiet(
    verdicts: Mapping[HostName, Verdict],
    readings: Sequence[HostLiveness],
    now: float,
    noticed: Mapping[HostName, float] | None,
) -> dict[HostName, float]:
    """When each silent host fell quiet for the gate: its last word on any channel (a heartbeat, or
    nova-compute's last report, on Nova's clock), or when haven first noticed it, if later. With a
    ``noticed`` map, a silent host missing from it is noticed now (a first sight)."""
    quiet: dict[HostName, float] = {}
    by_host = {r.host: r for r in readings}
    for host, v in verdicts.items():
        if v.silent_since is None:
            continue
        reading = by_host.get(host)
        nova_at = reading.nova_report_local(now) if reading is not None else None
        seen = noticed.get(host, now) if noticed is not None else NEVER
        quiet[host] = max(v.silent_since, nova_at or NEVER, seen)
    return quiet


def _nova_stalls(
    readings: Sequence[HostLiveness], now: float, settings: DetectionSettings
) -> tuple[list[float], frozenset[HostName]]:
    """Hosts whose haven agent beats while Nova counts their nova-compute down or its reports are
    overdue: (the last reports of those overdue by one report interval, for Nova's-silence checks;
    the hosts overdue by two, for the PROCESS gate, since a report late under load is no outage yet).
    """
    beat_within = settings.heartbeat_interval_s * 1.5
    overdue = settings.nova_report_interval_s + settings.grace_s
    late: list[float] = []
    stalled: list[HostName] = []
    for r in readings:
        if r.agent_seen is None or now - r.agent_seen > beat_within:
            continue
        nova_at = r.nova_report_local(now)
        if nova_at is None:
            continue
        age = now - nova_at
        if age > overdue or not r.nova_up:
            late.append(nova_at or NEVER)
            if age > overdue + settings.nova_report_interval_s or not r.nova_up:
                stalled.append(r.host)
    return late, frozenset(stalled)


def _distrust_novas_silence(
    verdicts: dict[HostName, Verdict],
    readings: Sequence[HostLiveness],
    now: float,
    settings: DetectionSettings,
    managed: int,
    stalled: Sequence[float],
) -> None:
    """A powered host is dead on Nova's word only while Nova still hears the others. Mutates ``verdicts``.

    When nova-compute's reports stopped, at about the same time, for hosts whose haven agents still
    beat, the reports are lost on the way (RabbitMQ, nova-conductor, the database), not on the hosts:
    a powered host whose last word was such a report is not declared dead on it. One nova-compute that
    crashed at that moment, among many that report, is a coincidence, not an outage: it takes two
    such hosts, or most of those whose agents beat.
    """
    overdue = settings.nova_report_interval_s + settings.grace_s
    beating = managed - sum(1 for v in verdicts.values() if v.condition is not HostCondition.HEALTHY)
    if not stalled or (len(stalled) < 2 and 2 * len(stalled) <= beating):
        return
    by_host = {r.host: r for r in readings}
    for host, v in list(verdicts.items()):
        reading = by_host.get(host)
        if v.condition is not HostCondition.DEAD or reading is None or reading.bmc is BmcPower.OFF:
            continue
        nova_at = reading.nova_report_local(now)
        if nova_at is None:
            continue
        together = sum(1 for t in stalled if abs(t - nova_at) <= overdue)
        if together >= 2 or (together and 2 * together > beating):
            verdicts[host] = Verdict(
                host,
                HostCondition.SUSPECT,
                f"{v.reason}; but nova-compute's reports also stopped then for {together} host(s) whose "
                "haven agents still beat: the control plane is the likely fault, so Nova's silence is no "
                "evidence; not declared dead while the BMC does not report power off",
                v.silent_since,
            )


def _is_silent(v: Verdict) -> bool:
    return v.silent_since is not None and v.condition in {HostCondition.SUSPECT, HostCondition.DEAD}


def _apply_gate(
    verdicts: dict[HostName, Verdict],
    membership: Membership,
    holds: Mapping[SegmentId, Hold],
    now: float,
    settings: DetectionSettings,
    released: frozenset[HostName],
    unconfirmed: frozenset[HostName],
    quiet: Mapping[HostName, float],
) -> tuple[list[Hold], dict[SegmentId, Hold], list[SegmentId]]:
    """Hold segments where too many hosts went silent within the window; mark their silent hosts HELD.

    ``unconfirmed``: hosts whose BMC does not report power off (on, or not answering).

    Mutates ``verdicts``. A hold ends when none of its hosts is silent any more (or all were released).
    """
    since = now - settings.gate_window_s
    silent_by_segment: dict[SegmentId, list[Verdict]] = defaultdict(list)
    recent_by_segment: dict[SegmentId, list[Verdict]] = defaultdict(list)
    for v in verdicts.values():
        if _is_silent(v) and v.host not in released:
            segment_id = membership.segment_of[v.host]
            silent_by_segment[segment_id].append(v)
            if quiet.get(v.host, NEVER) >= since:
                recent_by_segment[segment_id].append(v)

    kept: dict[SegmentId, Hold] = {}
    new_holds: list[Hold] = []
    ended: list[SegmentId] = []
    for segment_id, hold in holds.items():
        silent = {v.host for v in silent_by_segment.get(segment_id, [])}
        if not (hold.hosts - released) & silent:
            ended.append(segment_id)
            continue
        joiners = {v.host for v in recent_by_segment.get(segment_id, [])}
        kept[segment_id] = dataclasses.replace(hold, hosts=(hold.hosts | joiners) - released)

    def hold_segment(segment_id: SegmentId, recent: list[Verdict], reason: str) -> None:
        silent_from = min((v.silent_since for v in recent if v.silent_since is not None), default=None)
        hold = Hold(segment_id, now, reason, frozenset(v.host for v in recent), silent_from)
        kept[segment_id] = hold
        new_holds.append(hold)

    for segment_id, recent in recent_by_segment.items():
        if segment_id not in kept:
            size = membership.sizes.get(segment_id, 0)
            powered = sum(1 for v in recent if v.host in unconfirmed)
            reason = segment_gate_reason(len(recent), size, settings) or unconfirmed_gate_reason(
                powered, size, settings
            )
            if reason:
                hold_segment(segment_id, recent, reason)
    total_recent = sum(len(r) for r in recent_by_segment.values())
    cloud_reason = cloud_gate_reason(total_recent, sum(membership.sizes.values()), settings)
    if cloud_reason:
        for segment_id, recent in recent_by_segment.items():
            if segment_id not in kept:
                hold_segment(segment_id, recent, cloud_reason)

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
    return new_holds, kept, ended
