"""haven's own doings as evidence: hosts it found dead, fenced and evacuated, its holds, its restarts.

Called by haven.explain.explainer for each symptom, with what the store holds around it; pure. What haven
did is hard evidence for the ranker, on nodes the topology does not have (one per host, ``host:NAME``)
and on the services its control plane restarted:

- a compute-host notification (haven, or a Masakari monitor, found the host dead) → the host DOWN, in
  words with its timeline: when it was found dead, fenced, and its evacuations issued;
- a fence that failed, a nova-compute process down → an ERROR / DOWN on the host;
- an observer-gate or safety-policy hold → an ERROR on ``haven`` (its recovery was held, not broken);
- many nova-computes down while their hosts beat (the control-plane alert) → an ERROR on nova-compute;
- an alert cleared before the symptom: its evidence ended then (a HEALTHY of the alert's own scope);
- the control plane's actions: a restart (haven's, or systemd's own seen by haven) → a RESTART on the
  service, a replica taken out of its load balancer → an ERROR (its probe failed), a replica started
  because it was missing → a DOWN.

Host nodes are what nova-compute runs on and what the scheduler places on (``extend`` adds them below
both), so a host haven fenced is a candidate cause of a boot that could not be placed or spawned, and of
an evacuation; ``haven`` is below an evacuation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from haven.diagnosis import EvidenceKind, Graph, NodeEvent
from haven.diagnosis.words import clock
from haven.domain.controlplane import ActionKind, ActionRecord, ActionState
from haven.domain.incidents import Alert, AlertKind, Notification, NotificationType, Step, StepState
from haven.topology import SERVER_EVACUATE

HAVEN = "haven"  # the node of haven's own holds
_FENCE = "fence"  # haven.recovery.workflows' step kinds (a sibling layer: named, not imported)
_EVACUATE = "evacuate"
_HELD = (AlertKind.GATE_HOLD, AlertKind.SAFETY_HOLD)


_SCHEDULING, _COMPUTE = "scheduling", "nova-compute"
# Nova's API asks Glance for the image before it accepts a boot (nova/compute/api.py ``_get_image``, a
# synchronous request): a boot request that times out or fails in the api phase can be Glance's.
_API, _GLANCE = "api", "glance-api"


def host_node(host: str) -> str:
    return f"host:{host}"


@dataclass(frozen=True, slots=True)
class OwnRecords:
    """What the store holds about haven's own doings in a window (the explainer reads it)."""

    notifications: Sequence[Notification] = ()
    steps: Mapping[str, Sequence[Step]] = field(default_factory=dict)  # notification id → its steps
    alerts: Sequence[Alert] = ()
    actions: Sequence[ActionRecord] = ()


def own_events(
    records: OwnRecords, start: float, end: float, skip_host: str | None = None
) -> list[NodeEvent]:
    """haven's doings between ``start`` and ``end`` as the ranker's events.

    ``skip_host``: the host whose own recovery the symptom is about (its death is the symptom's premise,
    not its cause).
    """
    events: list[NodeEvent] = []
    for note in records.notifications:
        if note.type is not NotificationType.COMPUTE_HOST or note.hostname == skip_host:
            continue
        if start <= note.created_at <= end:
            detail = _timeline(note, records.steps.get(str(note.id), ()), end)
            events.append(NodeEvent(host_node(note.hostname), EvidenceKind.DOWN, note.created_at, detail))
    for alert in records.alerts:
        if not start <= alert.raised_at <= end:
            continue
        found = _alert_event(alert, skip_host)
        if found is None:
            continue
        if alert.cleared_at is not None and alert.cleared_at <= end:
            # cleared before the symptom: the alert's evidence ended then (the ranker drops an event a
            # HEALTHY of the same scope follows); an alert still raised at the symptom stands
            scope = f"alert:{alert.id}"
            found = dataclasses.replace(found, scope=scope)
            ended = NodeEvent(found.node, EvidenceKind.HEALTHY, alert.cleared_at, "alert cleared", scope)
            events.append(ended)
        events.append(found)
    for action in records.actions:
        if start <= action.created_at <= end and action.kind is not ActionKind.READY:
            events.append(_action_event(action))
    return events


def extend(graph: Graph, events: Iterable[NodeEvent]) -> Graph:
    """``graph`` with the host nodes ``events`` name below nova-compute and nova-scheduler, and haven; and
    nova-compute a leaf of the scheduling phase (itself, not its Glance or Neutron): Nova's scheduler
    answers NoValidHost when no compute passes its filters, and ComputeFilter rejects every host whose
    nova-compute is down or disabled (a boot to a zone whose computes are all down fails in scheduling,
    not in spawn); and Glance a leaf of the api phase (Nova's API asks it for the image before it
    accepts a boot: a boot request timing out while Glance is lossy or slow failed on it). Idempotent."""
    hosts = sorted({e.node for e in events if e.node.startswith("host:")})
    depends_on = {k: tuple(v) for k, v in graph.depends_on.items()}
    for user in ("nova-compute", "nova-scheduler"):
        known = depends_on.get(user, ())
        depends_on[user] = (*known, *(h for h in hosts if h not in known))
    if HAVEN not in depends_on.get(SERVER_EVACUATE, ()):
        depends_on[SERVER_EVACUATE] = (*depends_on.get(SERVER_EVACUATE, ()), HAVEN)
    labels = {**graph.labels, HAVEN: "haven's recovery", **{h: f"host {h[5:]}" for h in hosts}}
    leaves = dict(graph.leaves)
    for phase, leaf in ((_SCHEDULING, _COMPUTE), (_API, _GLANCE)):
        if phase in graph.phases and leaf not in leaves.get(phase, ()):
            leaves[phase] = (*leaves.get(phase, ()), leaf)
    return Graph(depends_on, labels, graph.phases, leaves)


def _timeline(note: Notification, steps: Sequence[Step], end: float) -> str:
    said = [f"haven found it dead (notification {note.id})"]
    fenced = [s for s in steps if s.kind == _FENCE and s.state is StepState.DONE and s.finished_at]
    if fenced and (fenced[0].finished_at or 0.0) <= end:
        said.append(f"fenced at {clock(fenced[0].finished_at or 0.0)}")
    evacuations = [
        s for s in steps if s.kind == _EVACUATE and s.started_at is not None and s.started_at <= end
    ]
    if evacuations:
        first = min(s.started_at or 0.0 for s in evacuations)
        failed = sum(1 for s in evacuations if s.state is StepState.FAILED)
        tail = f", {failed} failed" if failed else ""
        said.append(f"{len(evacuations)} evacuations from {clock(first)}{tail}")
    return "; ".join(said)


def service_of(alert: Alert) -> str | None:
    """The service a host-less alert of haven's is evidence on (haven.explain.incidents finds the incident
    it belongs to by it): many nova-computes not reporting while their hosts beat is nova-compute's."""
    return _COMPUTE if alert.kind is AlertKind.CONTROL_PLANE and alert.host is None else None


def _alert_event(alert: Alert, skip_host: str | None) -> NodeEvent | None:
    if alert.kind in _HELD:
        return NodeEvent(HAVEN, EvidenceKind.ERROR, alert.raised_at, f"held: {alert.message}")
    if alert.host is None or alert.host == skip_host:
        if alert.kind is AlertKind.CONTROL_PLANE:
            return NodeEvent(_COMPUTE, EvidenceKind.ERROR, alert.raised_at, alert.message)
        return None
    if alert.kind is AlertKind.FENCE_FAILED:
        return NodeEvent(host_node(alert.host), EvidenceKind.ERROR, alert.raised_at, alert.message)
    if alert.kind is AlertKind.PROCESS_DOWN:
        return NodeEvent(host_node(alert.host), EvidenceKind.DOWN, alert.raised_at, alert.message)
    return None


def _action_event(action: ActionRecord) -> NodeEvent:
    where = f"on {action.host}"
    if action.kind is ActionKind.SEEN_RESTART:
        return NodeEvent(action.service, EvidenceKind.RESTART, action.created_at, f"by systemd {where}")
    if action.kind is ActionKind.RESTART:
        failed = " (the restart failed)" if action.state is ActionState.FAILED else ""
        detail = f"by haven {where}: {action.reason}{failed}"
        return NodeEvent(action.service, EvidenceKind.RESTART, action.created_at, detail)
    if action.kind is ActionKind.START:
        return NodeEvent(action.service, EvidenceKind.DOWN, action.created_at, f"a replica missing {where}")
    return NodeEvent(action.service, EvidenceKind.ERROR, action.created_at, f"{where}: {action.reason}")
