"""haven's incidents sent to Debian's real Alertmanager (0.25), started on a free loopback port in a temporary
folder with deploy/alertmanager/haven.yml's route and inhibition rule, its receiver a real webhook here.

Judged from Alertmanager's own state (API v2 ``/api/v2/alerts``: active or suppressed, and by what) and the
notifications it sent: symptoms that share a root cause are muted by that cause's one alert; a symptom sent
alone first (what a sender that does not batch does) is notified, which haven's batches never allow; after
Alertmanager restarts (it keeps no alerts), haven's next send restores the cause with its symptoms; symptoms
out of the incident window are resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, NodeEvent, Symptom, rank
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import RealClock
from haven.domain.errors import PermanentError
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.explain.alerting import AlertingSettings, AlertmanagerNotifier
from haven.explain.explainer import Explainer, ExplainSettings
from haven.explain.incidents import IncidentSettings
from haven.notify.alertmanager import Alertmanager, AmAlert
from haven.store import Store
from haven.topology import SERVER_BOOT, openstack_topology
from servers.process import ServerProcess, free_port, require

from .conftest import SECRET
from .receiver import WebhookReceiver

BINARY = Path("/usr/bin/prometheus-alertmanager")
AMTOOL = Path("/usr/bin/amtool")
SHIPPED = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "haven.yml"


class RunningAlertmanager:
    def __init__(self, folder: Path, hook: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = yaml.safe_load(SHIPPED.read_text())
        # The shipped route and inhibition, with test-sized waits and the test's receiver.
        config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1h")
        config["receivers"] = [
            {"name": "default", "webhook_configs": [{"url": hook, "send_resolved": False}]}
        ]
        self.config = folder / "alertmanager.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.server: ServerProcess | None = None

    def start(self) -> RunningAlertmanager:
        args = [str(BINARY), f"--config.file={self.config}", f"--storage.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="]  # fmt: skip
        self.server = ServerProcess("alertmanager", args, self.folder / "alertmanager.log").start()
        self.server.wait_until(self._ready, 20, "readiness")
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False


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


def graph() -> Graph:
    topology = openstack_topology(CATALOGUE.values())
    return Graph(topology.depends_on, topology.labels, topology.phases)


def explained(store: Store, key: str, symptom: Symptom, events: list[NodeEvent], source: str) -> None:
    record = ExplanationRecord(key, source, "az1", symptom, symptom.at)
    assert store.open_explanation(record)
    store.finish_explanation(key, rank(graph(), symptom, events=events), (), time.time())


def incidents(store: Store, at: float) -> None:
    """Three symptoms explained by the database, one by RabbitMQ, one by nothing; and haven's own alert."""
    db = [NodeEvent("mariadb", EvidenceKind.ERROR, at - 30, "its sql probe failed", "cp:sql:ctl-1")]
    mq = [NodeEvent("rabbitmq", EvidenceKind.DOWN, at - 30, "its unit failed", "cp:unit:ctl-1")]
    explained(store, "canary:az1-1", Symptom(SERVER_BOOT, at - 20, "boot failed", "api"), db, "canary")
    explained(store, "probe:server-list:1", Symptom("nova-api", at - 19, "server list failed", "api"), db,
              "probe:server-list")  # fmt: skip
    explained(store, "instance.create.error:m1", Symptom(SERVER_BOOT, at - 18, "boot of vm-1 failed", "api"),
              db, "instance.create.error")  # fmt: skip
    explained(store, "canary:az2-1", Symptom(SERVER_BOOT, at - 17, "boot failed", "spawn"), mq, "canary")
    explained(store, "canary:az3-1", Symptom(SERVER_BOOT, at - 16, "boot failed", "spawn"), [], "canary")
    store.raise_alert(Alert("a1", AlertKind.SERVICE_DOWN, "no replica of mariadb is healthy", at - 25,
                            host=HostName("mariadb")))  # fmt: skip


async def held(am: Alertmanager) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(alertname, cause, explanation) -> the alert's status as Alertmanager reports it."""
    return {
        (a["labels"]["alertname"], a["labels"].get("cause", ""), a["labels"].get("explanation", "")): a[
            "status"
        ]
        for a in await am.alerts()
    }


async def until(check: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not check():
        assert time.monotonic() < deadline, "not within the limit"
        await asyncio.sleep(0.1)


def notified(receiver: WebhookReceiver) -> list[dict[str, str]]:
    return [a["labels"] for r in receiver.received for a in r.body["alerts"]]


async def test_symptoms_are_muted_by_their_root_cause_and_one_notification_speaks_for_them(
    alertmanager: RunningAlertmanager, receiver: WebhookReceiver
) -> None:
    with Store.open("sqlite://") as store:
        incidents(store, time.time())
        am = Alertmanager(alertmanager.url)
        settings = AlertingSettings(alertmanager.url, 2.0, IncidentSettings(active_s=600, ends_after_s=6))
        notifier = AlertmanagerNotifier(store, RealClock(), settings)
        batch = await notifier.tick()
        sent_at = time.monotonic()
        assert batch is not None
        assert await notifier.tick() is None  # unchanged and not yet due: nothing sent
        names = [a.labels["alertname"] for a in batch]
        assert names[:3] == ["HavenRootCause", "HavenRootCause", "HavenServiceDown"]  # causes first
        state = await held(am)
        for cause in ("mariadb", "rabbitmq"):
            assert state[("HavenRootCause", cause, "")]["state"] == "active"
        assert state[("HavenServiceDown", "mariadb", "")]["state"] == "active"
        muted = [k for k, s in state.items() if s["state"] == "suppressed"]
        assert sorted(k[2] for k in muted) == [
            "canary:az1-1", "canary:az2-1", "instance.create.error:m1", "probe:server-list:1"
        ]  # fmt: skip
        assert all(state[k]["inhibitedBy"] for k in muted)
        assert state[("HavenSymptom", "", "canary:az3-1")]["state"] == "active"  # no cause: not muted
        # What was notified: the causes and the unexplained symptom; no symptom with a firing cause.
        await until(lambda: len(notified(receiver)) >= 4, 15)
        await asyncio.sleep(2.5)  # more group intervals: nothing else comes
        sent = notified(receiver)
        assert sorted((a["alertname"], a.get("cause", "")) for a in sent) == [
            ("HavenRootCause", "mariadb"), ("HavenRootCause", "rabbitmq"), ("HavenServiceDown", "mariadb"),
            ("HavenSymptom", ""),
        ]  # fmt: skip
        root = next(
            a for a in batch if a.labels["alertname"] == "HavenRootCause" and a.labels["cause"] == "mariadb"
        )
        assert (
            "the database (MariaDB) is the likely root cause of 3 symptom(s)" in root.annotations["summary"]
        )
        assert "its sql probe failed" in root.annotations["evidence"]
        await asyncio.sleep(max(0.0, 2.05 - (time.monotonic() - sent_at)))
        assert await notifier.tick() is not None and notifier.sends == 2  # due: the whole set again


async def test_a_symptom_alone_first_is_notified_and_haven_restores_its_cause_after_a_restart(
    alertmanager: RunningAlertmanager, receiver: WebhookReceiver
) -> None:
    am = Alertmanager(alertmanager.url)
    now = time.time()
    labels = {"alertname": "HavenSymptom", "haven_role": "symptom", "cause": "rabbitmq", "explanation": "x"}
    # Alertmanager's own defect, shown: a symptom that arrives before its cause is notified.
    await am.post([AmAlert(labels, {"summary": "boot failed"}, now, now + 60)])
    await until(lambda: len(notified(receiver)) == 1, 15)
    cause = {"alertname": "HavenRootCause", "haven_role": "cause", "cause": "rabbitmq"}
    await am.post([AmAlert(cause, {}, now, now + 60)])  # too late for that notification
    assert notified(receiver)[0]["alertname"] == "HavenSymptom"

    # haven's way, across a restart: Alertmanager keeps no alerts; the next send brings the pair back.
    with Store.open("sqlite://") as store:
        incidents(store, time.time())
        settings = AlertingSettings(alertmanager.url, 1.0, IncidentSettings(active_s=600, ends_after_s=3))
        notifier = AlertmanagerNotifier(store, RealClock(), settings)
        assert await notifier.tick() is not None
        alertmanager.stop()
        alertmanager.start()
        assert await am.alerts() == []
        before = len(receiver.received)
        await asyncio.sleep(1.05)
        assert await notifier.tick() is not None  # due: the whole set, causes first, in one request
        state = await held(am)
        assert state[("HavenSymptom", "rabbitmq", "canary:az2-1")]["state"] == "suppressed"
        await asyncio.sleep(2.5)
        assert not [
            a for r in receiver.received[before:] for a in r.body["alerts"]
            if a["labels"]["alertname"] == "HavenSymptom" and a["labels"].get("cause")
        ]  # fmt: skip


async def test_symptoms_out_of_the_window_and_cleared_alerts_are_resolved(
    alertmanager: RunningAlertmanager,
) -> None:
    am = Alertmanager(alertmanager.url)
    with Store.open("sqlite://") as store:
        incidents(store, time.time())
        # A window of 21 s holds the five symptoms (16 to 20 s old) now, and none of them 5 s later.
        settings = AlertingSettings(alertmanager.url, 1.0, IncidentSettings(active_s=21.0, ends_after_s=600))
        notifier = AlertmanagerNotifier(store, RealClock(), settings)
        await notifier.tick()
        assert len(await am.alerts()) == 8
        store.clear_alerts(now=time.time(), kind=AlertKind.SERVICE_DOWN, host=HostName("mariadb"))
        await asyncio.sleep(5.5)  # past the window; each alert would fire 600 s, unless resolved
        resolved = await notifier.tick()
        assert resolved is not None and all(a.ends_at <= time.time() for a in resolved)
        assert len(resolved) == 8
        assert [a["labels"]["alertname"] for a in await am.alerts()] == []


def test_the_shipped_configuration_passes_amtool() -> None:
    amtool = require(AMTOOL, "prometheus-alertmanager")
    done = subprocess.run(
        [str(amtool), "check-config", str(SHIPPED)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "1 inhibit rules" in done.stdout, done.stdout + done.stderr


def test_a_bad_alert_is_refused_with_alertmanagers_words(alertmanager: RunningAlertmanager) -> None:
    with pytest.raises(PermanentError, match="refused: 400"):
        asyncio.run(
            Alertmanager(alertmanager.url).post([AmAlert({"0bad": "x"}, {}, time.time(), time.time() + 9)])
        )


async def test_the_explainer_s_loop_sends_its_incidents(alertmanager: RunningAlertmanager) -> None:
    with Store.open("sqlite://") as store:
        incidents(store, time.time())
        alerting = AlertingSettings(alertmanager.url, 1.0, IncidentSettings(active_s=600, ends_after_s=3))
        explainer = Explainer(store, openstack_topology(CATALOGUE.values()), RealClock(),
                              settings=ExplainSettings(poll_s=0.2, alerting=alerting))  # fmt: skip
        task = asyncio.create_task(explainer.run())
        try:
            am = Alertmanager(alertmanager.url)
            deadline = time.monotonic() + 10
            while not (state := await held(am)) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert state[("HavenRootCause", "mariadb", "")]["state"] == "active"
        assert state[("HavenSymptom", "mariadb", "canary:az1-1")]["state"] == "suppressed"
