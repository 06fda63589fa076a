"""The backups panel in a real browser, live: a backup taken on the simulated cloud shows up on an
open page, never reloaded.

The dashboard runs in this process beside haven serve's backup service (haven.backups.serving) on the
wall clock, wired as ``haven serve`` wires them (``service.on_event = hub``; the panel reads the
service's latest plan), over a simulated cloud whose uploads take 1 s instead of 120 s. Ground truth:
the simulated cloud's images (the page's backup is an active image of that server).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from dashboard.inprocess import Served, log_in, not_reloaded, serve_dashboard
from haven.api.auth import LocalTokenAuthenticator
from haven.backups.config import BackupsConfig, SchedulerSettings
from haven.backups.serving import BackupService, build_service
from haven.cloud.sim.backups import BackupTimings, SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.dashboard.app import create_dashboard
from haven.dashboard.board import BackupStatus
from haven.dashboard.hub import EventHub
from haven.domain.backups import IMAGE_BACKUP_ID, BackupState, ImageStatus
from haven.domain.clock import RealClock
from haven.store import Store

TOKEN = "backups-live-test-token"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Served, BackupService, SimBackups, Store]]:
    clock = RealClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=3, zones=1), clock)
    port = SimBackups(cloud, BackupTimings(backup_s=1.0))
    for server in sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[:2]:
        cloud.sim_server(server).metadata["haven_backup"] = "hourly"
    config = BackupsConfig(
        enabled=True, scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=1), pass_interval_s=0.5
    )
    hub = EventHub()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        service = build_service(config, port, store, clock, None)
        service.on_event = hub  # as haven serve does
        plan = lambda: BackupStatus(service.last_plan, config.scheduler)  # noqa: E731 (as haven serve's)
        dashboard = create_dashboard(store, LocalTokenAuthenticator(TOKEN), hub, clock, backups=plan)
        with serve_dashboard(dashboard, hub) as served:
            yield served, service, port, store


def test_a_backup_taken_shows_up_live(
    world: tuple[Served, BackupService, SimBackups, Store], page: Page
) -> None:
    served, service, port, store = world
    log_in(page, served.url, TOKEN)
    panel = page.locator("#backups")
    expect(panel).to_contain_text("No protected server in the backup runner's latest pass")

    running = served.run(service.run(served.stop))
    # The first round asks for one backup (the cap is 1): the page shows it being taken...
    expect(panel.get_by_text("one being taken since")).to_have_count(1)
    taking = panel.locator("tr[data-stale]").filter(has_text="one being taken")
    first = taking.locator("th").inner_text()
    # ...then, its image uploaded and a later round seeing it, taken and within the policy.
    row = panel.locator("tr[data-stale]").filter(has=page.get_by_role("rowheader", name=first, exact=True))
    expect(row).to_contain_text("image ", timeout=15_000)
    expect(row).to_contain_text("within policy")
    expect(row).not_to_contain_text("one being taken")
    expect(page.locator("#live")).to_contain_text(f"a backup of {first} was taken")
    shown = re.search(r"image ([0-9a-f]{8}), taken", row.inner_text())
    assert shown is not None
    # Ground truth: that backup is an active image of that server in the simulated cloud.
    record = next(r for r in store.backups_relevant(0.0) if r.id.startswith(shown.group(1)))
    assert record.state is BackupState.AVAILABLE and record.server_name == first
    image = port.images[record.image_id]
    assert image.status is ImageStatus.ACTIVE and image.server_id == record.server_id
    assert image.properties[IMAGE_BACKUP_ID] == record.id
    assert not_reloaded(page)
    assert not running.done()  # the service still runs until the fixture stops it
