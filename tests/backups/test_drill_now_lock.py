"""Restore drills asked now (BackupService.drill_now) against ``[backups.drills] concurrency`` and
each other, on the simulated cloud in virtual time: at most ``concurrency`` drills in flight (the
next one refused with a UserError, the API's 409), and two asks of one server at once, or an ask
while the scheduled drill round picks that server, boot one drill. The store's issue is slowed (in
its thread) so the asks' looks overlap. Judged on the simulated cloud's boots."""

from __future__ import annotations

import asyncio
import time

import pytest

from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.serving import BackupService, build_service
from haven.cloud.sim.backups import BackupTimings, SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import RestorePurpose
from haven.domain.clock import VirtualClock
from haven.domain.errors import UserError
from haven.store import Store

WHO = "user ops-admin of project ops (dashboard)"


async def _ready(store: Store, concurrency: int) -> tuple[BackupService, SimBackups, list[str]]:
    """Three protected servers, each with a good backup; no drill round run yet."""
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=3, zones=1), clock)
    port = SimBackups(cloud, BackupTimings(backup_s=60.0, boot_s=20.0))
    servers = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    for server in servers:
        cloud.sim_server(server).metadata["haven_backup"] = "hourly"
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=3),
        drills=DrillSettings(interval_s=86_400.0, concurrency=concurrency),
    )
    service = build_service(config, port, store, clock, None)
    await service.runner.run_pass()
    clock.advance_to(clock.now() + 90.0)
    await service.runner.run_pass()
    return service, port, servers


def _slow_issue(store: Store) -> None:
    """The store's issue_restore waits 50 ms (in its thread) before it writes: asks overlap."""
    issue = store.issue_restore

    def slow(*args: object, **kw: object) -> object:
        time.sleep(0.05)
        return issue(*args, **kw)  # type: ignore[arg-type]

    store.issue_restore = slow  # type: ignore[method-assign]


async def test_drill_now_refuses_past_the_concurrency() -> None:
    with Store.open("sqlite://") as store:
        service, port, servers = await _ready(store, concurrency=2)
        await service.drill_now(servers[0], WHO)
        await service.drill_now(servers[1], WHO)
        with pytest.raises(UserError, match=r"2 restore drills are running.*concurrency = 2"):
            await service.drill_now(servers[2], WHO)
        assert len(port.image_of) == 2  # two boots on the cloud, not three
        assert sorted(r.server_id for r in store.list_restores()) == servers[:2]


async def test_two_asks_of_one_server_at_once_boot_one_drill() -> None:
    with Store.open("sqlite://") as store:
        service, port, servers = await _ready(store, concurrency=3)
        _slow_issue(store)
        results = await asyncio.gather(
            service.drill_now(servers[0], WHO), service.drill_now(servers[0], "another admin"),
            return_exceptions=True,
        )  # fmt: skip
        refused = [r for r in results if isinstance(r, UserError)]
        assert len(refused) == 1 and "already running" in str(refused[0])
        assert len(port.image_of) == 1 and len(store.list_restores()) == 1


async def test_an_ask_during_the_drill_rounds_pick_boots_one_drill() -> None:
    with Store.open("sqlite://") as store:
        service, port, servers = await _ready(store, concurrency=3)
        _slow_issue(store)
        results = await asyncio.gather(
            service.restorer.drill_round([servers[0]]), service.drill_now(servers[0], WHO),
            return_exceptions=True,
        )  # fmt: skip
        assert sum(isinstance(r, UserError) for r in results) <= 1
        drills = [r for r in store.list_restores() if r.purpose is RestorePurpose.DRILL]
        assert [d.server_id for d in drills] == [servers[0]]
        assert len(port.image_of) == 1  # booted once
