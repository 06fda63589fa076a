"""The failure-domain map and the segment tables follow what changes after `haven serve` started.

In a real browser, on a `haven serve` that starts with no segment (``[segments] bootstrap = "none"``):
a segment created and a host put in it through the API show up on the open page, never reloaded, the
host in its own zone and rack (the simulated cloud's, rebuilt here from the same numbers). In this
process, as `haven serve` mounts it (``mount_dashboard`` with the cloud's ``list_hosts``): a host that
the simulated cloud moves to another zone and rack, then puts in a new segment, is shown there over
the page's event stream, then when a page opens.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect
from starlette.applications import Starlette

from clients.conftest import HavenServer, start_haven
from dashboard.inprocess import log_in, not_reloaded, serve_dashboard
from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.dashboard.hub import EventHub
from haven.dashboard.mount import mount_dashboard
from haven.domain.clock import RealClock
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import RecoveryMethod, Segment
from haven.service.bootstrap import segments_per_zone
from haven.store import Store

TOKEN = "map-test-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, patient_start: None) -> Iterator[HavenServer]:
    home = tmp_path_factory.mktemp("dashboard-map") / "home"
    yield from start_haven(home, config='[segments]\nbootstrap = "none"\n')


def test_a_segment_created_after_start_shows_live_with_its_host_in_its_zone(
    served: HavenServer, page: Page
) -> None:
    _, topology = build_cloud(CloudSpec(), RealClock())  # haven serve's default simulated cloud
    host = sorted(topology.zones["az2"])[5]
    rack = next(r for r, members in topology.racks.items() if host in members)
    log_in(page, served.url, served.token)
    expect(page.locator("#map")).to_contain_text("No host in a failover segment yet")
    expect(page.locator("#segments")).to_contain_text("No failover segment yet")

    api = httpx.Client(base_url=served.url, headers={"X-Auth-Token": served.token}, timeout=30)
    with api:
        body = {"name": "segment-late", "recovery_method": "auto", "service_type": "COMPUTE"}
        created = api.post("/v1/segments", json={"segment": body})
        assert created.status_code in (200, 201), created.text
        segment = created.json()["segment"]["uuid"]
        expect(page.locator("#segments caption")).to_have_text("Segment segment-late")  # still empty
        expect(page.locator("#segments")).to_contain_text("No host in this segment yet")
        added = api.post(
            f"/v1/segments/{segment}/hosts",
            json={"host": {"name": host, "type": "COMPUTE", "control_attributes": "SSH"}},
        )
        assert added.status_code in (200, 201), added.text

    zone = page.locator(".map section.zone", has=page.locator(f"#chip-{host}"))
    expect(zone.locator("h3")).to_have_text("Zone az2")
    expect(zone.locator(".rack", has=page.locator(f"#chip-{host}")).locator("h4")).to_have_text(rack)
    expect(page.locator(f"#chip-{host}")).to_have_attribute("data-condition", "healthy")
    expect(page.locator(f"#segments #host-{host}")).to_contain_text("healthy")
    expect(page.locator("#counts li[data-condition='healthy'] strong")).to_have_text("1")
    expect(page.locator("#live")).to_contain_text(f"{host} is in segment segment-late")
    assert not_reloaded(page)


MAP_PART = re.compile(r'<div id="map".*?(?=<div id="segments")', re.S)


def test_a_host_moved_in_the_cloud_then_put_in_a_new_segment(tmp_path: Path) -> None:
    clock = RealClock()
    cloud, topology = build_cloud(CloudSpec(hosts=6, vms=0, zones=2), clock)
    with ThreadPoolExecutor(1) as thread:  # Playwright's loop runs in this thread (see conftest)
        hosts = thread.submit(asyncio.run, cloud.list_hosts()).result()
    moved = sorted(topology.zones["az1"])[0]
    hub = EventHub()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        segments_per_zone(store, hosts, RecoveryMethod.AUTO)
        app = Starlette()
        mount_dashboard(app, store, hub, clock, token=TOKEN, hosts=hosts, read_hosts=cloud.list_hosts)
        dashboard = app.routes[0].app  # type: ignore[attr-defined]
        with serve_dashboard(dashboard, hub) as served, httpx.Client(base_url=served.url, timeout=30) as web:
            assert web.post("/dashboard/login", data={"token": TOKEN}).status_code == 303
            assert _zone_and_rack(web.get("/dashboard/").text, moved) == ("az1", "az1-rack01")

            # The cloud moves the host (a new zone, a new rack), and the API puts it in a new segment.
            sim = cloud.sim_host(moved)
            sim.zone, sim.aggregate = "az3", "az3-rack07"
            with web.stream("GET", "/dashboard/events") as stream:
                lines = stream.iter_lines()
                assert next(lines) == "event: live"
                opening = _next_update_with(lines, 'id="map"')  # the stream's first message: all of it
                assert _zone_and_rack(opening, moved) == ("az1", "az1-rack01")  # not read again yet
                segment = Segment(SegmentId(uuid.uuid4().hex), "segment-az3", RecoveryMethod.AUTO)
                late = store.create_segment(segment)
                store.update_host(HostName(moved), segment_id=late.id)
                # what the engine tells its sinks when the API wrote segments or hosts (reload_membership)
                served.call(hub, EngineEvent(EventKind.SEGMENTS_CHANGED, clock.now()))
                update = _next_update_with(lines, "segment-az3")
            assert _zone_and_rack(update, moved) == ("az3", "az3-rack07")
            assert re.search(rf'<caption>Segment segment-az3</caption>.*?id="host-{moved}"', update, re.S)
            # A page opened now shows the same.
            assert _zone_and_rack(web.get("/dashboard/").text, moved) == ("az3", "az3-rack07")


def _next_update_with(lines: Iterator[str], words: str) -> str:
    """The data of the next ``update`` message that contains ``words`` (others are skipped)."""
    event, data = "", []
    for line in lines:
        if line.startswith("event: "):
            event, data = line[len("event: ") :], []
        elif line.startswith("data: "):
            data.append(line[len("data: ") :])
        elif not line and event == "update" and words in "\n".join(data):
            return "\n".join(data)
    raise AssertionError(f"the stream ended with no update naming {words!r}")


def _zone_and_rack(html: str, host: str) -> tuple[str, str] | None:
    """Where the map (a page, or an update's map) puts the host's chip."""
    found = MAP_PART.search(html)
    assert found is not None, html
    zone = rack = ""
    for m in re.finditer(r'<h3>Zone ([^<]+)</h3>|<h4>([^<]+)</h4>|id="chip-([^"]+)"', found.group(0)):
        if m.group(1):
            zone = m.group(1)
        elif m.group(2):
            rack = m.group(2)
        elif m.group(3) == host:
            return zone, rack
    return None
