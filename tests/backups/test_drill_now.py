"""A restore drill asked now (the dashboard's admin action: BackupService.drill_now), on the simulated
cloud in virtual time: refused without a good backup and while a drill of the server runs; else the
newest good backup is booted isolated, carried to ACTIVE and deleted by the service's rounds, the
record naming who asked. Judged on the simulated cloud's boots and servers."""

from __future__ import annotations

import pytest

from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.serving import build_service
from haven.cloud.sim.backups import BackupTimings, SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import BackupState, RestorePurpose, RestoreState
from haven.domain.clock import VirtualClock
from haven.domain.errors import UserError
from haven.store import Store

WHO = "user ops-admin of project ops (dashboard)"


async def test_a_drill_now_is_refused_then_runs_once_and_names_who_asked() -> None:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=2, zones=1), clock)
    port = SimBackups(cloud, BackupTimings(backup_s=60.0, boot_s=20.0))
    server = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]
    cloud.sim_server(server).metadata["haven_backup"] = "hourly"
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(jitter_s=0.0),
        drills=DrillSettings(interval_s=86_400.0, concurrency=1),
    )
    with Store.open("sqlite://") as store:
        service = build_service(config, port, store, clock, None)
        await service.run_round()  # a backup issued, not available yet
        with pytest.raises(UserError, match="no good backup"):
            await service.drill_now(server, WHO)
        assert store.list_restores() == [] and port.image_of == {}

        clock.advance_to(clock.now() + 90.0)
        await service.runner.run_pass()  # the backup available; no drill round yet: only the one asked
        (backup,) = [b for b in store.backups_of(server) if b.state is BackupState.AVAILABLE]
        asked = await service.drill_now(server, WHO)
        assert asked.purpose is RestorePurpose.DRILL and asked.asked_by == WHO
        assert asked.state is RestoreState.BOOTING and port.image_of[asked.target_id] == backup.image_id
        with pytest.raises(UserError, match="already running"):
            await service.drill_now(server, WHO)
        for _ in range(5):
            clock.advance_to(clock.now() + 10.0)
            await service.run_round()
        (done,) = store.list_restores()
        assert done.id == asked.id and done.state is RestoreState.DONE and done.asked_by == WHO
        assert done.active_at is not None and done.recovery_point == backup.created_at
        assert list(port.image_of) == [asked.target_id]  # booted once
        assert asked.target_id not in {s.id for h in cloud.host_names() for s in cloud.servers_on(h)}
