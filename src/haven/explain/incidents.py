"""Incidents: symptoms grouped by their ranked root cause, as the alerts haven sends to Alertmanager.

Called by haven.explain.alerting with what the store holds (explanations, haven's active alerts); pure.
Alertmanager groups and inhibits by labels only and knows no cause; haven puts the cause in the labels:

- each recent explained symptom (a failed canary, a failed probe, an ``instance.create.error``) is an
  alert ``HavenSymptom`` with ``haven_role="symptom"`` and ``cause`` = its root cause's node (the first
  ranked cause whose own dependencies are healthy, as the explanation's sentence names it; "" when
  nothing was found), the sentence and the ranked causes as annotations;
- each root cause named by at least one recent symptom is one alert ``HavenRootCause`` with
  ``haven_role="cause"`` and the same ``cause``, its evidence and its symptoms in words: the incident;
- haven's own active alerts (gate holds, failed fences, a recovery that failed...) are ``Haven<Kind>``
  alerts; one haven explained carries its cause as a symptom does, and the control plane's service
  alerts (a service down, a crash loop, held restarts) are causes of their service;
- haven's control-plane alert (many nova-computes stopped reporting while their hosts beat) is evidence
  on nova-compute in every ranking after its raise (haven.explain.own), so it belongs to the incident of
  the first symptom explained since then whose ranking has nova-compute as its root or as its root's
  victim: it is a symptom of that root (muted under its page). Alertmanager knows an alert by its labels,
  and a label set that changes is a new alert (and the old one's end, a "resolved" notification to a
  receiver that sends them): so the alert's labels are decided once. It waits ``own_hold_s`` after its
  raise for a cause (not sent meanwhile: the first symptom, a boot timing out, comes tens of seconds
  after the computes stop reporting); with one found by then it is sent as that cause's symptom for as
  long as the incident lasts, without it as itself (paged, never muted by a guess), and stays so until
  it clears, even if a cause is found later. The caller passes what it sent (``kept``), and the labels
  stay as sent while the alert lasts, even when its incident's ranking moves to another root or its
  incident is over: no false "resolved" and no new alert; once that cause's ``HavenRootCause`` ends, the
  inhibition no longer holds it and Alertmanager pages it then. Without that memory (a restarted haven)
  the decision is made again from what the store holds.
  The detector raises a new alert (a new id) each time its condition comes back, so a gate that held
  60 s, released and held again... was never sent: each raise cleared before its own hold ended. A raise
  within ``own_recur_s`` of the last one's clear continues it, as one lasting alert: its first raise is
  its raise (the hold ends ``own_hold_s`` after it, its incident is the first symptom since then), it
  is sent under the labels its first sent raise was sent with, ``alert_id`` included (``named``): to
  Alertmanager a new ``alert_id`` is a new alert in the group, notified again at the next
  ``group_interval``, so a gate flapping every 70 s paged every minute (review of 13c168b). Once sent it
  keeps firing through its clears, as Prometheus' ``keep_firing_for``: its last raise, cleared, is sent
  firing until it has stayed clear ``own_recur_s`` (no resolved/firing churn, one page as for a lasting
  alert), then resolved. Its page says how often it came back. A single raise that clears within
  ``own_hold_s`` and does not come back is not sent, as a Prometheus rule's ``for`` drops a blip:
  sending it once cleared would not page anyone (Alertmanager notifies no group whose alerts all arrive
  resolved), and sending it firing until ``group_wait`` passed would say the computes are silent while
  they report.

With the inhibition rule of deploy/alertmanager/haven.yml (a ``haven_role="cause"`` alert inhibits the
``haven_role="symptom"`` alerts with an equal ``cause``), one notification says the cause and the symptoms
it explains stay quiet. Causes come first in the batch, and the whole batch is sent at once.

A symptom's ``startsAt`` is the send (its own time is the ``observed`` annotation): Alertmanager flushes
a new group at once when its first alert started more than ``group_wait`` ago, and its inhibitor learns
of the cause on a goroutine of its own; a symptom that started long ago raced its cause (in one request)
and was notified now and then (CI, and 1 in 12 sends on a loaded machine here). Started at the send, the
symptom waits ``group_wait`` before its group is flushed, while the cause, sent just before it, is
cached. Alertmanager keeps the earliest ``startsAt`` of an alert it holds, so the resends change nothing
until it restarts, when the symptom waits ``group_wait`` again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from haven.diagnosis import Explanation
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.diagnosis.words import clock
from haven.domain.incidents import Alert, AlertKind
from haven.explain.own import service_of
from haven.notify.alertmanager import AmAlert

SYMPTOM, CAUSE = "symptom", "cause"
ROLE = "haven_role"
_SERVICE_ALERTS = (
    AlertKind.SERVICE_DOWN,
    AlertKind.REPLICA_CRASH_LOOP,
    AlertKind.SERVICE_HOLD,
)
_MAX_LISTED = 10  # symptoms named in a cause's description


@dataclass(frozen=True, slots=True)
class IncidentSettings:
    active_s: float = 900.0  # a symptom explained this recently is still an incident
    ends_after_s: float = 180.0  # each sent alert fires until this long after its send, unless sent again
    # haven's API as Alertmanager's users reach it ("" for none): each alert's generatorURL is its
    # explanation there, ``{url}/v1/haven/explanations/{record id}`` (haven explain ID --json's document)
    url: str = ""
    own_hold_s: float = 90.0  # haven's control-plane alert waits this long for a cause (module docstring)
    # raised again this soon after the last one cleared, it is the same lasting alert (module docstring)
    own_recur_s: float = 300.0

    def __post_init__(self) -> None:
        if self.active_s <= 0 or self.ends_after_s <= 0:
            raise ValueError("active_s and ends_after_s must be positive")
        if self.own_hold_s < 0 or self.own_recur_s < 0:
            raise ValueError("own_hold_s and own_recur_s must not be negative")


def root_of(record: ExplanationRecord) -> Explanation | None:
    """The root cause the record's sentence names first (in its phase, its dependencies healthy)."""
    if record.diagnosis is None or not record.diagnosis.explanations:
        return None
    ranked = record.diagnosis.explanations
    return next((e for e in ranked if e.in_phase and not e.explained_by), ranked[0])


def incident_alerts(
    records: Iterable[ExplanationRecord],
    alerts: Iterable[Alert],
    now: float,
    settings: IncidentSettings | None = None,
    settle_s: float = 0.0,
    kept: Mapping[str, str] | None = None,
    named: Mapping[str, str] | None = None,
) -> list[AmAlert]:
    """The alerts to send now: causes first, then symptoms and haven's alerts, each in a stable order.

    ``records``: those the caller sends, each once it held ``settle_s`` (haven.explain.alerting).
    ``alerts``: haven's active alerts, and those cleared in the last ``own_recur_s`` or more (a
    control-plane alert raised again continues them; a cleared one is sent only as the last raise of a
    lasting alert sent, firing while it may come back).
    ``kept``: haven's own control-plane alerts already sent, by the ``alert_id`` they were sent under,
    with the cause they were sent under ("" for themselves): their labels stay as sent while a symptom
    of that cause is recent, and an alert that continues one of them is sent with its labels.
    ``named``: raises already sent, by id, with the ``alert_id`` they were sent under (a raise listed
    here names its lasting alert even once the raise that named it is no longer listed)."""
    kept = kept or {}
    settings = settings or IncidentSettings()
    ends = now + settings.ends_after_s
    recent = sorted(
        (r for r in records if r.state is ExplanationState.DONE and r.symptom.at >= now - settings.active_s),
        key=lambda r: (r.symptom.at, r.id),
    )
    explained = {r.id: r for r in recent}
    causes: dict[str, list[ExplanationRecord]] = {}
    symptoms: list[AmAlert] = []
    for record in recent:
        root = root_of(record)
        if root is not None:
            causes.setdefault(root.node, []).append(record)
        if not record.source.startswith("alert:"):  # haven's own alert carries it below
            symptoms.append(_symptom(record, root, now, ends, settings))
    own: list[AmAlert] = []
    riding: dict[str, list[Alert]] = {}  # cause -> haven's own alerts sent as its symptoms
    every = sorted(alerts, key=lambda a: (a.raised_at, a.id))
    names = own_names(every, settings.own_recur_s, kept, named)
    for alert in every:
        service = service_of(alert)
        name = names.get(alert.id, alert.id)
        if alert.cleared_at is not None and not _keeps_firing(alert, every, now, settings, name in kept):
            continue
        its = explained.get(f"alert:{alert.id}")
        incident = None
        held_cause = ""
        lasting = _lasting(alert, every, settings.own_recur_s) if service is not None else [alert]
        sent_as = kept.get(name) if service is not None else None
        if its is None and service is not None and sent_as is not None:
            held_cause = sent_as  # its labels as sent, whatever the incident's ranking became
            incident = _latest_of(held_cause, recent) if held_cause else None
            if alert.cleared_at is not None and held_cause and incident is None:
                continue  # cleared, and its cause's page is over: resolved, never paged unmuted (R2-D1)
            if held_cause:
                riding.setdefault(held_cause, []).append(alert)
        elif its is None and service is not None:
            since = lasting[0].raised_at  # its first raise is its raise: a flapping one is paged too
            decided = since + settings.own_hold_s
            incident = _incident_of(since, service, recent, settle_s, decided)
            if incident is None and now < decided:
                continue  # no cause yet: it waits for one
            if incident is not None:
                riding.setdefault(_root_node(incident), []).append(alert)
        own.append(_own(alert, its, now, ends, settings, incident, held_cause, lasting, name))
    found = [
        _cause(node, by, ends, settings, riding.get(node, ())) for node, by in sorted(causes.items())
    ]
    return (
        found
        + [a for a in own if a.labels.get(ROLE) == CAUSE]
        + symptoms
        + [a for a in own if a.labels.get(ROLE) != CAUSE]
    )


def _symptom(
    record: ExplanationRecord, root: Explanation | None, now: float, ends: float, settings: IncidentSettings
) -> AmAlert:
    labels = {
        "alertname": "HavenSymptom",
        ROLE: SYMPTOM,
        "cause": root.node if root is not None else "",
        "symptom": record.source,
        "subject": record.subject,
        "explanation": record.id,
        "severity": "warning",
    }
    annotations = {**_explained(record), "observed": clock(record.symptom.at)}
    return AmAlert(labels, annotations, now, ends, _link(settings, record.id))


def _explained(record: ExplanationRecord) -> dict[str, str]:
    diagnosis = record.diagnosis
    found = {"summary": diagnosis.summary if diagnosis else record.symptom.what}
    if diagnosis is not None and diagnosis.explanations:
        found["causes"] = "; ".join(
            f"{i}. {e.label}: {e.text}" for i, e in enumerate(diagnosis.explanations, 1)
        )
    found["details"] = f"haven explain {record.id}"
    return found


def own_names(
    every: Sequence[Alert],
    recur_s: float,
    kept: Mapping[str, str] | None = None,
    named: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Each control-plane raise's lasting alert's ``alert_id``, by the raise's id: the id its first raise
    sent was sent under (``named``; a raise of ``kept`` under its own), else its own (``every``: sorted
    by raise). haven.explain.alerting remembers it for the raises it sent."""
    kept, named = kept or {}, named or {}
    names: dict[str, str] = {}
    for alert in every:
        if service_of(alert) is None:
            continue
        lasting = _lasting(alert, every, recur_s)
        sent = (named.get(a.id, a.id if a.id in kept else None) for a in lasting)
        names[alert.id] = next((n for n in sent if n is not None), alert.id)
    return names


def _keeps_firing(
    alert: Alert, every: Sequence[Alert], now: float, settings: IncidentSettings, sent: bool
) -> bool:
    """A cleared control-plane raise still sent firing: its lasting alert was sent, it is the last raise
    of it, and it cleared at most ``own_recur_s`` ago (it may come back: Prometheus' keep_firing_for)."""
    if not sent or service_of(alert) is None or alert.cleared_at is None:
        return False
    subject = (alert.kind, alert.host, alert.segment_id)
    later = any(
        (a.kind, a.host, a.segment_id) == subject and (a.raised_at, a.id) > (alert.raised_at, alert.id)
        for a in every
    )
    return not later and now - alert.cleared_at <= settings.own_recur_s


def _lasting(alert: Alert, every: Sequence[Alert], recur_s: float) -> list[Alert]:
    """The raises of one lasting alert that ``alert`` ends, oldest first: the earlier alerts of its kind
    and subject, each raised again within ``recur_s`` of the one before it clearing (``every``: sorted
    by raise). The detector raises a new alert (a new id) each time its condition comes back."""
    same = [
        a for a in every
        if (a.kind, a.host, a.segment_id) == (alert.kind, alert.host, alert.segment_id)
        and (a.raised_at, a.id) < (alert.raised_at, alert.id)
    ]  # fmt: skip
    chain = [alert]
    for earlier in reversed(same):
        if earlier.cleared_at is not None and chain[0].raised_at - earlier.cleared_at > recur_s:
            break
        chain.insert(0, earlier)
    return chain


def _incident_of(
    since: float, service: str, recent: Sequence[ExplanationRecord], settle_s: float, decided: float
) -> ExplanationRecord | None:
    """The incident an alert raised at ``since`` (evidence on ``service``) belongs to: the first symptom
    explained since then whose ranking has ``service`` as its root or as its root's victim, sent by
    ``decided`` (its ``explained_at`` and the settle); None when there is none (module docstring)."""
    found = [
        r for r in recent
        if r.symptom.at >= since and _explains(r, service) and _known_at(r) + settle_s <= decided
    ]  # fmt: skip
    return min(found, key=lambda r: (_known_at(r), r.symptom.at, r.id), default=None)


def _latest_of(node: str, recent: Sequence[ExplanationRecord]) -> ExplanationRecord | None:
    """The latest recent symptom whose root is ``node`` (an incident a control-plane alert was sent
    under, its ranking perhaps refined since); None when that incident is over."""
    named = [r for r in recent if (root := root_of(r)) is not None and root.node == node]
    return named[-1] if named else None


def _explains(record: ExplanationRecord, service: str) -> bool:
    root = root_of(record)
    if root is None or record.diagnosis is None:
        return False
    ranked = record.diagnosis.explanations
    return root.node == service or any(e.node == service and root.node in e.explained_by for e in ranked)


def _known_at(record: ExplanationRecord) -> float:
    return record.explained_at if record.explained_at is not None else record.created_at


def _root_node(record: ExplanationRecord) -> str:
    root = root_of(record)
    assert root is not None  # an incident has one (_explains)
    return root.node


def _cause(
    node: str,
    named: Sequence[ExplanationRecord],
    ends: float,
    settings: IncidentSettings,
    riding: Sequence[Alert] = (),
) -> AmAlert:
    latest = named[-1]
    root = root_of(latest)
    assert root is not None  # grouped by it
    listed = [f"{clock(r.symptom.at)} {r.symptom.what}" for r in named[-_MAX_LISTED:]]
    more = f" (and {len(named) - _MAX_LISTED} earlier)" if len(named) > _MAX_LISTED else ""
    annotations = {
        "summary": f"{root.label} is the likely root cause of {len(named)} symptom(s) since "
        f"{clock(named[0].symptom.at)}",
        "evidence": root.text,
        "symptoms": "; ".join(listed) + more,
        "details": f"haven explain {latest.id}",
    }
    if riding:  # haven's own alerts muted under this one: their words here
        annotations["haven_alerts"] = "; ".join(f"{clock(a.raised_at)} {a.message}" for a in riding)
    labels = {"alertname": "HavenRootCause", ROLE: CAUSE, "cause": node, "severity": "critical"}
    starts = min(root.onset, named[0].symptom.at)
    return AmAlert(labels, annotations, starts, ends, _link(settings, latest.id))


def _own(
    alert: Alert,
    record: ExplanationRecord | None,
    now: float,
    ends: float,
    settings: IncidentSettings,
    incident: ExplanationRecord | None = None,
    held_cause: str = "",
    lasting: Sequence[Alert] = (),
    alert_id: str = "",
) -> AmAlert:
    name = "Haven" + "".join(part.capitalize() for part in alert.kind.value.split("_"))
    labels = {
        "alertname": name,
        "kind": alert.kind.value,
        "alert_id": alert_id or alert.id,
        "severity": "warning",
    }
    if alert.host:
        labels["host"] = alert.host
    if alert.segment_id:
        labels["segment"] = str(alert.segment_id)
    annotations = {"summary": alert.message}
    if len(lasting) > 1:  # a flapping condition: how often it came back, in its page
        annotations["recurring"] = f"raised {len(lasting)} times since {clock(lasting[0].raised_at)}"
    if alert.cleared_at is not None:  # kept firing while it may come back (_keeps_firing)
        back = clock(alert.cleared_at + settings.own_recur_s)
        annotations["cleared"] = f"clear since {clock(alert.cleared_at)}; resolved if still clear at {back}"
    if alert.kind in _SERVICE_ALERTS and alert.host:
        labels.update({ROLE: CAUSE, "cause": alert.host.split("@", 1)[0], "severity": "critical"})
    elif record is not None:
        root = root_of(record)
        labels.update({ROLE: SYMPTOM, "cause": root.node if root is not None else ""})
        annotations.update(_explained(record), observed=clock(alert.raised_at))
    elif incident is not None:  # the incident it belongs to: its root's symptom, its own words kept
        root = root_of(incident)
        assert root is not None  # an incident has one (_explains)
        labels.update({ROLE: SYMPTOM, "cause": root.node})
        annotations.update(
            cause=f"{root.label}: {root.text}", details=f"haven explain {incident.id}",
            observed=clock(alert.raised_at),
        )  # fmt: skip
        record = incident
    elif held_cause:  # sent under a cause no recent symptom names any more: its labels kept as sent
        labels.update({ROLE: SYMPTOM, "cause": held_cause})
        annotations["observed"] = clock(alert.raised_at)
    link = _link(settings, record.id) if record is not None else ""
    starts = now if labels.get(ROLE) == SYMPTOM else alert.raised_at  # a symptom: at the send (above)
    return AmAlert(labels, annotations, starts, ends, link)


def _link(settings: IncidentSettings, record_id: str) -> str:
    """The explanation's URL in haven's API (``GET /v1/haven/explanations/{id}``), or "" without a URL."""
    if not settings.url or not record_id:
        return ""
    return f"{settings.url.rstrip('/')}/v1/haven/explanations/{quote(record_id, safe=':')}"
