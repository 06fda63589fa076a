"""Canaries on the real lab Nova (the session's lab, tests/servers/nova.py): a round boots in the lab's
zone through the real scheduler, times each phase, deletes what an earlier run left, and leaves no canary
server behind, judged from Nova's own server list; a boot Nova cannot place fails in scheduling and
becomes a symptom."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from haven.canary.model import CANARY_PREFIX, CANARY_TAG, PHASES, CanarySettings, Outcome, Phase
from haven.canary.runner import CanaryRunner
from haven.cloud.openstack.canary import NovaCanary, open_canary
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import RealClock
from haven.store import Store
from servers.nova import NovaLab

pytestmark = [pytest.mark.nova, pytest.mark.slow]


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout_s} s for {what}"
        time.sleep(0.5)


@pytest.fixture
def canary(nova_lab: NovaLab) -> Iterator[NovaCanary]:
    opened = open_canary("lab", clouds_yaml=nova_lab.clouds_yaml)
    yield opened
    opened.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'haven.db'}")
    yield opened
    opened.close()


def canary_names(nova_lab: NovaLab) -> list[str]:
    cloud = nova_lab.connect()
    return [s.name for s in cloud.compute.servers() if s.name.startswith(CANARY_PREFIX)]


async def test_a_round_on_real_nova_times_each_phase_and_leaves_no_canary(
    nova_lab: NovaLab, canary: NovaCanary, store: Store
) -> None:
    cloud = nova_lab.connect("2.37")
    flavor = cloud.compute.find_flavor(nova_lab.flavor)
    orphan = cloud.compute.create_server(
        name=f"{CANARY_PREFIX}left-{uuid.uuid4().hex[:6]}",
        image_id=nova_lab.image_id,
        flavor_id=flavor.id,
        networks="none",
        metadata={CANARY_TAG: "haven"},
    )  # fmt: skip  (what an engine that died mid-run left)
    settings = CanarySettings(flavor=nova_lab.flavor, image=nova_lab.image_id, poll_s=0.2, boot_timeout_s=120)
    runner = CanaryRunner(canary, store, RealClock(), settings)
    found = await runner.round()
    assert orphan.id in {f.id for f in found.cleaned}
    names = [p.name for p in found.probes]
    assert names[:2] == ["token", "server-list"] and all(p.ok for p in found.probes)
    # The lab's catalog: Keystone, Nova, Glance and Placement each answered their version document.
    assert {"endpoint:identity", "endpoint:compute", "endpoint:image", "endpoint:placement"} <= set(names)
    (run,) = found.runs  # the lab has one zone
    assert run.outcome is Outcome.OK, run.error
    times = [run.phases[p.value] for p in PHASES]
    assert times == sorted(times) and times[-1] < 120
    assert run.host in nova_lab.hosts
    # Nova's own view: the canary's server is gone (404) and the orphan goes too.
    wait_for(lambda: canary_names(nova_lab) == [], 60, "Nova to delete every canary server")


async def test_a_boot_nova_cannot_place_fails_in_scheduling_and_is_a_symptom(
    nova_lab: NovaLab, canary: NovaCanary, store: Store
) -> None:
    cloud = nova_lab.connect()
    huge = cloud.compute.create_flavor(
        name=f"canary-huge-{uuid.uuid4().hex[:6]}", ram=8_000_000, vcpus=1, disk=1
    )
    symptoms: list[ExplanationRecord] = []

    async def keep(record: ExplanationRecord) -> None:
        symptoms.append(record)

    try:
        settings = CanarySettings(flavor=huge.name, image=nova_lab.image_id, poll_s=0.2, boot_timeout_s=120,
                                  probes=False)  # fmt: skip
        found = await CanaryRunner(canary, store, RealClock(), settings, keep).round()
    finally:
        cloud.compute.delete_flavor(huge)
    (run,) = found.runs
    assert run.outcome is Outcome.FAILED and run.failed_in == Phase.SCHEDULED.value
    assert "No valid host" in run.error
    (symptom,) = symptoms
    assert symptom.symptom.phase == "scheduling" and symptom.id == f"canary:{run.id}"
    wait_for(lambda: canary_names(nova_lab) == [], 60, "Nova to delete the ERROR canary")
