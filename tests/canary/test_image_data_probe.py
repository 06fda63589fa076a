"""The canary reads its image's data from Glance (probe ``image-data``): a store gone or a download route
answering 500 fails no boot where the hypervisor never downloads (the lab's fake driver), so only this
probe sees it (issue 13: glance-store-gone and glance-download-500 had no symptom). Judged from the
ranking the real explainer stored for the probe's symptom, on the simulated cloud and virtual time."""

from __future__ import annotations

import pytest

from haven.canary.model import CanarySettings
from haven.canary.runner import IMAGE_DATA, VIA_COMPUTE, CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.cloud.sim import CloudSpec, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import VirtualClock
from haven.explain.explainer import Explainer
from haven.store import Store
from haven.topology import openstack_topology


class World:
    def __init__(self, store: Store, settings: CanarySettings) -> None:
        self.clock = VirtualClock()
        cloud = build_cloud(CloudSpec(hosts=4, vms=0, zones=1, seed=3), self.clock)[0]
        self.nova = SimCanaryCloud(cloud, self.clock)
        self.explainer = Explainer(store, openstack_topology(CATALOGUE.values()), self.clock)
        self.symptoms: list[ExplanationRecord] = []
        self.runner = CanaryRunner(self.nova, store, self.clock, settings, self._explain)

    async def _explain(self, record: ExplanationRecord) -> ExplanationRecord:
        self.symptoms.append(record)
        return await self.explainer.open_and_explain(record)


@pytest.mark.parametrize(
    ("error", "served", "words"),
    [
        ("download image img-1: haven drill fault: this route answers 500 (HTTP 500)", 1024, "HTTP 500"),
        ("", 0, "Glance served no data for the active image img-1"),  # Glance's 204: the store's file gone
    ],
)
async def test_a_download_that_fails_is_a_symptom_explained_by_glance(
    store: Store, error: str, served: int, words: str
) -> None:
    world = World(store, CanarySettings(image="img-1", poll_s=0.25, boot_timeout_s=60.0))
    assert (await world.runner.round()).ok
    world.clock.advance_to(world.clock.now() + 60.0)
    world.nova.image_data_error, world.nova.image_bytes = error, served
    found = await world.runner.round()
    assert all(r.outcome.value == "ok" for r in found.runs)  # the boot passed: nothing downloaded it
    (probe,) = [p for p in found.probes if p.name == IMAGE_DATA]
    assert not probe.ok and words in probe.error
    (record,) = [s for s in world.symptoms if s.source == f"probe:{IMAGE_DATA}"]
    diagnosis = store.get_explanation(record.id).diagnosis
    assert diagnosis is not None and diagnosis.symptom.phase == "image download"
    assert diagnosis.explanations[0].node == "glance-api"
    assert words in diagnosis.summary
    # Healed: the probe passes, Glance is seen working in that scope and the round is whole again.
    world.nova.heal()
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok
    glance = [e for e in store.evidence_between(0.0, world.clock.now()) if e.scope == f"probe:{IMAGE_DATA}"]
    assert [e.kind for e in glance][-2:] == [EvidenceKind.ERROR, EvidenceKind.HEALTHY]


async def test_no_canary_image_no_data_probe(store: Store) -> None:
    world = World(store, CanarySettings(poll_s=0.25, boot_timeout_s=60.0))
    world.nova.image_data_error = "would fail"
    found = await world.runner.round()
    assert found.ok and IMAGE_DATA not in {p.name for p in found.probes}


async def test_a_slow_path_from_novas_api_to_glance_is_glances_as_nova_reaches_it(store: Store) -> None:
    """nova-api-glance-slow's miss: only Nova's API waits on Glance, so Glance answers haven (its endpoint,
    the image) and Nova's API answers its server list; the boot times out in Nova's API and nothing named
    a cause. The image asked through Nova's image proxy is that path."""
    settings = CanarySettings(image="img-1", poll_s=0.25, boot_timeout_s=60.0, endpoint_timeout_s=3.0)
    world = World(store, settings)
    assert (await world.runner.round()).ok
    world.clock.advance_to(world.clock.now() + 60.0)
    world.nova.compute_to_image_s = 8.0
    (failed,) = (await world.runner.round()).runs
    assert failed.outcome.value == "failed" and "timed out" in failed.error
    diagnosis = store.get_explanation(f"canary:{failed.id}").diagnosis
    assert diagnosis is not None and diagnosis.symptom.phase == "api"
    assert diagnosis.explanations[0].node == "glance-api"
    assert "Nova's API could not get the canary image from it in time (it took 8.00 s)" in diagnosis.summary
    world.nova.heal()
    world.clock.advance_to(world.clock.now() + 60.0)
    assert (await world.runner.round()).ok
    path = [e for e in store.evidence_between(0.0, world.clock.now()) if e.scope == VIA_COMPUTE]
    assert [e.kind for e in path][-2:] == [EvidenceKind.ERROR, EvidenceKind.HEALTHY]


async def test_novas_api_slow_by_itself_says_nothing_of_glance(store: Store) -> None:
    """The path is evidence only while each end answers alone in time: Nova's API down is not Glance's."""
    settings = CanarySettings(image="img-1", poll_s=0.25, boot_timeout_s=60.0, endpoint_timeout_s=3.0)
    world = World(store, settings)
    world.nova.api_down = True
    await world.runner.round()
    assert not [e for e in store.evidence_between(0.0, world.clock.now()) if e.scope == VIA_COMPUTE]


async def test_a_loaded_host_that_slows_both_ends_is_no_slow_path(store: Store) -> None:
    """Nova's API slow by itself (its server list and the image through it 4 s each): no more than the ends
    took alone, so no ERROR of Glance; HEALTHY in that scope."""
    settings = CanarySettings(image="img-1", poll_s=0.25, boot_timeout_s=60.0, endpoint_timeout_s=3.0)
    world = World(store, settings)
    world.nova.api_delay_s = 4.0
    await world.runner.round()
    path = [e for e in store.evidence_between(0.0, world.clock.now()) if e.scope == VIA_COMPUTE]
    assert path and all(e.kind is EvidenceKind.HEALTHY for e in path)
