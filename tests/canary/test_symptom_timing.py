"""When a symptom reaches the explainer, and which passing checks are symptoms: on the simulated cloud and
virtual time, through the real runner, explainer and store, judged from the explanations stored.

- A failed check is explained as soon as it ends, not when the round's other checks (each waiting for its
  timeout) are over; the round goes on, and its symptoms still make one incident per root cause.
- A check whose answers, its first and two more, are far slower than its own baseline in the median is
  a "slow" symptom naming its check (haven.canary.slow); one slow answer, and a fast check's wobble,
  are not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest

from haven.canary.config import parse_canary
from haven.canary.model import CanaryRun, CanarySettings, Outcome, Phase
from haven.canary.runner import CanaryRunner
from haven.canary.sim import SimCanaryCloud
from haven.canary.slow import SlowSettings, baseline, confirmed
from haven.canary.unseen import probe_needs
from haven.cloud.sim import CloudSpec, build_cloud
from haven.controlplane.catalogue import CATALOGUE
from haven.diagnosis.records import ExplanationRecord
from haven.domain.clock import VirtualClock
from haven.domain.errors import ConfigError, TemporaryError
from haven.explain.explainer import Explainer
from haven.explain.incidents import incident_alerts
from haven.store import Store
from haven.topology import openstack_topology

TOPOLOGY = openstack_topology(CATALOGUE.values())
CATALOG = {
    kind: f"http://127.0.0.1/{kind}" for kind in ("identity", "compute", "image", "placement", "network")
}
SETTINGS = CanarySettings(flavor="m1.tiny", image="img-1", poll_s=0.5, boot_timeout_s=30.0)


class Cloud(SimCanaryCloud):
    """The simulated cloud with a catalog; Keystone's token takes ``token_s`` (each ask the next of the
    list, the last one kept), failing after it when ``token_fails``; with ``hang_s``, everything else
    waits that long, then times out (Keystone hung: nothing behind it answers)."""

    token_s: list[float]  # set by Canary
    token_fails = False
    hang_s = 0.0
    tokens = 0

    async def issue_token(self) -> None:
        self.tokens += 1
        took = self.token_s.pop(0) if len(self.token_s) > 1 else self.token_s[0]
        await self.clock.sleep_until(self.clock.now() + took)
        if self.token_fails:
            raise TemporaryError("issue a token: Request to /v3/auth/tokens timed out", 1.0)

    async def _hang(self, what: str) -> None:
        if self.hang_s:
            await self.clock.sleep_until(self.clock.now() + self.hang_s)
            raise TemporaryError(f"{what}: timed out", 1.0)

    async def endpoints(self) -> Mapping[str, str]:
        return CATALOG

    async def probe_endpoint(self, url: str, timeout_s: float) -> None:
        await self._hang(url)

    async def list_servers(self) -> int:
        await self._hang("list servers")
        return await super().list_servers()

    async def zones(self) -> list[str]:
        await self._hang("list nova-compute services")
        return list(await super().zones())

    async def services(self) -> list[tuple[str, str, str, float | None, str]]:
        await self._hang("services")
        return list(await super().services())

    async def image_status(self, image: str) -> str:
        await self._hang("image status")
        return "active"


class Canary:
    """A runner wired as haven serve wires it: symptoms explained at once, ranked again after the look."""

    def __init__(self, store: Store, settings: CanarySettings = SETTINGS) -> None:
        self.clock = VirtualClock()
        self.cloud = Cloud(build_cloud(CloudSpec(hosts=2, vms=0, zones=1, seed=3), self.clock)[0], self.clock)
        self.cloud.token_s = [0.1]
        self.store = store
        self.explainer = Explainer(store, TOPOLOGY, self.clock)
        self.handed: list[tuple[float, ExplanationRecord]] = []  # (when, the record as explained then)
        self.runner = CanaryRunner(self.cloud, store, self.clock, settings, self._explain,
                                   needs=probe_needs(TOPOLOGY), on_refine=self.explainer.refine)  # fmt: skip

    async def _explain(self, record: ExplanationRecord) -> ExplanationRecord:
        explained = await self.explainer.open_and_explain(record)
        self.handed.append((self.clock.now(), explained))
        return explained

    def stored(self) -> list[ExplanationRecord]:
        return [self.store.get_explanation(r.id) for _at, r in self.handed]


async def test_a_check_failing_at_2_s_is_explained_at_2_s_while_the_others_hang_to_10_s(store: Store) -> None:
    canary = Canary(store)
    canary.cloud.token_s, canary.cloud.token_fails, canary.cloud.hang_s = [2.0], True, 10.0
    start = canary.clock.now()
    found = await canary.runner.round()
    first_at, first = canary.handed[0]
    assert first.source == "probe:token" and first_at - start == pytest.approx(2.0)
    record = store.get_explanation(first.id)  # as stored after the whole round (its look ranked it again)
    assert record.explained_at is not None and record.explained_at - start == pytest.approx(2.0)
    assert record.diagnosis is not None and record.diagnosis.explanations[0].node == "keystone"
    # the round went on: the server list, the endpoints and the zones each hung 10 s after it
    assert canary.clock.now() - start >= 2.0 + 10.0 * 3
    assert [p.name for p in found.probes if not p.ok][:2] == ["token", "server-list"]
    # one incident: every symptom of the round has Keystone as its root cause
    causes = [a for a in incident_alerts(canary.stored(), [], canary.clock.now())
              if a.labels["haven_role"] == "cause"]  # fmt: skip
    assert [a.labels["cause"] for a in causes] == ["keystone"]
    assert len(canary.stored()) >= 3  # token, server list, zones


class DatabaseHung(Cloud):
    """Every read of the database waits 10 s, then times out: Nova's lists, its services, Placement's room;
    Keystone, the endpoints and Glance answer."""

    async def _db(self, what: str) -> None:
        await self.clock.sleep_until(self.clock.now() + 10.0)
        raise TemporaryError(f"{what}: Request timed out", 1.0)

    async def list_servers(self) -> int:
        await self._db("list servers")
        return 0

    async def zones(self) -> list[str]:
        await self._db("list nova-compute services")
        return []

    async def services(self) -> list[tuple[str, str, str, float | None, str]]:
        await self._db("list nova-compute services")
        return []

    async def placement_room(self, flavor: str) -> int:
        await self._db("allocation candidates")
        return 0

    async def image_via_compute(self, image: str) -> None:
        await self._db("show image through Nova")


async def test_the_database_behind_a_timed_out_list_is_named_before_the_looks_other_timeouts(
    store: Store,
) -> None:
    canary = Canary(store)
    canary.cloud = DatabaseHung(canary.cloud.cloud, canary.clock)
    canary.cloud.token_s = [0.1]
    canary.runner = CanaryRunner(canary.cloud, store, canary.clock, SETTINGS, canary._explain,
                                 needs=probe_needs(TOPOLOGY), on_refine=canary.explainer.refine)  # fmt: skip
    start = canary.clock.now()
    await canary.runner.round()
    listed = store.get_explanation(next(r.id for _at, r in canary.handed if r.source == "probe:server-list"))
    assert listed.diagnosis is not None and listed.diagnosis.explanations[0].node == "mariadb"
    # the list timed out at 10 s; what no check covers was weighed once the endpoints answered, not after
    # Placement's room and Nova's service list each waited 10 s more
    assert listed.explained_at is not None and listed.explained_at - start == pytest.approx(10.1)


async def test_a_failed_boot_is_explained_when_it_fails_not_after_its_delete_times_out(store: Store) -> None:
    settings = dataclasses.replace(SETTINGS, delete_timeout_s=30.0, probes=False)
    canary = Canary(store, settings)
    canary.cloud.fail(Phase.SPAWNED, "PortBindingFailed: Binding failed for port p-1")
    canary.cloud.delete_s = 1_000.0  # Nova does not delete the ERROR server within the canary's 30 s
    [run] = (await canary.runner.round()).runs
    assert run.outcome is Outcome.FAILED and "not deleted after 30 s" in run.error
    assert run.failed_at is not None and canary.clock.now() - run.failed_at >= 30.0
    [(handed_at, record)] = canary.handed
    assert record.id == f"canary:{run.id}" and handed_at == pytest.approx(run.failed_at)
    assert record.explained_at == pytest.approx(run.failed_at) and record.symptom.phase == "port binding"


async def test_a_store_error_at_the_early_hand_off_still_deletes_the_server_first(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of 817d947: the symptom is handed before the delete; a store error there ("database is
    locked" while its evidence is kept) must not skip the delete (the server left to the next round's
    clean): the delete first, the symptom handed after it. Ground truth: the simulated Nova's server."""
    settings = dataclasses.replace(SETTINGS, probes=False)
    canary = Canary(store, settings)
    canary.cloud.fail(Phase.SPAWNED, "PortBindingFailed: Binding failed for port p-1")
    hand = canary.runner._boot_symptom
    calls: list[float] = []

    async def locked_once(run: CanaryRun) -> None:
        calls.append(canary.clock.now())
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        await hand(run)

    monkeypatch.setattr(canary.runner, "_boot_symptom", locked_once)
    [run] = (await canary.runner.round()).runs
    assert run.outcome is Outcome.FAILED and run.server_id is not None
    server = canary.cloud.servers[run.server_id]
    assert server.deleted_at is not None, "the failed canary's server was not deleted"
    assert len(calls) == 2  # handed again after the delete
    [(_, record)] = canary.handed
    assert record.id == f"canary:{run.id}"


async def _warm(canary: Canary, rounds: int) -> None:
    for _ in range(rounds):
        await canary.runner.probe()


async def test_a_probe_far_slower_than_its_baseline_and_staying_slow_is_a_slow_symptom(store: Store) -> None:
    canary = Canary(store)
    await _warm(canary, 6)  # token issued in 0.1 s six times
    assert canary.handed == []
    canary.cloud.token_s = [4.0, 3.5, 0.2]  # Keystone stalls in turns: two of three asks slow
    asked = canary.cloud.tokens
    results = await canary.runner.probe()
    token = results[0]
    assert token.ok and token.slow and "4.00 s, 3.50 s, 0.20 s" in token.slow
    assert canary.cloud.tokens == asked + 3  # asked twice more to confirm
    [(_, record)] = canary.handed
    assert record.source == "probe:token" and "slow" in record.symptom.what
    assert record.diagnosis is not None and record.diagnosis.explanations[0].node == "keystone"
    assert "slow" in record.diagnosis.explanations[0].text
    # one slow answer in the baseline does not move its median: the next slow one is a symptom again
    canary.cloud.token_s = [4.0, 3.5, 0.2]
    await canary.runner.probe()
    assert len(canary.handed) == 2


@pytest.mark.parametrize(
    "answers",
    [
        [5.0, 0.1, 0.1],  # one slow answer: asked again, it is fast
        [1.2, 0.1, 0.1],  # within the floor of its median
    ],
)
async def test_one_slow_answer_or_a_wobble_is_no_symptom(store: Store, answers: list[float]) -> None:
    canary = Canary(store)
    await _warm(canary, 6)
    canary.cloud.token_s = [*answers]
    await canary.runner.probe()
    assert canary.handed == []


async def test_a_quiet_cloud_whose_checks_wobble_raises_nothing(store: Store) -> None:
    canary = Canary(store)
    wobble = [0.05, 0.3, 0.1, 0.8, 0.05, 0.6, 0.2, 1.4, 0.1, 0.05]  # a loaded host: 0.05 s to 1.4 s
    canary.cloud.token_s = wobble * 4 + [0.1]
    for _ in range(40):
        await canary.runner.probe()
    assert canary.handed == []


async def test_no_baseline_no_slow_symptom(store: Store) -> None:
    canary = Canary(store)
    await _warm(canary, 4)  # fewer passing answers than min_history
    canary.cloud.token_s = [9.0]
    await canary.runner.probe()
    assert canary.handed == []


def test_the_baseline_is_robust_and_floored() -> None:
    settings = SlowSettings(k=6.0, floor_s=1.5, history=5, min_history=3, confirm=2)
    assert baseline([0.1, 0.1], settings) is None
    usual = baseline([0.1, 0.1, 0.2, 30.0, 0.1, 99.0], settings)  # newest first; only the last 5 count
    assert usual is not None and usual.count == 5 and usual.median == pytest.approx(0.1)
    assert usual.limit(settings) == pytest.approx(0.1 + max(6.0 * 1.4826 * 0.0, 1.5))  # one 30 s: no widening
    assert not confirmed([5.0, 0.1, 0.1], 1.6) and confirmed([5.0, float("inf"), 0.1], 1.6)


def test_past_slow_answers_widen_the_limit_to_at_most_ratio_times_the_median() -> None:
    """The token's history on the lab at 19:02 (2026-12-07, load 4 to 15), newest first: three slow
    answers of earlier keystone-slow injections among the usual ones. 6 MADs put the limit at 4.03 s, 6.2
    times the median, and the stall's answers (4.17 s, then about 3.4 s twice) passed under it."""
    history = [0.14, 3.32, 3.97, 3.5, 0.56, 0.48, 0.75, 0.8, 0.3, 0.25]
    settings = SlowSettings()
    usual = baseline(history, settings)
    assert usual is not None and usual.median == pytest.approx(0.655)
    assert usual.median + settings.k * usual.mad == pytest.approx(4.03, abs=0.01)  # the limit before
    assert usual.limit(settings) == pytest.approx(4.0 * 0.655)  # at most 4 times the median
    assert confirmed([4.17, 3.4, 3.38], usual.limit(settings))
    # a quiet probe keeps its floor; a spread but fast one is not pushed under it
    quiet = baseline([0.12] * 6, settings)
    assert quiet is not None and quiet.limit(settings) == pytest.approx(0.12 + 1.5)
    wobbly = baseline([0.05, 0.3, 0.1, 0.8, 0.05, 0.6, 0.2, 1.4], settings)
    assert wobbly is not None and wobbly.limit(settings) == pytest.approx(wobbly.median + 1.5)


def test_the_slow_keys_are_canary_config() -> None:
    config = parse_canary({"slow_k": 4.0, "slow_floor_s": 2.5, "slow_ratio": 3.0, "slow_confirm": 0}, "x")
    assert config.settings.slow == dataclasses.replace(
        SlowSettings(), k=4.0, floor_s=2.5, ratio=3.0, confirm=0
    )
    assert parse_canary({}, "haven.toml").settings.slow == SlowSettings()
    with pytest.raises(ConfigError, match="slow_min_history"):
        parse_canary({"slow_min_history": 0}, "haven.toml")
    with pytest.raises(ConfigError, match="slow_ratio"):
        parse_canary({"slow_ratio": 1.0}, "haven.toml")
