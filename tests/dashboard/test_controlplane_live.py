"""The control-plane panel in a real browser, live: a replica hung in the simulated control plane
goes unhealthy and comes back on the page, never reloaded.

The dashboard runs in this process (uvicorn in a thread) over a real SQLite store, beside the
simulated control plane's reconciler on the wall clock, connected as ``haven serve`` connects them
(``ControlPlane.run(..., on_event=hub)``): a replica hung inside ``haven serve`` could not be reached
from a test. The ground truth is the simulated world: the unit haven restarted, its load-balancer member.
Before the reconciler's first pass every new panel renders with nothing to show.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.routing import Mount

from haven.api.auth import LocalTokenAuthenticator
from haven.controlplane.catalogue import CATALOGUE
from haven.controlplane.config import ControlPlaneConfig
from haven.controlplane.running import SIM_SERVICES, ControlPlane
from haven.dashboard.app import ROOT, create_dashboard
from haven.dashboard.hub import EventHub
from haven.domain.clock import RealClock
from haven.domain.controlplane import ControlPlaneSettings, MemberAdmin
from haven.store import Store
from servers.process import free_port, port_open

TOKEN = "controlplane-live-test-token"
WATCH = """() => {
  window.__seen = [];
  const look = () => {
    const row = document.querySelector("#replica-nova-api-ctl-2");
    if (!row) return;
    const text = (sel) => (document.querySelector(sel)?.textContent || "").replace(/\\s+/g, " ");
    const now = {health: row.dataset.health, row: text("#replica-nova-api-ctl-2"),
                 service: text("#service-nova-api tr.service"), live: text("#live")};
    const last = window.__seen[window.__seen.length - 1];
    if (!last || JSON.stringify(last) !== JSON.stringify(now)) window.__seen.push(now);
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true,
                                                     characterData: true});
  look();
}"""


@dataclass
class Live:
    url: str
    loop: asyncio.AbstractEventLoop
    controlplane: ControlPlane
    store: Store
    hub: EventHub
    stop: asyncio.Event

    def start_reconciling(self) -> Future[Any]:
        run = self.controlplane.run(self.store, None, None, self.stop, on_event=self.hub)
        return asyncio.run_coroutine_threadsafe(run, self.loop)

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    clock = RealClock()
    # The simulated control plane's services; nova-api probed every 0.5 s (2 s in the catalogue) and
    # passes every 0.5 s: the same path, a few seconds sooner.
    services = tuple(CATALOGUE[s] for s in SIM_SERVICES)
    services = tuple(
        replace(s, probe=replace(s.probe, period_s=0.5)) if s.name == "nova-api" and s.probe else s
        for s in services
    )
    config = ControlPlaneConfig(ControlPlaneSettings(pass_interval_s=0.5), services=services)
    cp = ControlPlane(config, simulated_cloud=True, clock=clock)
    hub = EventHub()
    declared = {str(s.name): s.min_replicas for s in cp.config.services}
    port = free_port()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        board = create_dashboard(store, LocalTokenAuthenticator(TOKEN), hub, clock, declared=declared)
        app = Starlette(routes=[Mount(ROOT, board)])
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        ready: Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = Future()

        async def main() -> None:
            ready.set_result((asyncio.get_running_loop(), asyncio.Event()))
            await server.serve()

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="dashboard")
        thread.start()
        loop, stop = ready.result(10)
        deadline = time.monotonic() + 10
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        served = Live(f"http://127.0.0.1:{port}", loop, cp, store, hub, stop)
        try:
            yield served
        finally:
            served.call(stop.set)
            served.call(hub.close)  # open pages' streams end: the server stops at once
            server.should_exit = True
            thread.join(15)
    assert not thread.is_alive()


def test_a_hung_replica_goes_unhealthy_and_back_live(live: Live, page: Page) -> None:
    page.goto(f"{live.url}/dashboard/login")
    page.get_by_label("Token").fill(TOKEN)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Control plane")).to_be_visible()
    expect(page.locator("#live")).to_contain_text("live")
    # Nothing recorded, explained, booted or backed up yet: each panel says so.
    expect(page.locator("#controlplane")).to_contain_text("No control-plane replica recorded")
    expect(page.locator("#explanations")).to_contain_text("No explanation yet")
    expect(page.locator("#canaries")).to_contain_text("No canary boot yet")
    expect(page.locator("#backups")).to_contain_text("does not run scheduled backups")
    page.evaluate("window.__notReloaded = true")

    reconciling = live.start_reconciling()
    service = page.locator("#service-nova-api")
    expect(service).to_contain_text("nova-api: 2 healthy / 2 declared")
    expect(page.locator("table.replicas caption")).to_be_visible()
    row = page.locator("#replica-nova-api-ctl-2")
    expect(row).to_have_attribute("data-health", "healthy")
    expect(row).to_contain_text("in (ready)")

    page.evaluate(WATCH)  # every state the row shows, however briefly, on a loaded machine too
    assert live.controlplane.sim is not None
    unit = live.controlplane.sim.unit("nova-api", "ctl-2")
    live.call(live.controlplane.sim.hang, "nova-api", "ctl-2")
    page.wait_for_function("window.__seen.some(s => s.health === 'unhealthy')", timeout=20_000)
    expect(row).to_have_attribute("data-health", "healthy", timeout=30_000)
    expect(row).to_contain_text("in (ready)", timeout=10_000)
    seen = page.evaluate("window.__seen")
    bad = next(s for s in seen if s["health"] == "unhealthy")
    assert "unhealthy" in bad["row"] and "no answer within" in bad["row"]  # a word; the probe's words
    assert "nova-api: 1 healthy / 2 declared" in bad["service"]
    assert "nova-api on ctl-2 is unhealthy" in " ".join(s["live"] for s in seen)  # announced
    # The world agrees: haven restarted the hung unit once and put it back in the load balancer.
    assert unit.restarts_by_haven == 1 and not unit.hung
    assert live.controlplane.sim.balancer.admin[("nova_api", "ctl-2")] is MemberAdmin.READY
    assert page.evaluate("window.__notReloaded") is True  # it all came over the event stream
    assert not reconciling.done()  # the reconciler still runs until the fixture stops it
