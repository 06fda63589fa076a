"""haven's safety policy: the one place that says whether a host may be fenced, its VMs moved, or a
compute service disabled now, and when too much has failed at once for any automatic action.

Who asks: the detector (haven.detection) applies the gate rules below to decide which segments
are held; every recovery step that fences a host, evacuates its VMs or disables a compute service
asks ``authorize`` just before its effect (through haven.recovery.context.StepContext), whatever
opened the notification: haven's own detector, the API (a Masakari monitor, an operator), an
agent's report, or a step resumed by a restarted engine. The answer is ALLOW, HOLD (wait: ask
again later; the reason is recorded on the step and raised as an alert) or REFUSE (the recovery
stops; the reason is recorded).

The rules, in one sitting:
1. A host that still speaks on any channel (haven's agent on the management network, its second
   network, or nova-compute's reports) is never fenced and never emptied, whoever reported it.
   A report from outside is evidence for haven's own detector, never a substitute for it: until
   haven's channels agree that the host is dead, fencing waits (``external_report_wait_s`` while
   some channel still hears the host, since a monitor may report a moment earlier; then refused).
2. The observer gate: when more than ``gate_share`` of a segment (or ``gate_small_segment_loss``
   hosts of a small one) went silent within ``gate_window_s``, the likely fault is the observer or
   its network: the segment is held. The count is over a sliding window, not a burst, so a
   partition that rolls in waves (within the window) is one event. A host falls silent, for the
   gate, at its last word on any channel (a heartbeat or nova-compute's last report), or when haven
   first saw it silent if later (after a spell without readings). The same holds cloud-wide above
   ``cloud_gate_share`` of every managed host. Hosts silent while their BMC does not report power
   off are a network's signature more than a host's: more than ``gate_unconfirmed_share`` of a
   segment of them (two at least) holds it too.
3. A held segment stays held until its silent hosts are back, or until an operator releases it
   (``haven release SEGMENT``, audited); a release covers the silence it was given for: a released
   host heard again on any channel is under the gate again.
4. A fence budget: at most ``fence_budget`` hosts of one segment fenced (power-off requested) per
   window (by default the gate's own share), so no chain of small events empties a segment.
   No fence on a stale verdict: readings older than a grace period plus a heartbeat hold it.
5. The PROCESS path's gate: when more than ``process_gate_share`` of the cloud's nova-computes stop
   reporting while their hosts' agents beat, the control plane (RabbitMQ, nova-conductor, the
   database) is the likely fault: no compute service is disabled, one alert says so.
6. Evacuation from a host needs the host silent on every channel (rule 1) and, checked by the step
   itself just before the call, its BMC reporting power off. A gate hold does not stop the evacuation
   of a host already confirmed off: the harm a hold prevents (fencing a live host) cannot happen.
   The PROCESS gate's hold does (planning and evacuating wait): while the control plane is down,
   Nova counts every service down, so a plan would find no target and an evacuation would fail.
7. The control plane's replicas (haven.controlplane): when more than ``gate_share`` of a service's
   replicas (two at least) fail their probes at once while their units run, the observer, its network
   or a shared dependency is the likely fault: none of them is restarted, one alert says why. Whatever
   the cause, at most ``max_restarts_at_once`` replicas of a service are out for a restart at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from haven.domain.controlplane import ControlPlaneSettings
from haven.domain.ids import HostName, SegmentId
from haven.domain.liveness import HostCondition
from haven.domain.settings import DetectionSettings


class Action(StrEnum):
    FENCE = "fence"
    EVACUATE = "evacuate"
    DISABLE_SERVICE = "disable_service"


class Answer(StrEnum):
    ALLOW = "allow"
    HOLD = "hold"  # not now: ask again later
    REFUSE = "refuse"  # never, for this notification: the recovery stops


class Source(StrEnum):
    """Who opened the notification a step belongs to."""

    DETECTOR = "haven"  # haven's own detector
    EXTERNAL = "external"  # the API: a Masakari monitor, an operator, haven's agent's own report


@dataclass(frozen=True, slots=True)
class Decision:
    answer: Answer
    reason: str
    alert: bool = True  # False for a short wait that is part of the procedure (no alert raised)
    # A hold that ends with the next detection pass (the engine sets when that is, retry_after_s).
    until_next_pass: bool = False
    retry_after_s: float | None = None

    @property
    def allowed(self) -> bool:
        return self.answer is Answer.ALLOW


@dataclass(frozen=True, slots=True)
class SafetyView:
    """What the policy reads about one host and the gates around it (built by the engine)."""

    host: HostName
    condition: HostCondition  # haven's own verdict from every channel
    reason: str = ""  # the detector's words for that verdict
    segment_id: SegmentId | None = None
    segment_size: int = 0
    segment_hold: str | None = None  # the reason of the gate hold in force on the segment, if any
    released: bool = False  # an operator released the gate for this host
    fenced_in_window: int = 0  # other hosts of the segment haven fenced within the gate window
    control_plane_hold: str | None = None  # the PROCESS gate's reason, when it holds
    source: Source = Source.DETECTOR
    waited_s: float = 0.0  # how long this request has been waiting for an answer other than HOLD
    readings_age_s: float = 0.0  # how old the liveness readings behind ``condition`` are
    # haven fenced and emptied this host already and has not returned it to service since.
    fenced_already: bool = False
    powered: bool = False  # its BMC did not report power off at the last pass (on, or no answer)
    # A fence retried after its BMC did not answer: how long after the BMC answered again the
    # readings were taken (None: no such retry; negative: taken before it answered).
    readings_after_bmc_s: float | None = None
    # The readings were taken in the engine's current tick (no time for the host to be heard since).
    readings_this_tick: bool = True


# Conditions in which some channel still hears the host.
SPEAKING = frozenset({HostCondition.HEALTHY, HostCondition.ISOLATED, HostCondition.AGENT_DOWN})
_CHANNEL = {
    HostCondition.HEALTHY: "haven's agent still heartbeats on the management network",
    HostCondition.ISOLATED: "its second network still beats (isolated, not dead)",
    HostCondition.AGENT_DOWN: "nova-compute still reports to Nova (haven's agent is down, not the host)",
}


def authorize(action: Action, view: SafetyView, settings: DetectionSettings) -> Decision:
    """Whether ``action`` may happen to ``view.host`` now, and why (or why not)."""
    if action is Action.DISABLE_SERVICE:
        if view.control_plane_hold:
            return Decision(Answer.HOLD, view.control_plane_hold)
        return Decision(Answer.ALLOW, "no control-plane gate holds")
    who = "an external report" if view.source is Source.EXTERNAL else "haven's detector"
    if view.condition in SPEAKING:
        verb = "fenced" if action is Action.FENCE else "emptied"
        if view.source is Source.EXTERNAL and view.waited_s < settings.external_report_wait_s:
            # A monitor may report a moment before haven's own channels fall silent: wait a while.
            return Decision(
                Answer.HOLD,
                f"{view.host} is not {verb} yet: {_CHANNEL[view.condition]}; reported by {who}, waiting "
                f"up to {settings.external_report_wait_s:g} s for haven's own channels to agree",
            )
        return Decision(
            Answer.REFUSE,
            f"{view.host} is not {verb}: {_CHANNEL[view.condition]}; reported by {who}",
        )
    if action is Action.EVACUATE:
        if view.control_plane_hold:  # Nova can neither place nor rebuild anything now: wait for it
            return Decision(Answer.HOLD, f"evacuations wait for the control plane: {view.control_plane_hold}")
        return Decision(Answer.ALLOW, f"{view.host} is silent on every channel")
    if view.fenced_already:
        return Decision(
            Answer.REFUSE,
            f"{view.host} was fenced and emptied already and has not returned to service since; "
            "powered on again by someone, it is not fenced again",
        )
    fresh = settings.grace_s + settings.heartbeat_interval_s
    if view.readings_age_s > fresh:
        return Decision(
            Answer.HOLD,
            f"haven's liveness readings are {view.readings_age_s:.0f} s old (the cloud did not answer, or "
            f"this engine has not looked yet): {view.host} is not fenced on a stale verdict",
        )
    wanted = 2 * settings.heartbeat_interval_s
    if view.readings_after_bmc_s is not None and view.readings_after_bmc_s < wanted:
        # A fault that cut the BMC off may have cut the host off with it: when the BMC answers
        # again the host may be heard again too, so the retry waits for readings that would show it.
        return Decision(
            Answer.HOLD,
            f"{view.host}'s BMC answers again after a failed power-off: the fence is retried only on "
            f"readings taken {wanted:g} s after that (the fault that cut the BMC off may have cut the "
            "host off too, and healed with it)",
            alert=False,
        )
    if view.condition is HostCondition.SUSPECT:
        return Decision(
            Answer.HOLD,
            f"{view.host} reported by {who}, but haven's own channels do not confirm it dead yet "
            f"({view.reason or 'suspect'}): waiting",
        )
    if not view.released:
        if view.condition is HostCondition.HELD or view.segment_hold:
            return Decision(
                Answer.HOLD, f"segment held by the observer gate: {view.segment_hold or view.reason}"
            )
        budget = fence_budget(view.segment_size, settings)
        if view.fenced_in_window >= budget:
            return Decision(
                Answer.HOLD,
                f"fence budget spent: {view.fenced_in_window} host(s) of this segment fenced within "
                f"{settings.gate_window_s:g} s (budget {budget}); release the segment to go on",
            )
    if view.powered and view.waited_s < settings.grace_s:
        # Dead on silence alone (no BMC power off): a partition rolling over its neighbours would
        # show itself to the gate within a grace period; give it that before anything is powered off.
        return Decision(
            Answer.HOLD,
            f"{view.host} is confirmed dead while its BMC does not report power off: waiting "
            f"{settings.grace_s:g} s so that a partition spreading to its neighbours is seen first",
            alert=False,
        )
    if not view.readings_this_tick:
        # A host heard again between the last pass and the power-off would be powered off live: the
        # request goes out only right after a pass that still finds the host silent on every channel.
        return Decision(
            Answer.HOLD,
            f"{view.host} is fenced on the next detection pass's readings, not on older ones",
            alert=False,
            until_next_pass=True,
        )
    return Decision(Answer.ALLOW, f"{view.host} is confirmed dead by haven's channels ({view.reason})")


# ---- the gates ---------------------------------------------------------------------------


def fence_budget(segment_size: int, settings: DetectionSettings) -> int:
    """Hosts of one segment that may be fenced within one gate window."""
    if settings.fence_budget > 0:
        return settings.fence_budget
    return max(1, math.floor(segment_size * settings.gate_share))


def segment_gate_reason(silent: int, size: int, settings: DetectionSettings) -> str:
    """Why a segment with ``silent`` of ``size`` hosts silent within the window is held ('' if not)."""
    if size <= 0 or silent < 2:
        return ""  # one silent host is that host's failure, whatever the segment's size
    window = f"{settings.gate_window_s:g} s"
    if silent > settings.gate_share * size:
        return (
            f"{silent} of {size} hosts went silent within {window} (more than {settings.gate_share:.0%}): "
            "the observer or its network is the likely fault; automatic recovery is held until they "
            "heartbeat again or an operator releases the segment"
        )
    if size <= settings.gate_small_segment_size and silent >= settings.gate_small_segment_loss:
        return (
            f"{silent} of the {size} hosts of a small segment went silent within {window}: "
            "the observer or its network is the likely fault; automatic recovery is held"
        )
    return ""


def unconfirmed_gate_reason(silent_powered: int, size: int, settings: DetectionSettings) -> str:
    """Why a segment is held because several of its hosts fell silent while powered ('' if not).

    A host silent on every network while its BMC does not report power off has either hung or lost
    its networks; several at once within the window is the signature of a network fault (a switch
    failing port group by port group), not of as many hosts hanging together.
    """
    if size <= 0 or silent_powered < 2 or silent_powered <= settings.gate_unconfirmed_share * size:
        return ""
    return (
        f"{silent_powered} of {size} hosts went silent within {settings.gate_window_s:g} s while their BMCs "
        f"do not report power off (more than {settings.gate_unconfirmed_share:.0%}): a network fault is "
        "the likely cause, not that many hosts hanging at once; automatic recovery is held until they "
        "heartbeat again or an operator releases the segment"
    )


def cloud_gate_reason(silent: int, total: int, settings: DetectionSettings) -> str:
    """Why every segment with silent hosts is held because of the whole cloud ('' if not)."""
    if total <= 0 or silent < 2 or silent <= settings.cloud_gate_share * total:
        return ""
    return (
        f"{silent} of the cloud's {total} hosts went silent within {settings.gate_window_s:g} s "
        f"(more than {settings.cloud_gate_share:.0%}): the observer or the network is the likely fault; "
        "automatic recovery is held everywhere until they heartbeat again or an operator releases"
    )


def process_gate_reason(down: int, total: int, settings: DetectionSettings) -> str:
    """Why no compute service is disabled although ``down`` nova-computes stopped reporting ('' if not).

    ``down`` counts services Nova counts down and those whose reports are overdue while their hosts'
    agents beat (reports stop together in an outage, but Nova counts them down one by one).
    """
    if total <= 0 or down < 2 or down <= settings.process_gate_share * total:
        return ""
    return (
        f"{down} of {total} nova-compute services stopped reporting while their hosts' haven agents "
        "still beat: the control plane (RabbitMQ, nova-conductor or the database) is the likely "
        "fault, not the hosts; no compute service is disabled"
    )


def replica_gate_reason(service: str, failing: int, total: int, settings: ControlPlaneSettings) -> str:
    """Why no replica of ``service`` is restarted though ``failing`` of ``total`` fail probes ('' if not).

    ``failing`` counts replicas whose units run but whose probes fail: a probe that fails for many
    replicas at once says more about the prober or what they all depend on than about each replica.
    """
    if total <= 0 or failing < 2 or failing <= settings.gate_share * total:
        return ""
    return (
        f"{failing} of the {total} replicas of {service} fail their probes at once while their units run "
        f"(more than {settings.gate_share:.0%}): the prober, its network or a shared dependency is the "
        "likely fault; none is restarted until fewer fail"
    )
