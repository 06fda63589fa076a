"""The control plane, explanations and backups panels: the reconciler tells the board only when the
replicas it recorded changed, and the board re-reads them (and nothing else) on that event.

Unit tests on a real SQLite store and the simulated control plane in virtual time; the browser test
(test_controlplane_live.py) follows the same path through a live page.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.reconciler import Reconciler
from haven.controlplane.running import ControlPlane
from haven.dashboard.app import template_environment
from haven.dashboard.board import Board
from haven.domain.clock import VirtualClock
from haven.domain.controlplane import ReplicaHealth, ReplicaState
from haven.domain.events import EngineEvent, EventKind
from haven.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as opened:
        yield opened


async def test_the_board_follows_a_hung_replica_told_only_on_changes(store: Store) -> None:
    clock = VirtualClock()
    cp = ControlPlane(ControlPlaneConfig(), simulated_cloud=True, clock=clock)
    assert cp.sim is not None
    told: list[Sequence[ReplicaState]] = []
    reconciler = Reconciler(
        cp.config, cp.units, cp.balancer, cp.prober, store, clock, on_replicas=told.append
    )
    board = Board(store, declared={s.name: s.min_replicas for s in cp.config.services})
    assert board.services() == []  # nothing recorded yet: the panel says so
    await reconciler.run_pass()
    for _ in range(3):  # the same world, observed again: no news
        clock.advance_to(clock.now() + 1.0)
        await reconciler.run_pass()
    assert len(told) == 1
    changes = board.apply([EngineEvent(EventKind.CONTROLPLANE_CHANGED, clock.now())])
    assert changes.controlplane and changes.alerts
    nova = next(s for s in board.services() if s.name == "nova-api")
    assert (nova.healthy, nova.declared, len(nova.replicas)) == (2, 2, 3)

    cp.sim.hang("nova-api", "ctl-2")
    healths = []
    for _ in range(40):
        clock.advance_to(clock.now() + 0.5)
        await reconciler.run_pass()
        healths.append(_replica(store, "ctl-2"))
        if healths[-1] == (ReplicaHealth.HEALTHY, "ready") and ReplicaHealth.UNHEALTHY in dict(healths):
            break
    assert healths[-1] == (ReplicaHealth.HEALTHY, "ready")  # restarted, back in the load balancer
    changed = sum(1 for a, b in itertools.pairwise(healths) if a != b)
    assert changed <= len(told) - 1 < len(healths)  # told at changes (probe words too), not each pass
    board.apply([EngineEvent(EventKind.CONTROLPLANE_CHANGED, clock.now())])
    ctl2 = next(r for r in board.replicas if r.service == "nova-api" and r.host == "ctl-2")
    assert ctl2.health is ReplicaHealth.HEALTHY and ctl2.member == "ready"


def _replica(store: Store, host: str) -> tuple[ReplicaHealth, str]:
    found = next(r for r in store.list_replicas() if r.service == "nova-api" and r.host == host)
    return found.health, found.member


def test_empty_panels(store: Store) -> None:
    board = Board(store)
    assert board.services() == [] and board.explanations == [] and board.canaries == []
    assert board.protected == [] and not board.backups_on


def test_the_panels_show_an_explanation_a_canary_boot_and_a_stale_recovery_point(store: Store) -> None:
    from haven.backups.config import SchedulerSettings
    from haven.backups.planner import BackupPlan, ServerStatus
    from haven.canary.model import CanaryRun, Outcome, RunState, run_json
    from haven.canary.runner import BOOT
    from haven.dashboard.board import BackupStatus
    from haven.diagnosis.model import Diagnosis, Evidence, EvidenceKind, Explanation, Symptom
    from haven.diagnosis.records import ExplanationRecord
    from haven.domain.backups import BackupPolicy

    symptom = Symptom("server-boot", 1000.0, "boot failed", "image")
    store.open_explanation(ExplanationRecord("canary:1", "canary", "az-1", symptom, 1000.0))
    glance = Evidence(EvidenceKind.DOWN, "glance-api", 990.0, "glance-api on ctl-1 reported down")
    cause = Explanation("glance-api", "Glance API", 30.0, 990.0, (glance,), "Glance API down at 990")
    store.finish_explanation(
        "canary:1", Diagnosis(symptom, (cause,), "boot failed because Glance API was down"), (), 1001.0
    )
    run = CanaryRun("1", "az-1", "haven-canary-1", 900.0, RunState.DONE, phases={"accepted": 0.4},
                    outcome=Outcome.FAILED, failed_in="image", error="image download failed")  # fmt: skip
    store.save_canary(BOOT, run_json(run))
    status = ServerStatus("s-1", "web-1", BackupPolicy("hourly"), 0, 0, 0, None, True, True)
    fresh = ServerStatus("s-0", "db-0", BackupPolicy("hourly"), 0, 0, 0, 4000.0, False, False)
    plan = BackupPlan((), (), (fresh, status), 0, None)
    board = Board(store, backups=lambda: BackupStatus(plan, SchedulerSettings()), now=5000.0)
    parts: Any = template_environment().get_template("parts.html").module
    html = str(parts.explanations(board)) + str(parts.canaries(board)) + str(parts.backups(board))
    assert "boot failed because Glance API was down" in html and "glance-api on ctl-1 reported down" in html
    assert "image download failed" in html and "✕</span> failed" in html
    assert "web-1" in html and "✗</span> stale" in html and "none" in html
    assert [p.server_name for p in board.protected] == ["web-1", "db-0"]  # the stale one first
    assert board.backup_counts() == {"stale": 1, "none_yet": 0, "within_policy": 1}
    assert "17 min" in html  # db-0's recovery point, 1,000 s old, against 2.0 h allowed


def test_an_alert_shows_its_explanation(store: Store) -> None:
    from haven.diagnosis.model import Diagnosis, Symptom
    from haven.diagnosis.records import ExplanationRecord
    from haven.domain.ids import HostName
    from haven.domain.incidents import Alert, AlertKind

    alert = store.raise_alert(
        Alert("a-1", AlertKind.RECOVERY_FAILED, "evacuation failed", 50.0, host=HostName("compute-1"))
    )
    symptom = Symptom("evacuate", 50.0, "recovery failed")
    store.open_explanation(
        ExplanationRecord(f"alert:{alert.id}", "alert:recovery_failed", "compute-1", symptom, 51.0)
    )
    store.finish_explanation(
        f"alert:{alert.id}", Diagnosis(symptom, (), "recovery failed: no cause stood out"), (), 52.0
    )
    board = Board(store)
    parts: Any = template_environment().get_template("parts.html").module
    html = str(parts.alerts(board)) + str(parts.explanations(board))
    anchor = f"ex-alert-{alert.id}"
    assert f'Why: recovery failed: no cause stood out (<a href="#{anchor}">' in html
    assert f'<article class="explanation" id="{anchor}"' in html


async def test_a_failed_canary_boot_and_its_explanation_reach_the_board(store: Store) -> None:
    from haven.canary.model import CanarySettings, Outcome
    from haven.canary.sim import SimCanaryCloud
    from haven.cloud.sim import CloudSpec, build_cloud
    from haven.controlplane.catalogue import CATALOGUE
    from haven.explain.config import DiagnosisConfig
    from haven.service.explaining import AnnouncingCanary, Explaining

    clock = VirtualClock()
    cloud = build_cloud(CloudSpec(hosts=4, vms=0, zones=2, seed=3), clock)[0]
    hosts = await cloud.list_hosts()
    zone = sorted({h.zone for h in hosts})[0]
    for h in hosts:
        if h.zone == zone:
            await cloud.force_down(h.name, True)  # the zone's canary cannot be scheduled
    events: list[EngineEvent] = []
    explainer = Explaining(DiagnosisConfig(), CATALOGUE.values()).explainer(store, clock, None, events.append)
    settings = CanarySettings(poll_s=0.25, boot_timeout_s=60.0, slow_s=20.0, delete_timeout_s=30.0)
    runner = AnnouncingCanary(
        SimCanaryCloud(cloud, clock), store, clock, settings, explainer.open_and_explain, events.append
    )
    board = Board(store)
    await runner.round()
    assert [e.kind for e in events] == [EventKind.EXPLANATION_FINISHED, EventKind.CANARY_FINISHED]
    assert events[0].detail["source"] == "canary"
    assert board.apply(events).explanations
    assert [r.outcome for r in board.canaries].count(Outcome.FAILED) == 1 and len(board.canaries) == 2
    assert len(board.explanations) == 1 and board.explanations[0].diagnosis is not None
    assert board.explanations[0].subject == zone
