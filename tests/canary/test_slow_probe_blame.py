"""Two defects of the slow-probe symptom (haven.canary.slow, runner), found in review:

- A slow token (Keystone slowed by the database behind it) made Keystone a node "not seen working", so
  what a timed-out server list needs that no check covers (the database) was never blamed: the list was
  explained by Keystone. A slow pass still answered: its node is seen working.
- Slow answers were kept out of a probe's baseline, so a lasting slowdown (more load, a slower backend)
  was a symptom every round until the fast past aged out (a week). They count: the slowdown becomes the
  probe's usual once it fills half the history.

On the simulated cloud in virtual time (tests/canary/test_unseen_need.py's slow database)."""

from __future__ import annotations

from haven.canary.model import CanarySettings
from haven.canary.runner import CanaryRunner
from haven.canary.slow import SlowSettings
from haven.canary.unseen import probe_needs
from haven.cloud.sim import CloudSpec, build_cloud
from haven.domain.clock import VirtualClock
from haven.explain.explainer import Explainer
from haven.explain.incidents import root_of
from haven.store import Store

from .test_unseen_need import TOPOLOGY, SlowDatabase


class _SlowTokenDatabase(SlowDatabase):
    token_s = 0.1

    async def issue_token(self) -> None:
        await self.clock.sleep_until(self.clock.now() + self.token_s)


def _cloud(clock: VirtualClock) -> _SlowTokenDatabase:
    return _SlowTokenDatabase(build_cloud(CloudSpec(hosts=2, vms=0, zones=1, seed=3), clock)[0], clock)


def _settings() -> CanarySettings:
    return CanarySettings(
        flavor="m1.tiny", image="img-1", poll_s=0.5, boot_timeout_s=30.0, slow=SlowSettings()
    )


async def test_a_slow_token_beside_a_timed_out_list_still_names_the_database() -> None:
    clock = VirtualClock()
    with Store.open("sqlite://") as store:
        nova = _cloud(clock)
        nova.reads_fail = False
        warm = CanaryRunner(nova, store, clock, _settings())
        for _ in range(6):  # the token's baseline: 0.1 s
            await warm.probe()
        nova.reads_fail, nova.token_s = True, 3.0  # the database is slow: Keystone's token slows with it
        explainer = Explainer(store, TOPOLOGY, clock)
        runner = CanaryRunner(nova, store, clock, _settings(), explainer.open_and_explain,
                              needs=probe_needs(TOPOLOGY), on_refine=explainer.refine)  # fmt: skip
        await runner.round()
        found = {r.source: r for r in store.list_explanations(limit=100)}
    assert "probe:token" in found, sorted(found)  # the slow token is a symptom of its own
    for source in ("probe:server-list", "probe:zones"):
        root = root_of(found[source])
        assert root is not None and root.node == "mariadb", (source, found[source].diagnosis)


async def test_a_lasting_slowdown_becomes_the_probes_usual() -> None:
    clock = VirtualClock()
    with Store.open("sqlite://") as store:
        nova = _cloud(clock)
        nova.reads_fail = False
        runner = CanaryRunner(nova, store, clock, _settings())
        for _ in range(20):  # a full history at 0.1 s
            await runner.probe()
        nova.token_s = 2.5  # from now on, for good (a slower Keystone host)
        slow = []
        for _ in range(30):
            results = await runner.probe()
            slow.append(any(r.name == "token" and r.slow for r in results))
    assert slow[0], "the first slow rounds are symptoms"
    # Once the slow answers fill half the history the median is theirs: no symptom every round forever.
    assert not any(slow[12:]), slow
