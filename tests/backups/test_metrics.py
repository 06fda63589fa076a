"""haven serve's backup service with its Prometheus metrics and alerts on the simulated cloud, in
virtual time: the counters match what the simulated cloud holds (active and killed images, drill
servers that booted or went to ERROR), the restore_drill_failed alert is raised for the server whose
backup does not boot and cleared once a later drill passes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.serving import BackupService, build_service
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.domain.backups import ImageStatus
from haven.domain.clock import VirtualClock
from haven.domain.ids import ServerId
from haven.domain.incidents import AlertKind
from haven.store import Store

HOUR = 3600.0


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


@pytest.fixture
def world() -> Iterator[tuple[VirtualClock, SimBackups, Store, list[ServerId]]]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=3, vms=4, zones=1), clock)
    port = SimBackups(cloud)
    servers = sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))
    for sid in servers:
        cloud.sim_server(sid).metadata["haven_backup"] = "hourly"
    with Store.open("sqlite://") as store:
        yield clock, port, store, servers


async def run_for(service: BackupService, clock: VirtualClock, seconds: float) -> None:
    end = clock.now() + seconds
    while clock.now() < end:
        await service.run_round()
        clock.advance_to(clock.now() + 60.0)


async def test_counters_and_gauges_match_the_simulated_cloud(
    world: tuple[VirtualClock, SimBackups, Store, list[ServerId]],
) -> None:
    clock, port, store, _ = world
    registry = CollectorRegistry()
    config = BackupsConfig(enabled=True, scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=2))
    service = build_service(config, port, store, clock, None, registry)
    port.faults.fail_backups = 1  # the first upload ends killed
    await run_for(service, clock, 3 * HOUR)
    found = scrape(registry)
    assert port.faults.fail_backups == 0  # the one failed upload happened
    uploaded = len(port.create_calls) - 1  # every other createBackup's image became active
    assert uploaded >= 3 * 4 and len([i for i in port.images.values() if i.status is ImageStatus.ACTIVE]) > 0
    assert found[("haven_backups_total", frozenset({("kind", "image"), ("outcome", "failed")}))] == 1
    assert found[("haven_backups_total", frozenset({("kind", "image"), ("outcome", "taken")}))] == uploaded
    assert found[("haven_backup_servers", frozenset({("policy", "hourly"), ("condition", "all")}))] == 4
    assert found[("haven_backup_servers", frozenset({("policy", "hourly"), ("condition", "stale")}))] == 0
    age = found[("haven_backup_recovery_point_age_seconds", frozenset({("policy", "hourly")}))]
    allowed = found[("haven_backup_recovery_point_max_age_seconds", frozenset({("policy", "hourly")}))]
    assert 0 < age <= allowed


async def test_a_drill_that_does_not_boot_raises_its_alert_until_a_later_drill_passes(
    world: tuple[VirtualClock, SimBackups, Store, list[ServerId]],
) -> None:
    clock, port, store, servers = world
    registry = CollectorRegistry()
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=4),
        drills=DrillSettings(interval_s=2 * HOUR, concurrency=4),
    )
    service = build_service(config, port, store, clock, None, registry)
    await run_for(service, clock, 60.0)  # the first backups are asked for (their upload takes 120 s)
    for image in port.images.values():
        image.broken = image.server_id == servers[0]  # its backup will not boot
    await run_for(service, clock, 30 * 60.0)  # uploaded, then drilled
    alerts = [a for a in store.list_alerts() if a.kind is AlertKind.RESTORE_DRILL_FAILED]
    assert [a.host for a in alerts] == [servers[0]]
    found = scrape(registry)
    assert found[("haven_backup_restore_drills_total", frozenset({("outcome", "failed")}))] == 1
    assert found[("haven_backup_restore_drills_total", frozenset({("outcome", "passed")}))] == 3
    assert not [t for t in await port.list_targets() if t.name.startswith("haven-drill-")]  # all deleted
    for image in port.images.values():
        image.broken = False
    await run_for(service, clock, 3 * HOUR)
    assert not [a for a in store.list_alerts() if a.kind is AlertKind.RESTORE_DRILL_FAILED]
