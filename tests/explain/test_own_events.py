"""haven's own doings as evidence: a real engine on the simulated cloud finds a host dead, fences it and
evacuates it; a canary that then cannot be placed in that zone is explained by that host, with haven's
timeline in words. And the translation itself, from records to the ranker's events."""

from __future__ import annotations

from pathlib import Path

from haven.canary.model import CanarySettings, Outcome
from haven.canary.runner import CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.cloud.sim import CloudSpec, SimFencer, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, Graph, Symptom, rank
from haven.domain.clock import VirtualClock
from haven.domain.controlplane import ActionDetail, ActionKind, ActionRecord, ActionState, ServiceName
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind, NotificationType
from haven.explain.explainer import Explainer
from haven.explain.own import HAVEN, OwnRecords, extend, host_node, own_events
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store
from haven.topology import SERVER_BOOT, openstack_topology


async def test_a_canary_no_host_can_take_is_explained_by_the_host_haven_fenced(tmp_path: Path) -> None:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=8, vms=16, zones=2, ha_fraction=1.0, seed=5), clock)
    with Store.open(f"sqlite:///{tmp_path}/haven.db") as store:
        segments_per_zone(store, await cloud.list_hosts())
        engine = Engine(cloud, cloud, SimFencer(cloud), store, clock)
        engine.start()
        await run_until(engine, clock, clock.now() + 5, wake_sources=[cloud.next_event_time])
        zone_hosts = [h.name for h in await cloud.list_hosts() if h.zone == "az1"]
        victim = zone_hosts[0]
        cloud.fail_power(victim)

        def recovered() -> bool:
            return bool(store.list_notifications()) and not engine.open_notifications()

        await run_until(
            engine, clock, clock.now() + 600, done=recovered, wake_sources=[cloud.next_event_time]
        )
        assert recovered() and not cloud.is_powered(victim)  # haven fenced it: the BMC says off
        for other in zone_hosts[1:]:  # an operator takes the zone's other hosts out
            await cloud.disable_service(other, "maintenance")
        clock.advance_to(clock.now() + 60)

        explainer = Explainer(store, openstack_topology(CATALOGUE.values()), clock)
        nova = SimCanaryCloud(cloud, clock)
        runner = CanaryRunner(nova, store, clock, CanarySettings(zones=("az1",), probes=False, poll_s=0.5),
                              explainer.open_and_explain)  # fmt: skip
        (run,) = (await runner.round()).runs
        assert run.outcome is Outcome.FAILED and "No valid host" in run.error

        record = store.get_explanation(f"canary:{run.id}")
        assert record.diagnosis is not None
        top = record.diagnosis.explanations[0]
        assert top.node == host_node(victim) and top.in_phase
        (note,) = store.list_notifications(type=NotificationType.COMPUTE_HOST)
        assert f"haven found it dead (notification {note.id})" in top.text
        assert "fenced at" in top.text and "evacuations from" in top.text
        assert f"host {victim} went down" in record.diagnosis.summary


def test_holds_restarts_and_a_recovery_s_own_host() -> None:
    alerts = [
        Alert(
            "a1",
            AlertKind.SAFETY_HOLD,
            "fence of compute-2 held: 3 of 4 hosts down",
            100.0,
            None,
            HostName("compute-2"),
        ),
        Alert(
            "a2",
            AlertKind.FENCE_FAILED,
            "BMC of compute-3 did not answer",
            110.0,
            None,
            HostName("compute-3"),
        ),
        Alert(
            "a3",
            AlertKind.FENCE_FAILED,
            "BMC of compute-9 did not answer",
            115.0,
            None,
            HostName("compute-9"),
        ),
        Alert("a4", AlertKind.ISOLATED, "compute-4 isolated", 120.0, None, HostName("compute-4")),
        Alert("old", AlertKind.FENCE_FAILED, "before the window", 10.0, None, HostName("compute-3")),
    ]
    actions = [
        ActionRecord(
            "x1",
            ActionKind.SEEN_RESTART,
            ServiceName("rabbitmq"),
            HostName("ctl-1"),
            ActionState.DONE,
            "",
            ActionDetail(),
            130.0,
        ),
        ActionRecord(
            "x2",
            ActionKind.READY,
            ServiceName("glance-api"),
            HostName("ctl-1"),
            ActionState.DONE,
            "probe passes",
            ActionDetail(),
            131.0,
        ),
    ]
    events = own_events(OwnRecords(alerts=alerts, actions=actions), 50.0, 200.0, skip_host="compute-9")
    found = {(e.node, e.kind, e.at) for e in events}
    assert found == {
        (HAVEN, EvidenceKind.ERROR, 100.0),
        (host_node("compute-3"), EvidenceKind.ERROR, 110.0),
        ("rabbitmq", EvidenceKind.RESTART, 130.0),
    }  # compute-9 is the symptom's own host; isolation and a replica back in are not faults


def test_an_alert_cleared_before_the_symptom_is_no_cause_of_it() -> None:
    """The control-plane alert of an earlier fault (computes not reporting), cleared minutes before, blamed
    nova-compute for a later boot failure on the lab (bench/alert_ratio.py, placement-killed)."""
    topology = openstack_topology(CATALOGUE.values())
    graph = Graph(topology.depends_on, topology.labels, topology.phases)
    words = "2 of 2 nova-compute services stopped reporting while their hosts' haven agents still beat"
    symptom = Symptom(SERVER_BOOT, 700.0, "boot failed (NoValidHost)", "scheduling")
    for cleared_at, blamed in ((200.0, False), (None, True), (705.0, True)):
        alert = Alert("cp1", AlertKind.CONTROL_PLANE, words, 100.0, cleared_at=cleared_at)
        events = own_events(OwnRecords(alerts=[alert]), 50.0, symptom.at)
        ranked = [e.node for e in rank(extend(graph, events), symptom, events=events).explanations]
        assert ("nova-compute" in ranked) is blamed, (cleared_at, ranked)
