"""Evidence the canary reads (haven.canary.runner.observe and its probes) explains its own failures: judged
from the ranking stored for the canary's symptom, on the simulated cloud and virtual time (issue 13: the lab
bench's misses: a failed probe explained by nothing, a zone whose computes are all disabled, the canary
image deactivated or deleted)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from haven.canary.model import CanarySettings, Outcome, Phase
from haven.canary.runner import CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.cloud.sim import CloudSpec, SimCloud, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import VirtualClock
from haven.domain.errors import TemporaryError
from haven.domain.ids import HostName
from haven.explain.explainer import Explainer
from haven.store import Store
from haven.topology import openstack_topology


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open("sqlite://")
    yield opened
    opened.close()


class World:
    def __init__(self, store: Store, settings: CanarySettings | None = None) -> None:
        self.clock = VirtualClock()
        self.cloud: SimCloud = build_cloud(CloudSpec(hosts=6, vms=0, zones=2, seed=3), self.clock)[0]
        self.nova = SimCanaryCloud(self.cloud, self.clock)
        self.explainer = Explainer(store, openstack_topology(CATALOGUE.values()), self.clock)
        self.symptoms: list[ExplanationRecord] = []
        self.runner_settings = settings or CanarySettings(poll_s=0.25, boot_timeout_s=60.0, slow_s=20.0)
        self.runner = CanaryRunner(self.nova, store, self.clock, self.runner_settings, self._explain)

    async def _explain(self, record: ExplanationRecord) -> ExplanationRecord:
        self.symptoms.append(record)
        return await self.explainer.open_and_explain(record)

    async def zone_hosts(self, zone: str) -> list[HostName]:
        return [h.name for h in await self.cloud.list_hosts() if h.zone == zone]


async def test_a_failed_probe_is_evidence_on_its_own_node(store: Store) -> None:
    world = World(store, CanarySettings(zones=("az1",)))
    world.nova.identity_down = True
    await world.runner.round()
    (record,) = [s for s in world.symptoms if s.source == "probe:token"]
    diagnosis = store.get_explanation(record.id).diagnosis
    assert diagnosis is not None and diagnosis.explanations[0].node == "keystone"
    assert "token failed" in diagnosis.summary and "Keystone" in diagnosis.summary
    world.nova.heal()
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok
    # The passing probe ended Keystone's failure: a later symptom does not blame it.
    later = store.evidence_between(world.clock.now() - 70.0, world.clock.now())
    kinds = [(e.node, e.kind) for e in later if e.node == "keystone"]
    assert kinds[0] == ("keystone", EvidenceKind.ERROR) and kinds[-1] == ("keystone", EvidenceKind.HEALTHY)


async def test_every_compute_of_a_zone_disabled_is_the_evidence_a_lone_disabled_one_is_not(
    store: Store,
) -> None:
    world = World(store)
    zones = sorted({h.zone for h in await world.cloud.list_hosts()})
    closed, open_ = zones[0], zones[1]
    for host in await world.zone_hosts(closed):
        await world.cloud.disable_service(host, "maintenance never ended")
    lone = (await world.zone_hosts(open_))[0]
    await world.cloud.disable_service(lone, "disk swap")
    found = await world.runner.round()
    failed = next(r for r in found.runs if r.zone == closed)
    assert failed.outcome is Outcome.FAILED and "No valid host" in failed.error
    assert next(r for r in found.runs if r.zone == open_).outcome is Outcome.OK
    diagnosis = store.get_explanation(f"canary:{failed.id}").diagnosis
    assert diagnosis is not None and diagnosis.explanations[0].node == "nova-compute"
    assert "maintenance never ended" in diagnosis.summary
    seen = store.evidence_between(world.clock.now() - 600, world.clock.now())
    hosts = {e.detail.split(" on ")[1].split(" ")[0] for e in seen if "disabled" in e.detail}
    assert hosts == set(await world.zone_hosts(closed))  # not the lone one beside working hosts


@pytest.mark.parametrize("status", ["deactivated", "missing"])
async def test_a_canary_image_not_active_is_glances_error(store: Store, status: str) -> None:
    world = World(store, CanarySettings(zones=("az1",), image="img-1"))
    world.nova.image = status  # an operator deactivated or deleted it in Glance
    (failed,) = (await world.runner.round()).runs
    assert failed.outcome is Outcome.FAILED and failed.failed_in == Phase.ACCEPTED.value
    assert world.nova.booted == 0  # refused by the API: nothing was built
    diagnosis = store.get_explanation(f"canary:{failed.id}").diagnosis
    assert diagnosis is not None and diagnosis.symptom.phase == "image download"
    assert diagnosis.explanations[0].node == "glance-api"
    assert f"the canary image img-1 is {status}" in diagnosis.summary
    world.nova.heal()
    assert (await world.runner.round()).ok


async def test_computes_seen_up_again_are_no_cause_of_a_later_failure(store: Store) -> None:
    world = World(store, CanarySettings(zones=("az1",), image="img-1", poll_s=0.25, boot_timeout_s=60.0))
    hosts = await world.zone_hosts("az1")
    for host in hosts:
        await world.cloud.force_down(host, True)
    (first,) = (await world.runner.round()).runs
    before = store.get_explanation(f"canary:{first.id}").diagnosis
    assert before is not None and before.explanations[0].node == "nova-compute"
    for host in hosts:
        await world.cloud.force_down(host, False)
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok  # Nova's list shows every compute up: seen working
    world.clock.advance_to(world.clock.now() + 60.0)
    world.nova.image = "deactivated"  # another fault, within the 10-minute window of the first
    (later,) = (await world.runner.round()).runs
    after = store.get_explanation(f"canary:{later.id}").diagnosis
    assert after is not None and [e.node for e in after.explanations] == ["glance-api"]


class CataloguedNova(SimCanaryCloud):
    """The simulated Nova with a service catalog whose version documents always answer (as a Keystone
    that cannot reach its database still serves its own)."""

    async def endpoints(self) -> Mapping[str, str]:
        assert isinstance(self.clock, VirtualClock)
        self.clock.advance_to(self.clock.now() + 0.2)  # reading the catalog takes time: after the probes
        return {"identity": "http://keystone.sim/v3", "placement": "http://placement.sim"}

    async def probe_endpoint(self, url: str, timeout_s: float) -> None:
        return None


async def test_a_version_document_does_not_end_a_failure_of_a_real_call(store: Store) -> None:
    world = World(store, CanarySettings(zones=("az1",), poll_s=0.25, boot_timeout_s=60.0))
    world.nova = CataloguedNova(world.cloud, world.clock)
    world.runner = CanaryRunner(world.nova, store, world.clock, world.runner_settings, world._explain)
    world.nova.identity_down = True  # tokens fail: Placement cannot check them, nothing is placed
    world.nova.fail(Phase.SCHEDULED, "NoValidHost: No valid host was found. ")
    (failed,) = (await world.runner.round()).runs
    diagnosis = store.get_explanation(f"canary:{failed.id}").diagnosis
    assert diagnosis is not None and diagnosis.symptom.phase == "scheduling"
    assert diagnosis.explanations[0].node == "keystone"  # not ended by its endpoint's answer
    # Placement's endpoint answered and no real call to it failed: it is seen working.
    seen = store.evidence_between(world.clock.now() - 600, world.clock.now())
    assert {e.kind for e in seen if e.node == "placement-api"} == {EvidenceKind.HEALTHY}


async def test_placement_without_room_explains_no_valid_host(store: Store) -> None:
    settings = CanarySettings(
        zones=("az1",), flavor="m1.tiny", image="img-1", poll_s=0.25, boot_timeout_s=60.0
    )
    world = World(store, settings)
    world.nova.room = 0  # every compute's inventory used up (or reserved): no allocation candidate
    (failed,) = (await world.runner.round()).runs
    assert failed.outcome is Outcome.FAILED and "No valid host" in failed.error
    diagnosis = store.get_explanation(f"canary:{failed.id}").diagnosis
    assert diagnosis is not None and diagnosis.symptom.phase == "scheduling"
    assert [e.node for e in diagnosis.explanations] == ["placement-api"]
    assert "no room for the canary's flavor m1.tiny" in diagnosis.summary
    world.nova.heal()
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok
    world.clock.advance_to(world.clock.now() + 60.0)
    world.nova.image = "deactivated"  # a later fault: Placement's room again ended its error
    (later,) = (await world.runner.round()).runs
    after = store.get_explanation(f"canary:{later.id}").diagnosis
    assert after is not None and [e.node for e in after.explanations] == ["glance-api"]


class DatabaselessNova(SimCanaryCloud):
    """Nova's API up, its database gone: its answers are 500s naming oslo.db's exception."""

    async def list_servers(self) -> int:
        raise TemporaryError(
            "list servers: Unexpected API Error. Please contact the administrator\n"
            "<class 'oslo_db.exception.DBConnectionError'> (HTTP 500)",
            1.0,
        )


async def test_an_api_error_naming_the_database_blames_the_database(store: Store) -> None:
    world = World(store, CanarySettings(zones=("az1",)))
    world.nova = DatabaselessNova(world.cloud, world.clock)
    world.runner = CanaryRunner(world.nova, store, world.clock, world.runner_settings, world._explain)
    await world.runner.round()
    (record,) = [s for s in world.symptoms if s.source == "probe:server-list"]
    diagnosis = store.get_explanation(record.id).diagnosis
    assert diagnosis is not None
    assert [e.node for e in diagnosis.explanations] == ["mariadb", "nova-api"]  # the deepest cause first
    assert "server-list failed on it" in diagnosis.explanations[0].text


async def test_a_named_database_error_ends_when_the_same_check_passes(store: Store) -> None:
    world = World(store, CanarySettings(zones=("az1",)))
    broken = CanaryRunner(
        DatabaselessNova(world.cloud, world.clock), store, world.clock, world.runner_settings, world._explain
    )
    await broken.round()  # the database named by the server list's 500
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok  # the server list passes again: the database served it
    world.clock.advance_to(world.clock.now() + 60.0)
    world.nova.identity_down = True  # a later, unrelated failure within the 10-minute window
    await world.runner.round()
    (record,) = [s for s in world.symptoms if s.source == "probe:token"]
    diagnosis = store.get_explanation(record.id).diagnosis
    assert diagnosis is not None and [e.node for e in diagnosis.explanations] == ["keystone"]


async def test_a_zone_list_that_works_again_ends_its_failure(store: Store) -> None:
    world = World(store)  # no zones configured: each round lists them
    world.nova.api_down = True
    await world.runner.round()  # server list and zone list fail: nova-api's errors
    world.nova.heal()
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok
    world.clock.advance_to(world.clock.now() + 60.0)
    world.nova.identity_down = True  # a later, unrelated failure within the 10-minute window
    await world.runner.round()
    (record,) = [s for s in world.symptoms if s.source == "probe:token"]
    diagnosis = store.get_explanation(record.id).diagnosis
    assert diagnosis is not None and [e.node for e in diagnosis.explanations] == ["keystone"]


async def test_the_canary_image_active_again_ends_glances_error(store: Store) -> None:
    # The lab's catalogue (2026-12-06): the image deactivated, then reactivated; six minutes later every
    # compute disabled: Glance's old error, never ended, was ranked first.
    world = World(store, CanarySettings(zones=("az1",), image="img-1", poll_s=0.25, boot_timeout_s=60.0))
    world.nova.image = "deactivated"
    (first,) = (await world.runner.round()).runs
    assert first.outcome is Outcome.FAILED
    world.nova.heal()
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok  # the image active again: seen working in its scope
    world.clock.advance_to(world.clock.now() + 300.0)
    for host in await world.zone_hosts("az1"):
        await world.cloud.disable_service(host, "maintenance never ended")
    (later,) = (await world.runner.round()).runs
    after = store.get_explanation(f"canary:{later.id}").diagnosis
    assert after is not None and [e.node for e in after.explanations] == ["nova-compute"]


async def test_computes_enabled_again_end_their_disabled_error(store: Store) -> None:
    # The lab's catalogue (2026-12-06): computes-disabled, healed; ten minutes of later faults (Glance hung)
    # were still explained by the computes "disabled" from before.
    world = World(store, CanarySettings(zones=("az1",), image="img-1", poll_s=0.25, boot_timeout_s=60.0))
    hosts = await world.zone_hosts("az1")
    for host in hosts:
        await world.cloud.disable_service(host, "maintenance never ended")
    (first,) = (await world.runner.round()).runs
    before = store.get_explanation(f"canary:{first.id}").diagnosis
    assert before is not None and before.explanations[0].node == "nova-compute"
    for host in hosts:
        await world.cloud.enable_service(host)
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok
    world.clock.advance_to(world.clock.now() + 60.0)
    world.nova.image = "deactivated"
    (later,) = (await world.runner.round()).runs
    after = store.get_explanation(f"canary:{later.id}").diagnosis
    assert after is not None and [e.node for e in after.explanations] == ["glance-api"]
