"""``[backups.segments.NAME]`` and ``[backups.projects.ID]`` defaults reach the servers they name.

A server's segment is its compute host's, as haven's own membership says (the segments and hosts in the
store, Masakari's resources: here laid out one per zone by haven.service.bootstrap, as drills and the
demo do); the runner fills it in each pass, so the drivers only report the host. Judged from the
simulated cloud's ground truth (which servers it was asked to back up, with which backup type) and
from the policy each protected server resolved to.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from haven.backups.config import BackupsConfig, parse_backups
from haven.backups.runner import BackupRunner
from haven.cloud.openstack.backups import target as openstack_target
from haven.cloud.sim.backups import SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.cloud.sim.cloud import SimCloud
from haven.domain.clock import VirtualClock
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Segment
from haven.service.bootstrap import segments_per_zone
from haven.store import Store

HOUR = 3600.0


@dataclass
class Rig:
    clock: VirtualClock
    cloud: SimCloud
    port: SimBackups
    store: Store
    segments: dict[str, Segment]  # zone -> its segment
    zone_of: dict[HostName, str]

    def runner(self, section: dict[str, Any]) -> BackupRunner:
        config: BackupsConfig = parse_backups({"jitter_s": 0.0, **section}, "haven.toml")
        return BackupRunner(config, self.port, self.store, self.clock)

    def servers_in(self, zone: str) -> set[ServerId]:
        return {s.id for h, z in self.zone_of.items() if z == zone for s in self.cloud.servers_on(h)}

    def backed_up(self) -> set[ServerId]:
        """Ground truth: every server the simulated Nova accepted a createBackup for."""
        return {server for _, server, _ in self.port.create_calls}


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = VirtualClock()
    cloud, _ = build_cloud(CloudSpec(hosts=4, vms=8, zones=2), clock)
    store = Store.open("sqlite://")
    hosts = await cloud.list_hosts()
    made = segments_per_zone(store, hosts)
    segments = {s.name.removeprefix("segment-"): s for s in made}
    yield Rig(clock, cloud, SimBackups(cloud), store, segments, {h.name: h.zone for h in hosts})
    store.close()


async def test_a_segments_default_backs_up_the_servers_on_its_hosts_and_no_others(rig: Rig) -> None:
    runner = rig.runner({"segments": {"segment-az1": {"schedule": "hourly", "keep": 2}}})
    for _ in range(int(1.5 * HOUR / 60)):
        await runner.run_pass()
        rig.clock.advance_to(rig.clock.now() + 60.0)
    az1, az2 = rig.servers_in("az1"), rig.servers_in("az2")
    assert az1 and az2
    assert rig.backed_up() == az1  # every server of segment-az1, none of segment-az2
    assert {i.backup_type for i in rig.port.images.values()} == {"haven-hourly"}
    sources = {p.target.id: p.policy.source for p in await runner.protected()}
    assert sources == {sid: "segment segment-az1" for sid in az1}


async def test_a_segment_named_by_its_id_applies_too(rig: Rig) -> None:
    seg = rig.segments["az2"]
    runner = rig.runner({"segments": {seg.id: {"schedule": "daily", "keep": 3}}})
    protected = await runner.protected()
    assert {p.target.id for p in protected} == rig.servers_in("az2")
    assert {(p.target.segment, p.policy.schedule, p.policy.retention.keep) for p in protected} == {
        (seg.id, "daily", 3)
    }


async def test_metadata_then_project_then_segment_then_default(rig: Rig) -> None:
    az1 = sorted(rig.servers_in("az1"))
    own, projects, plain = az1[0], az1[1], az1[2:]
    rig.cloud.sim_server(own).metadata["haven_backup"] = "weekly"
    rig.port.projects[projects] = "7a0c1e5d9b8f4e2a"  # a project id, as Nova's tenant_id
    runner = rig.runner(
        {
            "default": {"schedule": "0 5 * * *"},
            "projects": {"7a0c1e5d9b8f4e2a": {"schedule": "0 4 * * *"}},
            "segments": {"segment-az1": {"schedule": "0 3 * * *"}},
        }
    )
    schedules = {p.target.id: p.policy.schedule for p in await runner.protected()}
    assert schedules[own] == "weekly"
    assert schedules[projects] == "0 4 * * *"
    assert {schedules[s] for s in plain} == {"0 3 * * *"}
    assert {schedules[s] for s in rig.servers_in("az2")} == {"0 5 * * *"}


async def test_a_host_moved_to_another_segment_takes_its_servers_policy_with_it(rig: Rig) -> None:
    runner = rig.runner({"segments": {"segment-az1": {"schedule": "hourly"}}})
    host = next(h for h, z in rig.zone_of.items() if z == "az2" and rig.cloud.servers_on(h))
    moved = {s.id for s in rig.cloud.servers_on(host)}
    assert not moved & {p.target.id for p in await runner.protected()}
    rig.store.update_host(host, segment_id=rig.segments["az1"].id)  # the operator moves it (haven's API)
    assert moved <= {p.target.id for p in await runner.protected()}


async def test_a_backup_now_follows_the_segments_policy(rig: Rig) -> None:
    runner = rig.runner({"segments": {"segment-az2": {"schedule": "weekly"}}})
    server = sorted(rig.servers_in("az2"))[0]
    record = await runner.backup_now(server)
    assert record.backup_type == "haven-weekly"
    (image,) = [i for i in rig.port.images.values() if i.server_id == server]
    assert image.backup_type == "haven-weekly"  # what Nova was asked for, not the manual daily


async def test_a_project_key_that_is_a_name_matches_nothing_and_says_so_once(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    runner = rig.runner({"projects": {"demo-project": {"schedule": "hourly"}}})
    with caplog.at_level(logging.WARNING, logger="haven.backups.runner"):
        assert await runner.protected() == []
        assert await runner.protected() == []
    said = [r.getMessage() for r in caplog.records if "demo-project" in r.getMessage()]
    assert len(said) == 1 and "project's id" in said[0]


def test_the_openstack_driver_reports_the_servers_host() -> None:
    body = {
        "id": "6d2a1f3e-5b7c-4e8d-9a0b-1c2d3e4f5a6b",
        "name": "db",
        "tenant_id": "7a0c1e5d9b8f4e2a",
        "OS-EXT-STS:vm_state": "active",
        "OS-EXT-SRV-ATTR:host": "compute-3",
        "image": {"id": "b1c2"},
    }
    assert openstack_target(body).host == "compute-3"
    assert openstack_target({**body, "OS-EXT-SRV-ATTR:host": None}).host == ""
