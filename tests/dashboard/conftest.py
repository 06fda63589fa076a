"""Browser fixtures: Playwright driving Debian's Chromium (/usr/bin/chromium, from `make system-deps`).

Playwright's own browser download cannot work on these machines, so the browser is always the
system's, started headless with the flags that keep it off the network (see /work/shared/FACTS.md);
one browser per test module, a fresh context (cookies, storage) per test. Module scope, not session:
Playwright's sync API keeps an event loop running in the main thread while it is open, and every
later test that calls asyncio.run() (or is an async test) would find it there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

CHROMIUM = Path(os.environ.get("HAVEN_TEST_CHROMIUM", "/usr/bin/chromium"))
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (installs Debian's chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    with tempfile.TemporaryDirectory(prefix="haven-chromium-") as profile:
        # launch() takes no user-data-dir flag; its own temporary profile is used, and this empty
        # folder is where Chromium's crash and cache files go.
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS, env={**os.environ, "HOME": profile}
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture(scope="module")
def patient_start() -> Iterator[None]:
    """`haven serve` given 90 s to answer instead of 30: a browser test's server starts while Chromium
    starts too, and on the shared 2-core machine under load a start took 22 to 35 s."""
    import clients.conftest

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clients.conftest, "START_TIMEOUT_S", 90.0)
        yield
