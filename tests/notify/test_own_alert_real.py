"""haven's control-plane alert with the cause of its incident, on Debian's real Alertmanager (0.25) with
deploy/alertmanager/haven.yml's route and inhibition (tests/notify/test_alertmanager_real.py's fixtures).

Judged from Alertmanager's state and the notifications its webhook received: the alert "2 of 2 nova-compute
services stopped reporting", raised before a boot haven blamed on RabbitMQ, is muted by RabbitMQ's
``HavenRootCause`` and never notified (bench/alert_ratio.py at 121d754 paged it on its own, once per raise).
"""

from __future__ import annotations

import asyncio
import time

from haven.diagnosis import EvidenceKind, NodeEvent, Symptom
from haven.domain.clock import RealClock
from haven.domain.incidents import Alert, AlertKind
from haven.explain.alerting import AlertingSettings, AlertmanagerNotifier
from haven.explain.incidents import IncidentSettings
from haven.notify.alertmanager import Alertmanager
from haven.store import Store
from haven.topology import SERVER_BOOT

from .receiver import WebhookReceiver
from .test_alertmanager_real import (  # noqa: F401 (the fixtures)
    RunningAlertmanager,
    alertmanager,
    explained,
    held,
    notified,
    receiver,
    until,
)

WORDS = "2 of 2 nova-compute services stopped reporting while their hosts' haven agents still beat"


async def test_the_control_plane_alert_is_muted_under_the_root_cause_of_its_incident(
    alertmanager: RunningAlertmanager,  # noqa: F811 (the fixture)
    receiver: WebhookReceiver,  # noqa: F811
) -> None:
    now = time.time()
    with Store.open("sqlite://") as store:
        store.raise_alert(Alert("cp1", AlertKind.CONTROL_PLANE, WORDS, now - 30))
        events = [
            NodeEvent("rabbitmq", EvidenceKind.DOWN, now - 33, "RabbitMQ unreachable", "broker:reach"),
            NodeEvent(
                "nova-compute", EvidenceKind.ERROR, now - 30, WORDS
            ),  # the alert, as the explainer has it
        ]
        boot = Symptom(SERVER_BOOT, now - 5, "canary boot failed waiting for accepted", "api")
        explained(store, "canary:nova-1", boot, events, "canary")
        settings = AlertingSettings(alertmanager.url, 2.0, IncidentSettings(active_s=600, ends_after_s=6))
        batch = await AlertmanagerNotifier(store, RealClock(), settings).tick()
        assert batch is not None
        state = await held(Alertmanager(alertmanager.url))
        assert state[("HavenRootCause", "rabbitmq", "")]["state"] == "active"
        muted = state[("HavenControlPlane", "rabbitmq", "")]
        assert muted["state"] == "suppressed" and muted["inhibitedBy"]
        await until(lambda: len(notified(receiver)) >= 1, 15)
        await asyncio.sleep(2.5)  # more group intervals: nothing else comes
        assert [(a["alertname"], a.get("cause")) for a in notified(receiver)] == [
            ("HavenRootCause", "rabbitmq")
        ]


def _flapped(store: Store, alertmanager: RunningAlertmanager) -> AlertmanagerNotifier:  # noqa: F811
    """The PROCESS gate held 60 s, released, and held again 10 s later (cp1, then cp2 raised now)."""
    now = time.time()
    store.raise_alert(Alert("cp1", AlertKind.CONTROL_PLANE, WORDS, now - 100))
    store.clear_alerts(now=now - 40, kind=AlertKind.CONTROL_PLANE)
    store.raise_alert(Alert("cp2", AlertKind.CONTROL_PLANE, WORDS, now - 30))
    settings = AlertingSettings(alertmanager.url, 2.0, IncidentSettings(active_s=600, ends_after_s=6))
    return AlertmanagerNotifier(store, RealClock(), settings)


async def test_a_flapping_control_plane_alert_is_notified(
    alertmanager: RunningAlertmanager,  # noqa: F811 (the fixture)
    receiver: WebhookReceiver,  # noqa: F811
) -> None:
    # Review R1-R3: the PROCESS gate held 60 s, released, held again 10 s later; each raise is a new alert
    # and each cleared before its own 90 s hold, so none was ever sent. The second continues the first.
    with Store.open("sqlite://") as store:
        notifier = _flapped(store, alertmanager)
        assert await notifier.tick() is not None
        await until(lambda: len(notified(receiver)) >= 1, 15)
        assert [(a["alertname"], a.get("alert_id")) for a in notified(receiver)] == [
            ("HavenControlPlane", "cp2")
        ]


async def test_a_flapping_control_plane_alert_is_one_page(
    alertmanager: RunningAlertmanager,  # noqa: F811 (the fixture)
    receiver: WebhookReceiver,  # noqa: F811
) -> None:
    # Review of 13c168b: each raise went under its own alert_id, a new alert in the group
    # {alertname="HavenControlPlane"} to Alertmanager, notified again at the next group_interval (a gate
    # flapping every ~70 s paged every minute with the shipped 1m). A lasting alert pages once.
    with Store.open("sqlite://") as store:
        notifier = _flapped(store, alertmanager)
        assert await notifier.tick() is not None
        await until(lambda: len(notified(receiver)) >= 1, 15)
        # the gate releases for a few seconds and holds again: the same lasting condition (own_recur_s 300)
        store.clear_alerts(now=time.time(), kind=AlertKind.CONTROL_PLANE)
        await notifier.tick()
        await asyncio.sleep(1.5)  # more than a group_interval (1 s here)
        between = await Alertmanager(alertmanager.url).alerts()  # while clear: still firing (no churn)
        store.raise_alert(Alert("cp3", AlertKind.CONTROL_PLANE, WORDS, time.time()))
        await notifier.tick()
        await asyncio.sleep(4)  # four group intervals
        pages = [r for r in receiver.received if any(a["status"] == "firing" for a in r.body["alerts"])]
        ids = [[a["labels"]["alert_id"] for a in r.body["alerts"]] for r in pages]
        assert len(pages) == 1, f"one lasting alert paged {len(pages)} times: {ids}"
        assert [(a["labels"]["alert_id"], a["status"]["state"]) for a in between] == [("cp2", "active")]
        state = await Alertmanager(alertmanager.url).alerts()
        assert [(a["labels"]["alert_id"], a["status"]["state"]) for a in state] == [("cp2", "active")]


async def test_a_cleared_muted_alert_is_not_paged_when_its_cause_ends(
    alertmanager: RunningAlertmanager,  # noqa: F811 (the fixture)
    receiver: WebhookReceiver,  # noqa: F811 (the fixture)
) -> None:
    """Review R2-D1 on 7713704: a cleared alert muted under RabbitMQ was kept firing after RabbitMQ's
    HavenRootCause resolved, and nothing inhibited it: a page for a gate hold already over."""
    now = time.time()
    with Store.open("sqlite://") as store:
        store.raise_alert(Alert("cp1", AlertKind.CONTROL_PLANE, WORDS, now - 30))
        events = [
            NodeEvent("rabbitmq", EvidenceKind.DOWN, now - 33, "RabbitMQ unreachable", "broker:reach"),
            NodeEvent("nova-compute", EvidenceKind.ERROR, now - 30, WORDS),
        ]
        boot = Symptom(SERVER_BOOT, now - 5, "canary boot failed waiting for accepted", "api")
        explained(store, "canary:nova-1", boot, events, "canary")
        settings = AlertingSettings(alertmanager.url, 2.0, IncidentSettings(active_s=8, ends_after_s=6))
        notifier = AlertmanagerNotifier(store, RealClock(), settings)
        assert await notifier.tick() is not None
        await until(lambda: len(notified(receiver)) >= 1, 15)  # the root cause, cp1 muted
        store.clear_alerts(now=time.time(), kind=AlertKind.CONTROL_PLANE)  # the gate released: over
        for _ in range(8):  # RabbitMQ's incident leaves its window (8 s after the boot's symptom)
            await notifier.tick()
            await asyncio.sleep(1)
        pages = [(a["alertname"], a.get("alert_id")) for a in notified(receiver)]
        assert ("HavenControlPlane", "cp1") not in pages, f"a cleared alert paged: {pages}"
