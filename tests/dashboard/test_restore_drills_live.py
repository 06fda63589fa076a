"""Restore drills on the backups panel, in a real browser: each protected server's latest drill shows up
live, an admin runs one from the page (confirmed, audited), a reader may not.

The dashboard runs in this process beside haven serve's backup service on the wall clock, wired as
``haven serve`` wires them (``service.on_event = hub``; the panel reads ``BackupStatus(plan,
settings, service.drill_now)``), over a simulated cloud whose uploads and boots take 1 s. Ground
truth: the simulated cloud booted the drill's server from that server's backup image and it is gone
again; the store's restore record names the admin.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.inprocess import Served, TwoTokens, log_in, not_reloaded, serve_dashboard
from haven.backups.config import BackupsConfig, DrillSettings, SchedulerSettings
from haven.backups.serving import BackupService, build_service
from haven.cloud.sim.backups import BackupTimings, SimBackups
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.dashboard.app import create_dashboard
from haven.dashboard.board import BackupStatus
from haven.dashboard.hub import EventHub
from haven.domain.backups import RestorePurpose, RestoreState
from haven.domain.clock import RealClock
from haven.store import Store

ADMIN, READER = "drills-admin-token", "drills-reader-token"


World = tuple[Served, BackupService, SimBackups, Store]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = RealClock()
    cloud, _ = build_cloud(CloudSpec(hosts=2, vms=3, zones=1), clock)
    port = SimBackups(cloud, BackupTimings(backup_s=1.0, boot_s=1.0))
    cloud.sim_server(sorted(s.id for h in cloud.host_names() for s in cloud.servers_on(h))[0]).metadata[
        "haven_backup"
    ] = "hourly"
    config = BackupsConfig(
        enabled=True,
        scheduler=SchedulerSettings(jitter_s=0.0, max_concurrent=1),
        drills=DrillSettings(interval_s=3600.0, concurrency=1, timeout_s=60.0),
        pass_interval_s=0.5,
    )
    hub = EventHub()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        service = build_service(config, port, store, clock, None)
        service.on_event = hub  # as haven serve does
        plan = lambda: BackupStatus(service.last_plan, config.scheduler, service.drill_now)  # noqa: E731
        dashboard = create_dashboard(store, TwoTokens(ADMIN, READER), hub, clock, backups=plan)
        with serve_dashboard(dashboard, hub) as served:
            yield served, service, port, store


def test_restore_drills_live_and_from_the_page(world: World, page: Page, browser: Browser) -> None:
    served, service, port, store = world
    log_in(page, served.url, ADMIN)
    served.run(service.run(served.stop))
    panel = page.locator("#backups")
    row = panel.locator("tr[data-stale]")
    # The scheduled drill of the server's first backup, shown as it ends, never reloaded.
    expect(row.locator("td.drill")).to_have_attribute("data-drill", "passed", timeout=20_000)
    expect(row.locator("td.drill")).to_contain_text("passed at")
    expect(row.locator("td.drill")).to_contain_text(" s old)")
    name = row.locator("th").inner_text()
    expect(page.locator("#live")).to_contain_text(f"the restore drill of {name} passed")
    (scheduled,) = store.list_restores()
    assert scheduled.asked_by == ""

    # A reader sees the drill but no button, and a drill posted with the reader's own session is refused.
    reader = browser.new_context()
    try:
        rpage = reader.new_page()
        log_in(rpage, served.url, READER)
        expect(rpage.locator("#backups td.drill")).to_contain_text("passed at")
        expect(rpage.locator("#backups")).to_contain_text("Only an admin may run a restore drill.")
        expect(rpage.get_by_role("button", name=f"Run a restore drill of {name}")).to_have_count(0)
        csrf = json.loads(rpage.evaluate("document.body.getAttribute('hx-headers')"))["X-CSRF-Token"]
        refused = rpage.request.post(
            f"{served.url}/dashboard/backups/{scheduled.server_id}/drill", form={"csrf": csrf}
        )
        assert refused.status == 403 and "only an admin" in refused.text()
    finally:
        reader.close()
    assert len(store.list_restores()) == 1  # nothing asked of the cloud for the reader

    # The admin runs one: the browser's confirmation, then the drill running, then passed, live.
    page.once("dialog", lambda d: d.accept() if "Run a restore drill of" in d.message else d.dismiss())
    page.get_by_role("button", name=f"Run a restore drill of {name}").click()
    expect(row.locator("td.drill")).to_contain_text("asked by user ops-admin of project ops (dashboard)")
    expect(row.locator("td.drill")).to_have_attribute("data-drill", "passed", timeout=20_000)
    expect(row.locator("td.drill")).to_contain_text("ACTIVE in")
    assert not_reloaded(page)

    # Ground truth: the simulated cloud booted the drill's server from this server's backup image and
    # deleted it again; the store's record names the admin.
    drills = [r for r in store.list_restores() if r.purpose is RestorePurpose.DRILL]
    asked = drills[-1]
    assert len(drills) == 2 and asked.asked_by == "user ops-admin of project ops (dashboard)"
    assert asked.state is RestoreState.DONE and asked.active_at is not None
    backup = store.get_backup(asked.backup_id)
    assert port.image_of[asked.target_id] == backup.image_id and backup.server_id == scheduled.server_id
    booted = {s.id for h in port.cloud.host_names() for s in port.cloud.servers_on(h)}
    assert asked.target_id not in booted
