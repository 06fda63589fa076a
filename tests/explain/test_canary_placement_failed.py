"""Placement answering 500 to allocation candidates (the catalogue's placement-candidates-500) is evidence on
Placement, and a boot refused for no host then names it; any other failure of the room check is not
(judged from the ranking stored for the canary's symptom, on the simulated cloud and virtual time)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from keystoneauth1 import exceptions as ksa_exc

from haven.canary.model import CanarySettings, Outcome
from haven.canary.runner import PLACEMENT_FAILED, PLACEMENT_SILENT, ROOM_ANSWER, CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.cloud.openstack.canary import NovaCanary
from haven.cloud.sim import CloudSpec, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import VirtualClock
from haven.domain.errors import TemporaryError
from haven.explain.explainer import Explainer
from haven.store import Store
from haven.topology import openstack_topology


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open("sqlite://")
    yield opened
    opened.close()


class FailingRoom(SimCanaryCloud):
    """Placement's allocation candidates fail with ``error`` (as the OpenStack driver raises it); a boot
    then gets no host, as Nova's scheduler does when Placement answers it 500."""

    error = ""

    async def placement_room(self, flavor: str) -> int:
        raise TemporaryError(self.error, 1.0)


@pytest.mark.parametrize(
    ("error", "blamed"),
    [
        (f"ask Placement for room: {PLACEMENT_FAILED} 500 to allocation candidates", "placement-api"),
        (
            f"ask Placement for room: {PLACEMENT_SILENT} allocation candidates in time (Request to "
            "http://127.0.0.1:36129/allocation_candidates timed out)",
            "placement-api",
        ),
        (
            "ask Placement for room: cannot reach the cloud: Request to "
            "http://127.0.0.1:48609/v3/auth/tokens timed out",
            None,
        ),
        ("ask Placement for room: Keystone answered 503: Service Unavailable", None),
    ],
)
async def test_a_placement_500_is_placements_error_and_nothing_else_is(
    store: Store, error: str, blamed: str | None
) -> None:
    clock = VirtualClock()
    cloud = build_cloud(CloudSpec(hosts=4, vms=0, zones=1, seed=3), clock)[0]
    nova = FailingRoom(cloud, clock)
    nova.error = error
    nova.room = 0  # the boot: No valid host (the scheduler's candidates failed)
    explainer = Explainer(store, openstack_topology(CATALOGUE.values()), clock)
    symptoms: list[ExplanationRecord] = []

    async def explain(record: ExplanationRecord) -> ExplanationRecord:
        symptoms.append(record)
        return await explainer.open_and_explain(record)

    settings = CanarySettings(
        zones=("az1",), flavor="m1.tiny", image="img-1", poll_s=0.25, boot_timeout_s=60.0
    )
    (failed,) = (await CanaryRunner(nova, store, clock, settings, explain).round()).runs
    assert failed.outcome is Outcome.FAILED and "No valid host" in failed.error
    kept = [
        e
        for e in store.evidence_between(0.0, clock.now() + 1.0)
        if e.node == "placement-api" and e.scope in ("room", ROOM_ANSWER)
    ]
    diagnosis = store.get_explanation(f"canary:{failed.id}").diagnosis
    assert diagnosis is not None
    if blamed is None:
        assert kept == []
        assert "placement-api" not in [e.node for e in diagnosis.explanations][:1]
    else:
        assert kept and {e.kind for e in kept} == {EvidenceKind.ERROR} and error in kept[0].detail
        # its 500 is its own state; its silence may be a dependency's victim (review R3-D1 of ea55841)
        assert {e.scope for e in kept} == {ROOM_ANSWER if PLACEMENT_SILENT in error else "room"}
        assert diagnosis.explanations[0].node == blamed
        assert "allocation candidates failed" in diagnosis.summary


class _Session:
    def get_token(self) -> str:
        return "token"


class _SilentPlacement:
    """openstacksdk's Connection as NovaCanary._room uses it: Nova's flavor answers, Placement times out."""

    session = _Session()

    class compute:
        @staticmethod
        def get(path: str, **_: object) -> object:
            class Answer:
                status_code, content = 200, b"{}"

                @staticmethod
                def json() -> dict[str, object]:
                    return {"flavor": {"vcpus": 1, "ram": 64, "disk": 0}}

            return Answer()

    class placement:
        @staticmethod
        def get(path: str, **_: object) -> object:
            raise ksa_exc.ConnectTimeout(f"Request to http://127.0.0.1:36129{path} timed out")


def test_placement_silent_to_allocation_candidates_is_worded_as_placement_s() -> None:
    # placement-cpu-starved (2026-12-07, lab): Placement held to 0.1 % of a CPU still answered its version
    # document, but the room check got no answer in its 10 s: before, a timeout named nothing.
    canary = NovaCanary(_SilentPlacement(), None)  # type: ignore[arg-type]
    with pytest.raises(TemporaryError) as raised:
        canary._room("f1")
    assert PLACEMENT_SILENT in str(raised.value) and "timed out" in str(raised.value)
