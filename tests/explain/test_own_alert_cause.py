"""haven's control-plane alert carries the cause haven ranks for its incident (haven.explain.incidents), pure.

The lab's rabbitmq-killed (bench/alert_ratio.py at 121d754): the alert "2 of 2 nova-compute services stopped
reporting" raised 4 s into the fault, the first failed boot 26 s later. The alert waits ``own_hold_s`` for
a cause; with one it is that cause's symptom (muted under its page by deploy/alertmanager/haven.yml's
inhibition), without one it is paged as itself, and its labels, once sent, never change while it lasts.
"""

from __future__ import annotations

import dataclasses

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Symptom, rank
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.incidents import Alert, AlertKind
from haven.explain.incidents import IncidentSettings, incident_alerts
from haven.notify.alertmanager import AmAlert
from haven.topology import SERVER_BOOT, openstack_topology

T = 1_796_658_131.0  # the alert's raise
WORDS = "2 of 2 nova-compute services stopped reporting while their hosts' haven agents still beat"
ALERT = Alert("cp1", AlertKind.CONTROL_PLANE, WORDS, T)
SETTINGS = IncidentSettings(active_s=900, ends_after_s=180, own_hold_s=90)
SETTLE = 20.0
OWN = NodeEvent("nova-compute", EvidenceKind.ERROR, T, WORDS)  # haven.explain.own: the alert as evidence
MQ_DOWN = NodeEvent(
    "rabbitmq", EvidenceKind.DOWN, T - 3, "RabbitMQ unreachable since 15:42:10", "broker:reach"
)


def explained(key: str, at: float, explained_at: float, events: list[NodeEvent]) -> ExplanationRecord:
    topology = openstack_topology(CATALOGUE.values())
    graph = Graph(topology.depends_on, topology.labels, topology.phases)
    symptom = Symptom(SERVER_BOOT, at, "canary boot failed waiting for accepted", "api")
    diagnosis = rank(graph, symptom, events=events)
    return ExplanationRecord(
        key, "canary", "nova", symptom, at, ExplanationState.DONE, explained_at, diagnosis
    )


def sent(records: list[ExplanationRecord], now: float) -> list[AmAlert]:
    """What haven.explain.alerting would send at ``now``: the records settled by then."""
    settled = [r for r in records if (r.explained_at or 0.0) + SETTLE <= now]
    return incident_alerts(settled, [ALERT], now, SETTINGS, SETTLE)


def control_plane(batch: list[AmAlert]) -> AmAlert | None:
    return next((a for a in batch if a.labels["alertname"] == "HavenControlPlane"), None)


def test_the_alert_is_a_symptom_of_the_root_haven_ranks_for_its_incident() -> None:
    boot = explained("canary:1", T + 26, T + 27, [MQ_DOWN, OWN])
    assert control_plane(sent([boot], T + 10)) is None  # no cause yet: it waits
    batch = sent([boot], T + 50)
    alert = control_plane(batch)
    assert alert is not None
    assert (alert.labels["haven_role"], alert.labels["cause"]) == ("symptom", "rabbitmq")
    assert alert.annotations["summary"] == WORDS and "RabbitMQ unreachable" in alert.annotations["cause"]
    cause = batch[0]
    assert (cause.labels["alertname"], cause.labels["cause"]) == ("HavenRootCause", "rabbitmq")
    assert WORDS in cause.annotations["haven_alerts"]  # its page says what it mutes
    # the root of the first boot is what counts: a later ranking's other root changes no label
    later = explained("canary:2", T + 100, T + 101, [OWN])
    again = control_plane(sent([boot, later], T + 130))
    assert again is not None and again.labels == alert.labels


def test_without_a_cause_by_the_hold_it_is_paged_as_itself_and_stays_so() -> None:
    alone = control_plane(sent([], T + 90))
    assert alone is not None and "haven_role" not in alone.labels and "cause" not in alone.labels
    # a cause found after it was sent as itself: Alertmanager would see a new alert; it stays as it was
    late = explained("canary:1", T + 75, T + 80, [MQ_DOWN, OWN])  # settled at T + 100
    still = control_plane(sent([late], T + 130))
    assert still is not None and still.labels == alone.labels


def test_a_root_that_does_not_explain_nova_compute_is_no_cause_of_it() -> None:
    # Nova's API down: in the boot's phase, and nothing nova-compute needs (Glance would be: a cause of it)
    api = NodeEvent("nova-api", EvidenceKind.DOWN, T + 10, "its endpoint refused", "endpoint")
    boot = explained("canary:1", T + 26, T + 27, [api, OWN])
    assert control_plane(sent([boot], T + 50)) is None  # still waiting
    alert = control_plane(sent([boot], T + 95))
    assert alert is not None and "cause" not in alert.labels


def test_nova_compute_itself_ranked_the_root_is_its_cause() -> None:
    down = NodeEvent(
        "nova-compute", EvidenceKind.DOWN, T - 5, "nova-compute on compute-1 is down", "nova-services"
    )
    boot = explained("canary:1", T + 3, T + 4, [down, OWN])
    alert = control_plane(sent([boot], T + 30))
    assert alert is not None and alert.labels["cause"] == "nova-compute"


def test_a_refine_of_its_incident_after_the_send_changes_none_of_its_labels() -> None:
    # Review R2 (2026-12-07 evening): the explainer's refine moves the incident record's explained_at; the
    # alert's cause was decided again from it, and the alert was sent as itself (a false "resolved" of
    # the muted one, and a new page). The notifier passes what it sent (``kept``); the pure function keeps it.
    boot = explained("canary:1", T + 26, T + 27, [MQ_DOWN, OWN])
    first = control_plane(sent([boot], T + 130))
    assert first is not None and first.labels["cause"] == "rabbitmq"
    refined = dataclasses.replace(boot, explained_at=T + 140)  # the same root, ranked again at T + 140
    after = control_plane(incident_alerts([refined], [ALERT], T + 200, SETTINGS, SETTLE, {"cp1": "rabbitmq"}))
    assert after is not None and after.labels == first.labels
    # Sent as itself: it stays itself, whatever is found later.
    late = control_plane(incident_alerts([refined], [ALERT], T + 200, SETTINGS, SETTLE, {"cp1": ""}))
    assert late is not None and "cause" not in late.labels
    # Without the memory (a restarted haven), the decision is made again from what the store holds.
    assert control_plane(incident_alerts([refined], [ALERT], T + 200, SETTINGS, SETTLE)) is not None


async def test_the_notifier_keeps_it_muted_through_a_refine_and_never_resolves_it() -> None:
    from haven.domain.clock import VirtualClock
    from haven.explain.alerting import AlertingSettings, AlertmanagerNotifier

    boot = explained("canary:1", T + 26, T + 27, [MQ_DOWN, OWN])

    class Store:
        records = [boot]

        def list_explanations(self, limit: int) -> list[ExplanationRecord]:
            return self.records

        def list_alerts(self, active_only: bool, cleared_since: float | None = None) -> list[Alert]:
            return [ALERT]

    clock = VirtualClock(T + 130)

    class Alertmanager:
        posts: list[list[AmAlert]] = []
        resolved: list[AmAlert] = []  # sent with its end at the post: resolved

        async def post(self, batch: list[AmAlert]) -> None:
            self.posts.append(list(batch))
            self.resolved += [a for a in batch if a.ends_at <= clock.now()]

    store, am = Store(), Alertmanager()
    notifier = AlertmanagerNotifier(store, clock, AlertingSettings("http://am", 60.0, SETTINGS, SETTLE), am)  # type: ignore[arg-type]
    first = control_plane(await notifier.tick() or [])
    assert first is not None and first.labels["cause"] == "rabbitmq"
    store.records = [dataclasses.replace(boot, explained_at=T + 140)]
    for at in (T + 150, T + 200, T + 260):
        clock.advance_to(at)
        await notifier.tick()
    assert len(am.posts) >= 2 and am.resolved == []  # before: the muted alert resolved, paged as itself
    assert {
        tuple(sorted(a.labels.items()))
        for b in am.posts
        for a in b
        if a.labels["alertname"] == "HavenControlPlane"
    } == {tuple(sorted(first.labels.items()))}


def test_kept_labels_stay_when_the_incident_moves_to_another_root_or_ends() -> None:
    # Review R2/R3 of f0a42cc: refined to another root (nova-compute), the alert was sent as itself (a false
    # resolved, a new page); kept, it stays rabbitmq's symptom until it clears.
    boot = explained("canary:1", T + 26, T + 27, [MQ_DOWN, OWN])
    first = control_plane(incident_alerts([boot], [ALERT], T + 130, SETTINGS, SETTLE))
    assert first is not None and first.labels["cause"] == "rabbitmq"
    moved = explained("canary:1", T + 26, T + 140, [OWN])  # the same symptom, ranked again without rabbitmq
    for records in ([moved], []):  # moved to another root; then no recent symptom at all
        after = control_plane(
            incident_alerts(records, [ALERT], T + 200, SETTINGS, SETTLE, {"cp1": "rabbitmq"})
        )
        assert after is not None and after.labels == first.labels
