"""A real cloud's API fails now and then: the engine keeps its verdicts and tries again, it never stops.

Measured on the lab: Nova refuses to unset forced-down while evacuation records remain, and
any API can answer 503 or not at all; `haven serve` must ride through both.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from haven.cloud.sim import CloudSpec, SimCloud, SimFencer, build_cloud
from haven.domain.clock import VirtualClock
from haven.domain.errors import PermanentError, TemporaryError
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName
from haven.domain.liveness import HostLiveness
from haven.service.bootstrap import segments_per_zone
from haven.service.engine import Engine
from haven.service.runner import run_until
from haven.store import Store

SPEC = CloudSpec(hosts=6, vms=30, zones=1, ha_fraction=1.0, seed=3)


class Flaky:
    """The simulated cloud, whose liveness readings and unset-forced-down fail while told to."""

    def __init__(self, cloud: SimCloud) -> None:
        self.cloud = cloud
        self.readings_fail = False
        self.unforce_refusals = 0
        self.reads = 0

    async def liveness_anomalies(self) -> Sequence[HostLiveness]:
        self.reads += 1
        if self.readings_fail:
            raise TemporaryError("list compute services: cannot reach the cloud", 2.0)
        return await self.cloud.liveness_anomalies()

    async def force_down(self, host: HostName, down: bool) -> None:
        if not down and self.unforce_refusals > 0:
            self.unforce_refusals -= 1
            raise PermanentError(
                f"Unable to force up host {host} as `done` evacuation migration records remain"
            )
        await self.cloud.force_down(host, down)

    def __getattr__(self, name: str) -> object:
        return getattr(self.cloud, name)


async def test_the_engine_rides_through_failed_readings_and_refused_returns(tmp_path: Path) -> None:
    clock = VirtualClock()
    cloud, _ = build_cloud(SPEC, clock)
    flaky = Flaky(cloud)
    events: list[EngineEvent] = []
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        segments_per_zone(store, await cloud.list_hosts())
        engine = Engine(flaky, flaky, SimFencer(cloud), store, clock, on_event=events.append)  # type: ignore[arg-type]
        engine.start()

        async def run(seconds: float) -> None:
            await run_until(engine, clock, clock.now() + seconds, wake_sources=[cloud.next_event_time])

        await run(3.0)
        flaky.readings_fail = True
        reads = flaky.reads
        await run(10.0)  # no exception escapes; it keeps asking, about once per heartbeat interval
        assert 5 <= flaky.reads - reads <= 15
        flaky.readings_fail = False

        victim = cloud.host_names()[0]
        cloud.fail_power(victim)
        await run(120.0)
        assert [e.host for e in events if e.kind is EventKind.NOTIFICATION_FINISHED] == [victim]
        flaky.unforce_refusals = 3
        cloud.bmc_request_power(victim, on=True)
        await run(180.0)
        assert flaky.unforce_refusals == 0  # refused three times, then accepted
        assert [e.host for e in events if e.kind is EventKind.HOST_RETURNED] == [victim]
        assert not (await cloud.get_host(victim)).forced_down
