"""Canary boots on the simulated cloud, on virtual time: phases timed, servers always deleted (judged from
the simulated Nova's own server table), failures and slowness explained, orphans of a stopped engine
cleaned, probes, metrics and the config."""

from __future__ import annotations

import asyncio

import pytest

from haven.canary.config import parse_canary, require_real
from haven.canary.model import CANARY_TAG, PHASES, CanarySettings, Outcome, Phase, RunState
from haven.canary.runner import BOOT, CanaryRunner
from haven.canary.sim import DEFAULT_TIMINGS, SimCanaryCloud
from haven.cloud.sim import CloudSpec, SimCloud, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind, NodeEvent
from haven.diagnosis.records import ExplanationRecord, ExplanationState
from haven.domain.clock import PacedClock, VirtualClock
from haven.domain.errors import ConfigError
from haven.domain.ids import HostName
from haven.explain.explainer import Explainer
from haven.service.metrics import HavenMetrics
from haven.store import Store
from haven.topology import openstack_topology

SETTINGS = CanarySettings(poll_s=0.25, boot_timeout_s=60.0, slow_s=20.0, delete_timeout_s=30.0)


class World:
    def __init__(
        self, store: Store, settings: CanarySettings = SETTINGS, clock: VirtualClock | None = None
    ) -> None:
        self.clock = clock or VirtualClock()
        self.cloud: SimCloud = build_cloud(CloudSpec(hosts=6, vms=0, zones=2, seed=3), self.clock)[0]
        self.nova = SimCanaryCloud(self.cloud, self.clock)
        self.store = store
        self.explainer = Explainer(store, openstack_topology(CATALOGUE.values()), self.clock)
        self.symptoms: list[ExplanationRecord] = []
        self.runner = CanaryRunner(self.nova, store, self.clock, settings, self._explain)

    async def _explain(self, record: ExplanationRecord) -> ExplanationRecord:
        self.symptoms.append(record)
        return await self.explainer.open_and_explain(record)

    async def zone_hosts(self, zone: str) -> list[HostName]:
        return [h.name for h in await self.cloud.list_hosts() if h.zone == zone]


async def test_a_round_boots_one_canary_per_zone_times_each_phase_and_deletes_it(store: Store) -> None:
    world = World(store)
    found = await world.runner.round()
    zones = sorted({h.zone for h in await world.cloud.list_hosts()})
    assert [r.zone for r in found.runs] == zones and len(zones) == 2
    assert found.ok and [p.name for p in found.probes] == ["token", "server-list"]
    assert world.nova.booted == 2 and world.nova.existing() == []  # the simulated Nova has none left
    for run in found.runs:
        assert run.outcome is Outcome.OK and run.state is RunState.DONE
        times = [run.phases[p.value] for p in PHASES]
        assert times == sorted(times)
        # Each phase is seen within one poll of when the simulated Nova reached it.
        reached = 0.0
        for phase in (Phase.SCHEDULED, Phase.IMAGE, Phase.SPAWNED, Phase.ACTIVE):
            reached += DEFAULT_TIMINGS[phase]
            assert reached <= run.phases[phase.value] <= reached + SETTINGS.poll_s + 1e-9
        server = world.nova.servers[
            next(s for s in world.nova.servers if world.nova.servers[s].name == run.server_name)
        ]
        assert run.host == server.host and server.host in await world.zone_hosts(run.zone)
    stored = store.list_canaries(BOOT)
    assert {d["id"] for d in stored} == {r.id for r in found.runs}
    assert world.symptoms == []


async def test_a_zone_without_a_live_compute_fails_in_scheduling_and_is_explained(store: Store) -> None:
    world = World(store)
    zone = sorted({h.zone for h in await world.cloud.list_hosts()})[0]
    for host in await world.zone_hosts(zone):
        await world.cloud.force_down(host, True)
    # haven's evidence: Placement went down a minute before the round (a kept notification)
    store.keep_evidence({"n-1": NodeEvent("placement-api", EvidenceKind.DOWN, world.clock.now() - 60)}, 0.0)
    found = await world.runner.round()
    failed = next(r for r in found.runs if r.zone == zone)
    assert failed.outcome is Outcome.FAILED and failed.failed_in == Phase.SCHEDULED.value
    assert "No valid host" in failed.error and not found.ok
    assert world.nova.existing() == []  # the ERROR server was deleted too
    record = store.get_explanation(f"canary:{failed.id}")
    assert record.state is ExplanationState.DONE and record.symptom.phase == "scheduling"
    assert record.diagnosis is not None
    assert record.diagnosis.explanations[0].node == "placement-api"
    assert "Placement went down" in record.diagnosis.summary
    other = next(r for r in found.runs if r.zone != zone)
    assert other.outcome is Outcome.OK
    # Nova's service list (the simulated one) showed the zone's computes down: kept as evidence.
    seen = store.evidence_between(world.clock.now() - 600, world.clock.now())
    down = {e.detail for e in seen if e.node == "nova-compute" and e.kind is EvidenceKind.DOWN}
    assert down == {
        f"nova-compute on {h} is down in Nova's service list" for h in await world.zone_hosts(zone)
    }


async def test_a_slow_canary_names_its_slowest_phase_against_its_own_history(store: Store) -> None:
    world = World(store)
    for _ in range(3):
        await world.runner.round()
    world.nova.slow(Phase.IMAGE, 30.0)  # the image takes 30 s more than usual
    found = await world.runner.round()
    assert {r.outcome for r in found.runs} == {Outcome.SLOW}
    for run in found.runs:
        assert run.failed_in == Phase.IMAGE.value
        record = store.get_explanation(f"canary:{run.id}")
        assert record.symptom.phase == "image download" and "slow" in record.symptom.what
        assert record.symptom.at == pytest.approx(run.started_at + run.phases["active"])
    assert world.nova.existing() == []


async def test_a_boot_that_never_gets_active_times_out_and_its_server_is_deleted(store: Store) -> None:
    settings = CanarySettings(zones=("az1",), poll_s=1.0, boot_timeout_s=10.0, probes=False)
    world = World(store, settings)
    world.nova.slow(Phase.SPAWNED, 1000.0)
    found = await world.runner.round()
    (run,) = found.runs
    assert run.outcome is Outcome.FAILED and run.failed_in == Phase.SPAWNED.value
    assert "not ACTIVE after 10 s (task_state spawning)" in run.error
    assert world.nova.existing() == []
    assert store.get_explanation(f"canary:{run.id}").symptom.phase == "spawn"


async def cancelled_mid_boot(store: Store, api_down: bool) -> World:
    """A boot in az1 cancelled while it waits for ACTIVE (``api_down``: the API gone at that moment)."""
    # Paced: each 1 s poll takes 10 ms, so the boot is still waiting when it is cancelled.
    world = World(store, CanarySettings(poll_s=1.0, boot_timeout_s=600.0, probes=False), PacedClock(100))
    world.nova.slow(Phase.ACTIVE, 500.0)
    task = asyncio.create_task(world.runner.boot_one("az1"))
    while not world.nova.servers:
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    world.nova.api_down = api_down
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return world


async def test_a_run_cancelled_mid_boot_still_asks_for_the_delete(store: Store) -> None:
    world = await cancelled_mid_boot(store, api_down=False)
    world.clock.advance_to(world.clock.now() + 5)
    assert world.nova.existing() == []


async def test_an_engine_stopped_mid_boot_leaves_nothing_after_the_next_round(store: Store) -> None:
    first = await cancelled_mid_boot(store, api_down=True)  # the engine dies with its delete unsent
    assert len(first.nova.existing()) == 1
    (left,) = store.list_canaries(BOOT)
    assert left["state"] == RunState.BOOTING.value
    # A new engine on the same cloud and store: its first round deletes the orphan first.
    first.nova.heal()
    second = CanaryRunner(first.nova, store, first.clock, CanarySettings(zones=("az1",), probes=False))
    found = await second.round()
    assert [f.name for f in found.cleaned] == [left["server_name"]]
    first.clock.advance_to(first.clock.now() + 5)
    assert first.nova.existing() == []
    states = {d["id"]: d["state"] for d in store.list_canaries(BOOT)}
    assert states[left["id"]] == RunState.ABANDONED.value and list(states.values()).count("done") == 1


async def test_another_havens_canaries_are_not_touched(store: Store) -> None:
    world = World(store, CanarySettings(zones=("az1",), probes=False))
    other = await world.nova.boot("haven-canary-theirs", "az1", "", "", "none", {CANARY_TAG: "other"})
    await world.runner.round()
    assert [s.id for s in world.nova.existing()] == [other]


async def test_failed_probes_are_symptoms_too(store: Store) -> None:
    world = World(store, CanarySettings(zones=("az1",)))
    world.nova.identity_down = True
    found = await world.runner.round()
    token, servers = found.probes
    assert not token.ok and "Keystone" in token.error and servers.ok
    (record,) = [s for s in world.symptoms if s.source == "probe:token"]
    assert store.get_explanation(record.id).symptom.node == "keystone"


async def test_metrics_show_the_latest_run_of_each_zone(store: Store) -> None:
    world = World(store)
    found = await world.runner.round()
    text = HavenMetrics(store).exposition().decode()
    run = found.runs[0]
    active = run.phases["active"] - run.phases["spawned"]
    assert f'haven_canary_phase_seconds{{phase="active",zone="{run.zone}"}} {active}' in text
    assert f'haven_canary_success{{zone="{run.zone}"}} 1.0' in text
    assert 'haven_api_probe_success{probe="token"} 1.0' in text


def test_the_canary_section_is_validated() -> None:
    config = parse_canary(
        {"flavor": "m1.tiny", "image": "abc", "zones": ["az1"], "slow_s": 30.0}, "haven.toml"
    )
    assert config.enabled and config.settings.zones == ("az1",) and config.settings.slow_s == 30.0
    assert not parse_canary(None, "haven.toml").enabled
    with pytest.raises(ConfigError, match=r"haven.toml \[canary\]: interval_s"):
        parse_canary({"interval_s": 0.0}, "haven.toml")
    with pytest.raises(ConfigError, match="flavr"):
        parse_canary({"flavr": "x"}, "haven.toml")
    with pytest.raises(ConfigError, match="flavor and image missing"):
        require_real(parse_canary({}, "haven.toml"), "haven.toml")


async def test_a_zone_list_that_fails_is_a_symptom_not_the_end_of_the_round(store: Store) -> None:
    world = World(store)  # no zones configured: the round asks Nova for them
    world.nova.api_down = True
    found = await world.runner.round()
    assert found.runs == () and world.nova.booted == 0
    assert [p.name for p in found.probes if not p.ok] == ["server-list", "zones"]
    (record,) = [s for s in world.symptoms if s.source == "probe:zones"]
    stored = store.get_explanation(record.id)
    assert stored.symptom.node == "nova-api" and stored.symptom.phase == "api"
    assert "503" in stored.symptom.what and stored.diagnosis is not None
    world.nova.heal()
    assert (await world.runner.round()).ok  # the next round boots again
