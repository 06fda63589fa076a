"""Incidents (haven.explain.incidents), pure: symptoms grouped by the root cause their sentence names, haven's
own alerts as causes or explained symptoms, the window; and ``[diagnosis]``'s Alertmanager keys."""

from __future__ import annotations

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Symptom, rank
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.diagnosis.words import clock
from haven.domain.errors import ConfigError
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.explain.config import parse_diagnosis
from haven.explain.incidents import IncidentSettings, incident_alerts, root_of
from haven.topology import SERVER_BOOT, openstack_topology

NOW = 1_800_000_000.0


def record(key: str, symptom: Symptom, events: list[NodeEvent], source: str = "canary") -> ExplanationRecord:
    topology = openstack_topology(CATALOGUE.values())
    graph = Graph(topology.depends_on, topology.labels, topology.phases)
    diagnosis = rank(graph, symptom, events=events)
    return ExplanationRecord(key, source, "az1", symptom, symptom.at, ExplanationState.DONE, NOW, diagnosis)


def test_the_root_is_the_cause_whose_dependencies_are_healthy_not_its_victim() -> None:
    events = [
        NodeEvent("nova-api", EvidenceKind.DOWN, NOW - 50, "its endpoint failed", "endpoint"),
        NodeEvent("mariadb", EvidenceKind.ERROR, NOW - 60, "its sql probe failed", "cp:sql:ctl-1"),
    ]
    found = record("canary:1", Symptom(SERVER_BOOT, NOW - 40, "boot failed", "api"), events)
    root = root_of(found)
    assert root is not None and root.node == "mariadb"  # nova-api scores more, but is its victim


def test_symptoms_grouped_by_cause_causes_first_and_the_window_kept() -> None:
    db = [NodeEvent("mariadb", EvidenceKind.ERROR, NOW - 100, "its sql probe failed", "cp:sql:ctl-1")]
    records = [
        record("canary:1", Symptom(SERVER_BOOT, NOW - 90, "boot failed", "api"), db),
        record(
            "probe:server-list:1",
            Symptom("nova-api", NOW - 80, "server list failed", "api"),
            db,
            "probe:server-list",
        ),
        record("canary:old", Symptom(SERVER_BOOT, NOW - 2000, "boot failed", "api"), db),  # out of window
        record("alert:a2", Symptom("server-evacuate", NOW - 70, "recovery failed", None), db, "alert:x"),
    ]
    alerts = [
        Alert(
            "a1",
            AlertKind.SERVICE_DOWN,
            "no replica of rabbitmq is healthy",
            NOW - 60,
            host=HostName("rabbitmq"),
        ),
        Alert("a2", AlertKind.RECOVERY_FAILED, "recovery of c1 failed", NOW - 70, host=HostName("c1")),
        Alert("a3", AlertKind.GATE_HOLD, "held", NOW - 50, cleared_at=NOW - 10),  # cleared: not sent
    ]
    sent = incident_alerts(records, alerts, NOW, IncidentSettings(active_s=900, ends_after_s=180))
    got = [(a.labels["alertname"], a.labels.get("haven_role"), a.labels.get("cause")) for a in sent]
    assert got == [
        ("HavenRootCause", "cause", "mariadb"),
        ("HavenServiceDown", "cause", "rabbitmq"),
        ("HavenSymptom", "symptom", "mariadb"),
        ("HavenSymptom", "symptom", "mariadb"),
        ("HavenRecoveryFailed", "symptom", "mariadb"),  # haven's own alert, explained: a symptom
    ]
    cause = sent[0]
    assert "is the likely root cause of 3 symptom(s)" in cause.annotations["summary"]
    assert cause.starts_at == NOW - 100 and all(a.ends_at == NOW + 180 for a in sent)
    assert "because the database (MariaDB) reported an error" in sent[2].annotations["summary"]
    assert sent[2].labels["explanation"] == "canary:1"
    # A symptom starts at the send (so Alertmanager waits group_wait, its cause cached), its time said.
    assert sent[2].starts_at == NOW and sent[2].annotations["observed"] == clock(NOW - 90)
    assert sent[4].starts_at == NOW and sent[4].annotations["observed"] == clock(NOW - 70)
    assert sent[1].starts_at == NOW - 60  # a cause keeps its own time


def test_a_symptom_with_no_evidence_has_an_empty_cause() -> None:
    (alone,) = incident_alerts(
        [record("canary:2", Symptom(SERVER_BOOT, NOW - 5, "boot failed"), [])], [], NOW
    )
    assert alone.labels["cause"] == "" and "no evidence of a cause" in alone.annotations["summary"]


def test_the_alertmanager_keys_of_diagnosis() -> None:
    config = parse_diagnosis(
        {"alertmanager_url": "http://127.0.0.1:9093/", "alertmanager_resend_s": 30.0, "incident_s": 600.0},
        "t",
    )
    alerting = config.settings.alerting
    assert alerting.url == "http://127.0.0.1:9093" and alerting.resend_s == 30.0
    assert alerting.incidents.active_s == 600.0 and alerting.incidents.ends_after_s == 90.0
    assert parse_diagnosis({}, "t").settings.alerting.url == ""
    with pytest.raises(ConfigError, match="alertmanager_url"):
        parse_diagnosis({"alertmanager_url": "localhost:9093"}, "t")
    with pytest.raises(ConfigError, match="alertmanager_resend_s"):
        parse_diagnosis({"alertmanager_resend_s": 0}, "t")
