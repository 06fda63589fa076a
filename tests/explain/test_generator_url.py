"""Each alert haven sends to Alertmanager carries a ``generatorURL``: its explanation in haven's API.

Debian's real Alertmanager (0.25, started as tests/notify does, with deploy/alertmanager/haven.yml's route
and inhibition) receives haven's batch built from ``[diagnosis]`` as haven.toml gives it (``haven_url``);
judged from Alertmanager's own state (``/api/v2/alerts``) and what it notified, then each URL is followed
into haven's real API app over the same store, which answers that very explanation.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from api.conftest import TOKEN, FakeIntake
from haven.api.app import create_app
from haven.diagnosis import EvidenceKind, NodeEvent, Symptom
from haven.domain.clock import RealClock, VirtualClock
from haven.domain.errors import ConfigError
from haven.domain.incidents import Alert, AlertKind
from haven.explain.alerting import AlertmanagerNotifier
from haven.explain.config import parse_diagnosis
from haven.notify.alertmanager import Alertmanager
from haven.store import Store
from haven.topology import SERVER_EVACUATE
from notify.receiver import WebhookReceiver
from notify.test_alertmanager_real import (  # the fixtures, as tests/notify starts them
    RunningAlertmanager,
    alertmanager,
    explained,
    incidents,
    notified,
    receiver,
    until,
)

__all__ = ["alertmanager", "receiver"]
HAVEN = "http://haven.example.net:15868"
FOREIGN = "alertmanager:0a1b2c3d4e5f6071:2026-12-06T10:00:00+00:00"  # a webhook's key: '+' travels quoted


async def test_every_alert_links_to_its_explanation_in_haven_s_api(
    alertmanager: RunningAlertmanager, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    config = parse_diagnosis(
        {
            "alertmanager_url": alertmanager.url,
            "alertmanager_resend_s": 2.0,
            "alertmanager_settle_s": 0.0,
            "haven_url": HAVEN + "/",
        },
        "haven.toml",
    )
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        now = time.time()
        incidents(store, now)  # 3 symptoms of MariaDB, 1 of RabbitMQ, 1 of nothing; a service_down alert
        db = [NodeEvent("mariadb", EvidenceKind.ERROR, now - 30, "its sql probe failed", "cp:sql:ctl-1")]
        explained(store, FOREIGN, Symptom("nova-api", now - 15, "NovaApiErrors fired", None), db,
                  "alertmanager:NovaApiErrors")  # fmt: skip
        failed = Alert("r1", AlertKind.RECOVERY_FAILED, "recovery of cmp-1 failed", now - 14)
        store.raise_alert(failed)
        explained(store, "alert:r1", Symptom(SERVER_EVACUATE, now - 14, "recovery failed", None), db,
                  "alert:recovery_failed")  # fmt: skip
        notifier = AlertmanagerNotifier(store, RealClock(), config.settings.alerting)
        assert await notifier.tick() is not None

        held = await Alertmanager(alertmanager.url).alerts()
        links = {(a["labels"]["alertname"], a["labels"].get("cause", ""), a["labels"].get("explanation", "")):
                 a.get("generatorURL", "") for a in held}  # fmt: skip
        api = f"{HAVEN}/v1/haven/explanations/"
        assert links[("HavenSymptom", "mariadb", "canary:az1-1")] == api + "canary:az1-1"
        assert links[("HavenSymptom", "", "canary:az3-1")] == api + "canary:az3-1"  # no cause: still linked
        assert links[("HavenSymptom", "mariadb", FOREIGN)] == api + FOREIGN.replace("+", "%2B")
        # A cause links to its latest symptom's explanation; haven's explained alert to its own record.
        assert links[("HavenRootCause", "mariadb", "")] == api + "alert:r1"
        assert links[("HavenRootCause", "rabbitmq", "")] == api + "canary:az2-1"
        assert links[("HavenRecoveryFailed", "mariadb", "")] == api + "alert:r1"
        assert links[("HavenServiceDown", "mariadb", "")] == ""  # explains nothing: no explanation to link

        # What Alertmanager notified carries the same links.
        await until(lambda: any(a["alertname"] == "HavenRootCause" for a in notified(receiver)), 15)
        delivered = [a for r in receiver.received for a in r.body["alerts"]]
        assert {a["generatorURL"] for a in delivered if a["labels"]["alertname"] == "HavenRootCause"} <= {
            api + "alert:r1", api + "canary:az2-1"
        }  # fmt: skip

        # Followed into haven's API (the real app over the same store), each URL is that explanation.
        app = create_app(store, FakeIntake(store, VirtualClock()), TOKEN, RealClock())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), headers={"X-Auth-Token": TOKEN}
        ) as client:
            for (_, _, record), url in links.items():
                if url:
                    answer = await client.get(url)
                    assert answer.status_code == 200, (url, answer.text)
                    body = answer.json()["explanation"]
                    assert body["id"] == (record or body["id"]) and body["state"] == "done"
            foreign = (await client.get(links[("HavenSymptom", "mariadb", FOREIGN)])).json()
            assert foreign["explanation"]["id"] == FOREIGN


def test_haven_url_is_checked_and_optional() -> None:
    assert parse_diagnosis({"alertmanager_url": "http://am:9093"}, "h").settings.alerting.incidents.url == ""
    for bad in ("haven.example.net:15868", "http://haven.example.net:15868?x=1", "http:// spaced"):
        with pytest.raises(ConfigError, match="haven_url"):
            parse_diagnosis({"haven_url": bad}, "h")
