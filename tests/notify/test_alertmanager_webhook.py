"""Alertmanager's webhook into haven: an alert haven did not raise (a Prometheus rule's), delivered by
Debian's real Alertmanager to a real HTTP receiver, is explained by haven from its stored evidence, and
haven's explanation goes back as a HavenSymptom naming the cause (muted by that cause's alert). Here a
receiver of the test's own hands the body to the explainer; ``haven serve``'s route for it
(``POST /v1/haven/alertmanager``) is tested in tests/api/test_alertmanager_webhook*.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, NodeEvent
from haven.domain.clock import RealClock
from haven.explain.alerting import AlertingSettings, AlertmanagerNotifier
from haven.explain.explainer import Explainer
from haven.explain.incidents import IncidentSettings
from haven.notify.alertmanager import Alertmanager, AmAlert
from haven.notify.alertmanager_webhook import parse_webhook
from haven.store import Store
from haven.topology import SERVER_BOOT, openstack_topology
from servers.process import free_port, require

from .conftest import SECRET
from .receiver import WebhookReceiver
from .test_alertmanager_real import BINARY, RunningAlertmanager, held, until


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(SECRET, free_port()).start()
    yield started
    started.stop()


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: WebhookReceiver) -> Iterator[RunningAlertmanager]:
    require(BINARY, "prometheus-alertmanager")
    running = RunningAlertmanager(tmp_path, f"http://127.0.0.1:{receiver.port}/am").start()
    yield running
    running.stop()


async def test_a_prometheus_alert_is_explained_and_its_explanation_sent_back(
    alertmanager: RunningAlertmanager, receiver: WebhookReceiver
) -> None:
    am = Alertmanager(alertmanager.url)
    now = time.time()
    with Store.open("sqlite://") as store:
        store.keep_evidence(
            {"cp:1": NodeEvent("mariadb", EvidenceKind.ERROR, now - 40, "its sql probe failed", "cp:sql:c1")},
            now,
        )
        explainer = Explainer(store, openstack_topology(CATALOGUE.values()), RealClock())
        # What the shipped rule would fire, as Prometheus posts it.
        rule = {
            "alertname": "HavenCanaryFailing",
            "haven_role": "symptom",
            "zone": "az1",
            "severity": "warning",
        }
        summary = "The latest canary boot in zone az1 failed or was slow"
        await am.post([AmAlert(rule, {"summary": summary}, now - 20, now + 60)])
        await until(lambda: bool(receiver.received), 15)
        body = receiver.received[0].body
        (record,) = await explainer.take_alertmanager(body)
        assert record.source == "alertmanager:HavenCanaryFailing" and record.subject == "az1"
        assert record.symptom.node == SERVER_BOOT and record.symptom.what == summary
        assert abs(record.symptom.at - (now - 20)) < 1.0
        assert record.diagnosis is not None and record.diagnosis.explanations[0].node == "mariadb"
        assert await explainer.take_alertmanager(body) == [record]  # delivered again: explained once

        settings = AlertingSettings(alertmanager.url, 1.0, IncidentSettings(active_s=600, ends_after_s=3))
        assert await AlertmanagerNotifier(store, RealClock(), settings).tick() is not None
        state = await held(am)
        assert state[("HavenRootCause", "mariadb", "")]["state"] == "active"
        assert state[("HavenSymptom", "mariadb", record.id)]["state"] == "suppressed"
        assert state[("HavenCanaryFailing", "", "")]["state"] == "active"  # Prometheus' own: no cause


def test_a_payload_that_is_not_alertmanagers_is_named() -> None:
    for body, said in (
        ({"alert": []}, "no list of alerts"),
        ({"alerts": [{"status": "firing"}]}, r"alerts\[0\]: no labels"),
        ({"alerts": [{"labels": {"a": "b"}, "startsAt": "yesterday"}]}, "startsAt 'yesterday' is not a time"),
    ):
        with pytest.raises(ValueError, match=said):
            parse_webhook(body)
    (one,) = parse_webhook(
        {
            "alerts": [
                {"labels": {"a": "b"}, "startsAt": "2026-12-06T07:00:00.123456789Z", "fingerprint": "f1"}
            ]
        }
    )
    assert (
        one.starts_at == pytest.approx(1796540400.123) and one.fingerprint == "f1" and one.status == "firing"
    )
