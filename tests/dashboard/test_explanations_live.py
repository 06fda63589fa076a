"""The explanations panel in a real browser, live: a fault injected into the simulated cloud (every
nova-compute of one zone crashed) makes the canary's boot there fail, the explainer explains it, and
the open page, never reloaded, shows the explanation naming the crashed service.

The dashboard runs in this process beside the explainer and its canary, built from a configuration
as ``haven serve`` builds them (haven.service.explaining.explaining_for) and run as it runs them
(``explaining.run(store, clock, stop, on_event=hub)``), on the wall clock over a simulated cloud whose
Nova notices a dead nova-compute after 2 s (service_down_time; 60 s by default). Ground truth: the
host the explanation names is in that zone and its nova-compute is the one the test crashed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from dashboard.inprocess import Served, log_in, not_reloaded, serve_dashboard
from haven.api.auth import LocalTokenAuthenticator
from haven.canary.config import CanaryConfig
from haven.canary.model import CanarySettings
from haven.cloud.sim import CloudSpec, build_cloud
from haven.cloud.sim.cloud import SimCloud
from haven.cloud.sim.timings import SimTimings
from haven.dashboard.app import create_dashboard
from haven.dashboard.hub import EventHub
from haven.domain.clock import RealClock
from haven.service.config import HavenConfig
from haven.service.explaining import Explaining, explaining_for
from haven.store import Store

TOKEN = "explanations-live-test-token"
ZONE = "az1"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Served, Explaining, SimCloud, Store]]:
    clock = RealClock()
    timings = SimTimings(nova_report_interval_s=0.5, nova_service_down_time_s=2.0)
    cloud = build_cloud(CloudSpec(hosts=4, vms=0, zones=2, seed=3), clock, timings)[0]
    settings = CanarySettings(interval_s=1.0, poll_s=0.2, boot_timeout_s=60.0, slow_s=20.0)
    config = HavenConfig(home=tmp_path, database_url=f"sqlite:///{tmp_path / 'haven.db'}")
    explaining = explaining_for(config, cloud, CanaryConfig(True, settings))
    hub = EventHub()
    with Store.open(config.database_url) as store:
        dashboard = create_dashboard(store, LocalTokenAuthenticator(TOKEN), hub, clock)
        with serve_dashboard(dashboard, hub) as served:
            yield served, explaining, cloud, store


def test_an_explanation_appears_live(world: tuple[Served, Explaining, SimCloud, Store], page: Page) -> None:
    served, explaining, cloud, store = world
    log_in(page, served.url, TOKEN)
    panel = page.locator("#explanations")
    expect(panel).to_contain_text("No explanation yet")

    crashed = sorted(h for h in cloud.host_names() if cloud.sim_host(h).zone == ZONE)
    assert crashed
    for host in crashed:
        served.call(cloud.crash_nova_compute, host)
    deadline = time.monotonic() + 10  # Nova's service list says so after service_down_time (2 s)
    while any(h.service_up for h in served.run(cloud.list_hosts()).result(5) if h.zone == ZONE):
        assert time.monotonic() < deadline, "Nova never noticed the crashed nova-compute"
        time.sleep(0.1)
    explaining_run = served.run(explaining.run(store, RealClock(), served.stop, on_event=served.hub))

    article = panel.locator("article.explanation").first  # a later round in az1 fails and explains again
    expect(article).to_be_visible(timeout=15_000)
    expect(article.get_by_role("heading")).to_contain_text(f"({ZONE})")
    expect(article.locator(".summary")).to_contain_text("NoValidHost")
    top = article.locator("ol.causes > li").first
    expect(top).to_contain_text("nova-compute")
    named = re.search(r"nova-compute on (\S+) is down", top.inner_text())
    assert named is not None, top.inner_text()
    # The canary panel shows the failed boot in that zone, with its word (not only a colour).
    expect(page.locator("#canaries tr[data-outcome='failed']").first).to_contain_text(ZONE)
    expect(page.locator("#canaries tr[data-outcome='failed']").first).to_contain_text("failed")
    # Ground truth: the host named is one the test crashed, in that zone.
    assert named.group(1) in crashed
    assert not cloud.sim_host(named.group(1)).nova_compute_running
    assert not_reloaded(page)
    assert not explaining_run.done()
