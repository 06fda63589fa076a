"""A follower's dashboard in a real browser: with several engines on a real etcd, the page of an
engine that does not lead says so in words, dates what it shows and links the leader's live
dashboard; when the leader stops and this engine takes over, the open page (never reloaded) says it
leads now, is live, and shows what the store gained meanwhile.

Two dashboards run in this process over one store (as several ``haven serve`` share PostgreSQL), each
with its own real ``EtcdElector`` on its own event loop, named as ``haven serve`` names itself
(``host:pid@address:port``). Ground truth: etcd's leader key names the engine the page says leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from dashboard.inprocess import Served, log_in, not_reloaded, serve_dashboard
from haven.api.auth import LocalTokenAuthenticator
from haven.coordination.election_etcd import EtcdElector
from haven.coordination.etcd import EtcdClient
from haven.dashboard.app import create_dashboard
from haven.dashboard.hub import EventHub
from haven.domain.clock import RealClock
from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import (
    Alert,
    AlertKind,
    Notification,
    NotificationStatus,
    NotificationType,
    Step,
    StepState,
)
from haven.store import Store
from servers.etcd import EtcdServer, etcd, etcd_server  # noqa: F401
from servers.process import free_port

pytestmark = pytest.mark.etcd
TOKEN = "follower-test-token"


@dataclass
class Engine:
    served: Served
    elector: EtcdElector
    client: EtcdClient
    port: int
    campaign: Future[None] | None = None
    resign: asyncio.Event | None = None

    def start(self) -> None:
        """The elector's run in this engine's loop, as haven serve runs it, until ``stop``."""
        self.resign = asyncio.Event()
        self.campaign = self.served.run(_campaign(self.elector, self.resign))

    def stop(self) -> None:
        """This engine stops: its elector resigns (revokes its lease), as at haven serve's stop."""
        if self.campaign is not None and self.resign is not None:
            self.served.call(self.resign.set)
            self.campaign.result(10)
            self.campaign = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dashboard/"


async def _campaign(elector: EtcdElector, stop: asyncio.Event) -> None:
    task = asyncio.create_task(elector.run())
    await stop.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def wait_until(check: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.fixture
def engines(tmp_path: Path, etcd: EtcdServer) -> Iterator[tuple[Engine, Engine, Store]]:  # noqa: F811
    clock = RealClock()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store, contextlib.ExitStack() as stack:
        made = []
        for name in ("engine-a", "engine-b"):
            port = free_port()
            client = EtcdClient(etcd.http_url, timeout_s=0.5, display_url=etcd.url)
            elector = EtcdElector(
                client, f"{name}:1@127.0.0.1:{port}", cluster=etcd.cluster, ttl_s=2, probe_interval_s=0.5
            )
            hub = EventHub()
            dashboard = create_dashboard(
                store, LocalTokenAuthenticator(TOKEN), hub, clock, leadership=elector
            )
            served = stack.enter_context(serve_dashboard(dashboard, hub, port))
            stack.callback(lambda s=served, c=client: s.run(c.aclose()).result(5))
            engine = Engine(served, elector, client, port)
            stack.callback(engine.stop)
            made.append(engine)
        yield made[0], made[1], store


def test_a_followers_page_says_so_links_the_leader_and_goes_live_when_it_takes_over(
    engines: tuple[Engine, Engine, Store],
    etcd: EtcdServer,  # noqa: F811
    page: Page,
) -> None:
    a, b, store = engines
    a.start()
    wait_until(a.elector.is_leader, "engine-a never led")
    b.start()
    wait_until(lambda: b.elector.status().leader == a.elector.identity, "engine-b never saw engine-a lead")

    log_in(page, f"http://127.0.0.1:{b.port}", TOKEN, live="not live: this engine is a follower")
    note = page.locator("#leadership")
    expect(note).to_have_attribute("data-role", "follower")
    expect(note).to_contain_text("Not the leader.")
    expect(note).to_contain_text(f"This engine ({b.elector.identity}) is a follower")
    expect(note).to_contain_text(f"The leader is {a.elector.identity}")
    link = note.get_by_role("link", name=f"its live dashboard, {a.url}")
    expect(link).to_have_attribute("href", a.url)
    other = page.context.new_page()  # the link leads to the leader's own login page
    other.goto(a.url)
    expect(other.get_by_label("Token")).to_be_visible()
    other.close()

    # The leader writes to the shared store; the follower's page does not follow (it said so).
    message = "written by the leader while engine-b followed"
    store.raise_alert(
        Alert("a-follow", AlertKind.RECOVERY_FAILED, message, time.time(), host=HostName("c-1"))
    )
    now = time.time()
    opened = Notification(NotificationId("n-while-following"), NotificationType.COMPUTE_HOST,
                          HostName("compute-7"), NotificationStatus.RUNNING, {}, now, now, now)  # fmt: skip
    store.create_notification(opened, [Step(opened.id, 0, "fence", "compute-7", StepState.DONE)])
    page.wait_for_timeout(500)
    expect(page.locator("#alerts")).not_to_contain_text(message)
    expect(page.locator("#notification-n-while-following")).to_have_count(0)

    a.stop()  # engine-a stops: it resigns, engine-b takes over
    wait_until(b.elector.is_leader, "engine-b never took over")
    expect(note).to_have_attribute("data-role", "leader", timeout=10_000)
    expect(note).to_contain_text(f"This engine ({b.elector.identity}) leads")
    expect(note).not_to_contain_text("Not the leader")
    expect(page.locator("#live")).to_contain_text("live: following the engine's events")
    expect(page.locator("#alerts")).to_contain_text(message)  # the store, read again at the takeover
    expect(page.locator("#notifications #notification-n-while-following")).to_contain_text("compute-7")
    # Ground truth: etcd's leader key names engine-b.
    _, kvs = b.served.run(b.client.get(b.elector.key)).result(5)
    assert [kv.value.decode() for kv in kvs] == [b.elector.identity]

    # The new leader's term lapses (etcd stops answering): its open page says so by itself.
    etcd.pause()
    try:
        expect(note).to_have_attribute("data-role", "follower", timeout=10_000)
        expect(note).to_contain_text("Not the leader.")
        expect(page.locator("#live")).to_contain_text("not live: this engine is a follower")
        assert not b.elector.is_leader()
    finally:
        etcd.resume()
    assert not_reloaded(page)
