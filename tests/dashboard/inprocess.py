"""The dashboard served from the test's own process: uvicorn on a free loopback port in a thread,
its event loop reachable from the test (``call``, ``run``), so that a test can run haven's own
runnables (a backup service, a reconciler) beside the dashboard, wired as ``haven serve`` wires them,
and reach into the simulated world they act on (which a ``haven serve`` subprocess would hide)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from playwright.sync_api import Page, expect
from starlette.applications import Starlette
from starlette.routing import Mount

from haven.api.auth import Principal
from haven.dashboard.app import ROOT
from haven.dashboard.hub import EventHub
from servers.process import free_port, port_open

T = TypeVar("T")


@dataclass(frozen=True)
class TwoTokens:
    """An authenticator that knows two tokens: an admin's and a reader's (as Keystone would give them
    roles, project "ops"); any other token is refused."""

    admin: str
    reader: str
    blocking = False

    def authenticate(self, token: str | None) -> Principal | None:
        if token == self.admin:
            return Principal("ops-admin", "ops", frozenset({"admin"}))
        if token == self.reader:
            return Principal("ops-reader", "ops", frozenset({"reader"}))
        return None


@dataclass
class Served:
    url: str
    loop: asyncio.AbstractEventLoop
    hub: EventHub
    stop: asyncio.Event  # set when the test ends: runnables started with ``run`` stop on it

    def call(self, fn: Any, *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def run(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


@contextlib.contextmanager
def serve_dashboard(dashboard: Starlette, hub: EventHub, port: int | None = None) -> Iterator[Served]:
    port = port or free_port()
    app = Starlette(routes=[Mount(ROOT, dashboard)])
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
    served = Served(f"http://127.0.0.1:{port}", loop, hub, stop)
    try:
        yield served
    finally:
        served.call(stop.set)
        served.call(hub.close)  # open pages' streams end: the server stops at once
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()


def log_in(page: Page, url: str, token: str, live: str = "live: following") -> None:
    """Log in with the local token, wait for the page's event stream, and mark the page: a test
    asserts ``not_reloaded(page)`` at its end (what it saw came over the stream)."""
    page.goto(f"{url}/dashboard/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#live")).to_contain_text(live)
    page.evaluate("window.__notReloaded = true")


def not_reloaded(page: Page) -> bool:
    return page.evaluate("window.__notReloaded === true") is True
