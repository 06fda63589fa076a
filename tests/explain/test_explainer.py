"""haven.explain's explainer: symptoms recorded once, explained from stored evidence and recorded metrics,
on virtual time; and end to end, from Nova's notifications on a real RabbitMQ to a stored explanation."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest
from oslo_config import cfg

from evidence.nova_samples import create_error, service_update
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, NodeEvent, RankSettings, Symptom
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.clock import VirtualClock
from haven.domain.errors import TemporaryError
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.evidence.metrics import RangeSeries, RecordedMetrics
from haven.evidence.nova import BootFailure, Received
from haven.evidence.nova_listener import NovaListener
from haven.explain.explainer import Explainer, ExplainSettings, MetricQuery
from haven.notify.oslo import oslo_messaging
from haven.store import Store
from haven.topology import SERVER_BOOT, SERVER_EVACUATE, openstack_topology
from servers.rabbitmq import RabbitMQ, rabbitmq_fixture  # noqa: F401 (the session's broker)

NOW = 1_800_000_000.0  # the symptom's time
TOPOLOGY = openstack_topology(CATALOGUE.values())
PLACEMENT = MetricQuery("placement-api", "p95 latency", "placement_p95", "s")
GLANCE = MetricQuery("glance-api", "p95 latency", "glance_p95", "s")
SETTINGS = ExplainSettings(rank=RankSettings(), metrics=(PLACEMENT, GLANCE), step_s=15.0)


def series(base: float, level: float, onset: float, until: float = NOW + 600) -> RangeSeries:
    """Every 15 s from 1.5 h before NOW: ``base`` (±1%), then ``level`` from ``onset``."""
    points = []
    t, i = NOW - 5400.0, 0
    while t <= until:
        wiggle = base * 0.01 * ((i % 5) - 2) / 2
        points.append((t, (level if t >= onset else base) + wiggle))
        t, i = t + 15.0, i + 1
    return RangeSeries({"job": "lab"}, tuple(points))


def recorded() -> RecordedMetrics:
    return RecordedMetrics(
        {
            "placement_p95": [series(0.05, 0.4, NOW - 150)],  # Placement slowed 2.5 minutes before
            "glance_p95": [series(0.4, 30.0, NOW - 200)],  # Glance far worse, and earlier
        }
    )


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open("sqlite://")
    yield opened
    opened.close()


def boot_failure(exception: str, message: str, phase: str | None) -> Received:
    failure = BootFailure("uuid-1", "vm-1", "compute-1", NOW, exception, message, phase)
    return Received("msg-1", failure)


async def test_a_failed_boot_is_recorded_and_explained_within_its_phase(store: Store) -> None:
    metrics = recorded()
    explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW + 3), metrics, SETTINGS)
    record = await explainer.take(boot_failure("NoValidHost", "No valid host was found.", "scheduling"))
    assert record is not None and record.state is ExplanationState.DONE
    assert record.id == "instance.create.error:msg-1" and record.subject == "uuid-1"
    assert record.symptom == Symptom(SERVER_BOOT, NOW, "boot of vm-1 failed (NoValidHost)", "scheduling")
    assert record.explained_at == NOW + 3
    assert record.diagnosis is not None
    ranked = [(e.node, e.in_phase) for e in record.diagnosis.explanations]
    assert ranked == [("placement-api", True), ("glance-api", False)]  # Glance is worse, but not scheduling
    assert record.diagnosis.summary.startswith("boot of vm-1 failed (NoValidHost) at ")
    assert "because Placement p95 latency rose to 0.4" in record.diagnosis.summary
    lookback = SETTINGS.rank.lookback_s
    assert sorted(metrics.asked) == [
        ("glance_p95", NOW - lookback, NOW, 15.0),
        ("placement_p95", NOW - lookback, NOW, 15.0),
    ]
    assert store.get_explanation(record.id) == record


async def test_the_same_notification_twice_is_explained_once(store: Store) -> None:
    metrics = recorded()
    explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW + 3), metrics, SETTINGS)
    first = await explainer.take(
        boot_failure("ImageNotFound", "Image 1 could not be found.", "image download")
    )
    asked = len(metrics.asked)
    again = await explainer.take(
        boot_failure("ImageNotFound", "Image 1 could not be found.", "image download")
    )
    assert again == first and len(metrics.asked) == asked
    assert first is not None and first.diagnosis is not None
    assert first.diagnosis.explanations[0].node == "glance-api"


async def test_kept_notifications_are_evidence_for_a_later_symptom(store: Store) -> None:
    explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW), None, SETTINGS)  # no metrics source at all
    down = NodeEvent("rabbitmq", EvidenceKind.DOWN, NOW - 90, "rabbit@ctl1 down")
    assert await explainer.take(Received("m-down", down)) is None
    assert await explainer.take(Received("m-down", down)) is None  # redelivered: kept once
    stale = NodeEvent("nova-conductor", EvidenceKind.ERROR, NOW - 3600, "DBConnectionError")
    await explainer.take(Received("m-stale", stale))
    record = await explainer.take(boot_failure("FlavorDiskTooSmall", "too small", None))
    assert record is not None and record.diagnosis is not None
    assert [e.node for e in record.diagnosis.explanations] == ["rabbitmq"]  # the stale error is outside
    assert record.diagnosis.explanations[0].evidence[0].text.startswith("RabbitMQ went down at ")
    assert store.evidence_between(0, NOW) == [stale, down]


async def test_an_unavailable_metrics_source_leaves_a_note_and_ranks_the_events(store: Store) -> None:
    class Down:
        async def query_range(self, query: str, start: float, end: float, step_s: float) -> list[RangeSeries]:
            raise TemporaryError("Prometheus at http://p:9090: ConnectError", 5.0)

    store.keep_evidence({"m": NodeEvent("placement-api", EvidenceKind.RESTART, NOW - 30)}, NOW)
    explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW), Down(), SETTINGS)
    record = await explainer.take(boot_failure("NoValidHost", "", "scheduling"))
    assert record is not None and record.diagnosis is not None
    assert record.diagnosis.explanations[0].node == "placement-api"
    assert record.notes == (
        "no p95 latency for placement-api: Prometheus at http://p:9090: ConnectError",
        "no p95 latency for glance-api: Prometheus at http://p:9090: ConnectError",
    )


async def test_an_unexpected_error_loses_one_explanation_not_the_explainer(store: Store) -> None:
    class Broken:
        async def query_range(self, query: str, start: float, end: float, step_s: float) -> list[RangeSeries]:
            raise RuntimeError("a bug")

    broken = Explainer(store, TOPOLOGY, VirtualClock(NOW), Broken(), SETTINGS)
    assert await broken.take(boot_failure("NoValidHost", "", "scheduling")) is None
    (pending,) = store.list_explanations()
    assert pending.state is ExplanationState.PENDING  # recorded before the evidence was read
    working = Explainer(store, TOPOLOGY, VirtualClock(NOW + 30), recorded(), SETTINGS)
    (done,) = await working.resume()
    assert done.id == pending.id and done.state is ExplanationState.DONE


async def test_a_record_left_pending_is_explained_on_resume(store: Store) -> None:
    pending = ExplanationRecord(
        "instance.create.error:m7", "instance.create.error", "u7", Symptom(SERVER_BOOT, NOW), 1
    )
    assert store.open_explanation(pending)
    store.keep_evidence({"m": NodeEvent("glance-api", EvidenceKind.RESTART, NOW - 10)}, NOW)
    explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW + 60), None, SETTINGS)
    (done,) = await explainer.resume()
    assert done.state is ExplanationState.DONE and done.explained_at == NOW + 60
    assert done.diagnosis is not None and done.diagnosis.explanations[0].node == "glance-api"
    assert await explainer.resume() == []


async def test_an_alert_about_a_failed_recovery_is_explained_once(store: Store) -> None:
    message = "1 recovery step(s) failed for compute-3: evacuate vm-9: No valid host was found."
    store.raise_alert(Alert("a1", AlertKind.RECOVERY_FAILED, message, NOW, host=HostName("compute-3")))
    store.raise_alert(Alert("a2", AlertKind.GATE_HOLD, "held", NOW, host=HostName("compute-4")))  # not one
    explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW + 5), recorded(), SETTINGS)
    (record,) = await explainer.watch_alerts()
    assert (
        record.id == "alert:a1" and record.source == "alert:recovery_failed" and record.subject == "compute-3"
    )
    assert record.symptom == Symptom(SERVER_EVACUATE, NOW, "recovery of compute-3 failed", "scheduling")
    assert record.diagnosis is not None and record.diagnosis.explanations[0].node == "placement-api"
    assert await explainer.watch_alerts() == []


@pytest.mark.rabbitmq
async def test_from_nova_notifications_on_rabbitmq_to_a_stored_explanation(
    store: Store, rabbitmq: RabbitMQ
) -> None:
    """As in production: Nova's Notifier → RabbitMQ → NovaListener → Explainer → the store."""
    topic = f"versioned-{secrets.token_hex(4)}"
    explainer = Explainer(store, TOPOLOGY, VirtualClock(NOW), None, SETTINGS)
    explained: list[ExplanationRecord] = []
    done = asyncio.Event()

    async def handle(received: Received) -> None:
        record = await explainer.take(received)
        if record is not None:
            explained.append(record)
            done.set()

    ready = asyncio.Event()
    listener = NovaListener(rabbitmq.url, topic=topic, pool="haven-test")
    task = asyncio.create_task(listener.run(handle, ready))
    conf = cfg.ConfigOpts()
    conf([], project="nova-test", default_config_files=[], default_config_dirs=[])
    transport = oslo_messaging.get_notification_transport(conf, url=rabbitmq.url)
    try:
        await asyncio.wait_for(ready.wait(), 30)

        def send() -> None:
            nova = oslo_messaging.Notifier(
                transport, publisher_id="nova-compute:host1", driver="messagingv2", topics=[topic]
            )
            nova.info({}, "service.update", service_update(True))
            nova.error(
                {}, "instance.create.error", create_error("PortBindingFailed", "Binding failed for port")
            )

        await asyncio.to_thread(send)
        await asyncio.wait_for(done.wait(), 20)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await listener.aclose()
        await asyncio.to_thread(transport.cleanup)
    (record,) = explained
    assert record.symptom.phase == "port binding" and record.state is ExplanationState.DONE
    # The notifications carry the sender's real time; the rank window is around it.
    assert store.list_explanations() == [record]
    assert record.diagnosis is not None
    (evidence,) = store.evidence_between(0, 1e12)
    assert (evidence.node, evidence.kind) == ("nova-compute", EvidenceKind.DOWN)
    # nova-compute is not a port-binding node: its forced-down is listed, after what the phase covers.
    assert [(e.node, e.in_phase) for e in record.diagnosis.explanations] == [("nova-compute", False)]


async def test_a_second_look_without_the_metrics_the_first_had_keeps_the_first_ranking(store: Store) -> None:
    """refine (the canary's look after a failed check) ranks again from what it can read: with Prometheus
    gone by then and nothing new kept, a ranking from events alone would replace one made with Glance's
    and Placement's series; with new evidence kept by the look, that evidence is ranked."""

    class Flaky:
        def __init__(self) -> None:
            self.inner, self.down = recorded(), False

        async def query_range(self, query: str, start: float, end: float, step_s: float) -> list[RangeSeries]:
            if self.down:
                raise TemporaryError("Prometheus at http://p:9090: ConnectError", 5.0)
            return await self.inner.query_range(query, start, end, step_s)

    metrics = Flaky()
    clock = VirtualClock(NOW + 3)
    explainer = Explainer(store, TOPOLOGY, clock, metrics, SETTINGS)
    first = await explainer.take(boot_failure("NoValidHost", "No valid host was found.", "scheduling"))
    assert first is not None and first.diagnosis is not None
    assert [e.node for e in first.diagnosis.explanations] == ["placement-api", "glance-api"]
    metrics.down = True
    clock.advance_to(NOW + 20)
    again = await explainer.refine(first)
    assert again == first == store.get_explanation(first.id)  # the series-backed ranking kept, not replaced
    # The look kept new evidence (hard evidence, dated before the symptom): ranked again from the events.
    store.keep_evidence({"r": NodeEvent("nova-scheduler", EvidenceKind.RESTART, NOW - 10)}, NOW + 20)
    refined = await explainer.refine(first)
    assert refined.diagnosis is not None and refined.explained_at == NOW + 20
    assert "nova-scheduler" in [e.node for e in refined.diagnosis.explanations[:3]]
