"""An operation probe that fails while every service it needs that the canary can check answered blames
what no check covers (haven.canary.unseen): Nova's server list timing out while Keystone issued a token
and Nova's API, Neutron and the others answered their endpoints is the database (MariaDB), the catalogue's
database-slow without the control plane's SQL probe. Judged from the ranking the explainer stored for the
round's symptoms, on the simulated cloud and virtual time, through the real runner, explainer and store."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from haven.canary.model import CanarySettings
from haven.canary.runner import CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.canary.unseen import left_to_blame, no_answer, probe_needs
from haven.cloud.sim import CloudSpec, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis import EvidenceKind
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import VirtualClock
from haven.domain.errors import NotFound, TemporaryError
from haven.explain.explainer import Explainer
from haven.store import Store
from haven.topology import openstack_topology

TOPOLOGY = openstack_topology(CATALOGUE.values())
CATALOG = {
    kind: f"http://127.0.0.1/{kind}" for kind in ("identity", "compute", "image", "placement", "network")
}


class SlowDatabase(SimCanaryCloud):
    """Nova's reads time out (its database answers too slowly); its endpoint (no database) answers unless
    ``endpoint_down`` names it; Keystone's token as ``identity_down`` says."""

    endpoint_down: frozenset[str] = frozenset()
    reads_fail = True

    async def endpoints(self) -> Mapping[str, str]:
        return CATALOG

    async def probe_endpoint(self, url: str, timeout_s: float) -> None:
        if url.rsplit("/", 1)[1] in self.endpoint_down:
            raise TemporaryError(f"{url} did not answer within {timeout_s:g} s", 1.0)

    async def list_servers(self) -> int:
        if self.reads_fail:
            await self.clock.sleep_until(self.clock.now() + 10.0)
            raise TemporaryError("list servers: Request to nova-api /v2.1/servers timed out", 1.0)
        return await super().list_servers()

    async def zones(self) -> list[str]:
        if self.reads_fail:
            await self.clock.sleep_until(self.clock.now() + 10.0)
            raise TemporaryError("zones: Request to nova-api /v2.1/os-services timed out", 1.0)
        return list(await super().zones())

    async def image_via_compute(self, image: str) -> None:
        raise NotFound("not asked here")


async def _round(store: Store, nova: SimCanaryCloud, clock: VirtualClock) -> list[ExplanationRecord]:
    explainer = Explainer(store, TOPOLOGY, clock)
    symptoms: list[ExplanationRecord] = []

    async def explain(record: ExplanationRecord) -> ExplanationRecord:
        symptoms.append(await explainer.open_and_explain(record))
        return symptoms[-1]

    settings = CanarySettings(flavor="m1.tiny", image="img-1", poll_s=0.5, boot_timeout_s=30.0)
    runner = CanaryRunner(
        nova, store, clock, settings, explain, needs=probe_needs(TOPOLOGY), on_refine=explainer.refine
    )
    await runner.round()
    # as stored now: each symptom was explained when its check ended, and again after the round's look
    return [store.get_explanation(s.id) for s in symptoms]


def _cloud(clock: VirtualClock) -> SlowDatabase:
    return SlowDatabase(build_cloud(CloudSpec(hosts=2, vms=0, zones=1, seed=3), clock)[0], clock)


async def test_nova_reads_failing_while_the_rest_answers_blame_the_database(store: Store) -> None:
    clock = VirtualClock()
    symptoms = await _round(store, _cloud(clock), clock)
    judged = {s.source: s for s in symptoms}
    assert set(judged) == {"probe:server-list", "probe:zones"}
    for record in judged.values():
        assert record.diagnosis is not None
        ranked = [e.node for e in record.diagnosis.explanations]
        assert ranked[:2] == ["mariadb", "nova-api"], ranked  # nova-api: the database's victim
        assert "answered haven" in record.diagnosis.explanations[0].text
    kept = [e for e in store.evidence_between(0.0, clock.now() + 1)
            if e.node == "mariadb" and e.scope.startswith("unseen:")]  # fmt: skip
    assert {e.kind for e in kept} == {EvidenceKind.ERROR}
    assert {e.scope for e in kept} == {"unseen:server-list", "unseen:zones"}


@pytest.mark.parametrize(
    ("endpoint_down", "identity_down", "first"),
    [
        (frozenset({"compute"}), False, "nova-api"),  # nova-api itself not answering: its own evidence
        (frozenset(), True, "keystone"),  # no token: nothing seen of Keystone, no guess
    ],
)
async def test_a_need_the_canary_checks_not_seen_working_blames_nothing_unseen(
    store: Store, endpoint_down: frozenset[str], identity_down: bool, first: str
) -> None:
    clock = VirtualClock()
    nova = _cloud(clock)
    nova.endpoint_down, nova.identity_down = endpoint_down, identity_down
    symptoms = await _round(store, nova, clock)
    assert not [e for e in store.evidence_between(0.0, clock.now() + 1)
                if e.node == "mariadb" and e.kind is EvidenceKind.ERROR]  # fmt: skip
    judged = sorted(symptoms, key=lambda s: s.symptom.at)[0]
    assert judged.diagnosis is not None and judged.diagnosis.explanations[0].node == first


async def test_the_list_passing_again_ends_the_databases_error(store: Store) -> None:
    clock = VirtualClock()
    nova = _cloud(clock)
    await _round(store, nova, clock)
    nova.reads_fail = False
    await _round(store, nova, clock)
    ended = [e for e in store.evidence_between(0.0, clock.now() + 1) if e.node == "mariadb"
             and e.kind is EvidenceKind.HEALTHY and e.scope.startswith("unseen:")]  # fmt: skip
    assert {e.scope for e in ended} == {"unseen:server-list", "unseen:zones"}


def test_left_to_blame_is_what_no_check_covers() -> None:
    needs = probe_needs(TOPOLOGY)["server-list"]
    checked = frozenset({"keystone", "nova-api", "neutron-server", "haproxy", "glance-api"})
    seen = {"keystone": "issued a token", "nova-api": "answered", "neutron-server": "answered",
            "haproxy": "forwarded"}  # fmt: skip
    assert left_to_blame(needs, seen, checked) == ("mariadb",)
    assert left_to_blame(needs, {k: v for k, v in seen.items() if k != "neutron-server"}, checked) == ()
    assert left_to_blame(needs, {**seen, "mariadb": "served a list"}, checked) == ()


class NovaApiBroken(SlowDatabase):
    """Nova's API answers its reads with its own 500 (naming no dependency), or drops the connection."""

    answer = (
        "list servers: Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ (HTTP 500)"
    )

    async def list_servers(self) -> int:
        raise TemporaryError(self.answer, 1.0)

    async def zones(self) -> list[str]:
        raise TemporaryError(self.answer.replace("list servers", "zones"), 1.0)


@pytest.mark.parametrize(
    "answer",
    [
        NovaApiBroken.answer,
        "list servers: cannot reach the cloud: Connection aborted: RemoteDisconnected (a replica killed)",
    ],
)
async def test_an_answered_error_or_a_dropped_connection_blames_nothing_unseen(
    store: Store, answer: str
) -> None:
    clock = VirtualClock()
    nova = NovaApiBroken(build_cloud(CloudSpec(hosts=2, vms=0, zones=1, seed=3), clock)[0], clock)
    nova.answer = answer
    symptoms = await _round(store, nova, clock)
    assert not [e for e in store.evidence_between(0.0, clock.now() + 1)
                if e.node == "mariadb" and e.kind is EvidenceKind.ERROR]  # fmt: skip
    for record in symptoms:
        assert record.diagnosis is not None
        assert "mariadb" not in [e.node for e in record.diagnosis.explanations[:1]]


def test_no_answer_is_a_timeout_not_an_answer() -> None:
    assert no_answer("list servers: Request to http://127.0.0.1:8774/v2.1/servers timed out")
    assert no_answer("GET http://127.0.0.1/compute did not answer within 3 s")
    assert not no_answer("list servers: Unexpected API Error. (HTTP 500)")
    assert not no_answer("list servers: cannot reach the cloud: Connection refused")
