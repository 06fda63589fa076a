"""The dashboard of a real `haven serve` on the simulated cloud, in a real browser.

Without a session: 401 and the login page. With the local token: logged in by a cookie that is
HttpOnly and SameSite=Strict, the token nowhere in the URL or the server's log. Then a host power
loss injected into the served cloud: the page, never reloaded, shows that host dead as the engine
confirms it (the engine's own line in the log names the host), and its notification's timeline. A
drill started from the page unfolds there phase by phase over its own event stream, then its verdict;
a page reloaded while it runs shows its timeline so far and follows it to the verdict.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from clients.conftest import HavenServer, start_haven

# The live test (first in this module) must have its page open by then: on a quiet machine it is open
# a few seconds after haven serve answers (it was 30 s, most of this test's time spent waiting).
INJECT_AFTER_S = 15


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, patient_start: None) -> Iterator[HavenServer]:
    home = tmp_path_factory.mktemp("dashboard") / "home"
    yield from start_haven(home, "--inject", "host-power-loss", "--inject-after", str(INJECT_AFTER_S))


def log_in(page: Page, server: HavenServer) -> None:
    page.goto(f"{server.url}/dashboard/login")
    page.get_by_label("Token").fill(server.token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hosts by condition")).to_be_visible()


def test_login_and_a_host_dies_live(served: HavenServer, context: BrowserContext, page: Page) -> None:
    log_in(page, served)
    cookie = next(c for c in context.cookies() if c["name"] == "haven_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script on the page can read it
    assert served.token not in page.url
    expect(page.locator("#live")).to_contain_text("live")
    page.evaluate("window.__notReloaded = true")
    dead_rows = page.locator("tr[data-condition='dead']")
    assert dead_rows.count() == 0, "the failure was injected before the page was open: raise INJECT_AFTER_S"
    expect(page.locator("#no-notifications")).to_be_visible()

    injected = served.wait_for_log(r"injected: power lost on (\S+)", timeout_s=INJECT_AFTER_S + 20).group(1)
    confirmed = served.wait_for_log(r"host_confirmed_dead\s+(\S+)", timeout_s=30).group(1)
    assert confirmed == injected

    row = page.locator(f"#host-{injected}")
    expect(row).to_have_attribute("data-condition", "dead", timeout=10_000)
    expect(row).to_contain_text("dead")  # a word, not only a colour
    expect(row).to_contain_text("BMC reports power off")
    expect(page.locator("#counts li[data-condition='dead'] strong")).to_have_text("1")
    chip = page.locator(f".map .zone .rack #chip-{injected}")  # the failure-domain map, live too
    expect(chip).to_have_attribute("data-condition", "dead")
    expect(chip).to_contain_text("dead")  # for screen readers; the symbol shows beside the colour
    expect(page.locator(".map .zone")).to_have_count(3)  # the embedded default: 3 zones
    card = page.locator("article.notification", has_text=injected)
    expect(card).to_contain_text("fence", timeout=10_000)
    expect(card.locator(".timeline")).to_contain_text(re.compile(r"evacuate \d+/\d+"), timeout=20_000)
    expect(page.locator("#no-notifications")).to_have_count(0)
    expect(card.locator(".status")).to_have_text("finished", timeout=30_000)
    plotted = page.locator("#plot table.figures tbody tr", has_text=injected)
    expect(plotted).to_have_count(1)  # the plot of recovery times took the finished recovery, live
    expect(plotted.locator("td").last).to_contain_text("finished")
    assert page.evaluate("window.__notReloaded") is True  # it all came over the event stream
    assert served.token not in served.log.read_text()


def test_without_a_session_it_is_401_and_the_login_page(served: HavenServer, page: Page) -> None:
    answer = page.goto(f"{served.url}/dashboard/")
    assert answer is not None and answer.status == 401
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_label("Token")).to_be_visible()
    events = httpx.get(f"{served.url}/dashboard/events", timeout=5)
    assert events.status_code == 401
    forged = httpx.get(f"{served.url}/dashboard/", cookies={"haven_session": "made-up"}, timeout=5)
    assert forged.status_code == 401


def test_a_wrong_token_is_refused(served: HavenServer, page: Page) -> None:
    page.goto(f"{served.url}/dashboard/login")
    page.get_by_label("Token").fill("not-the-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not recognised")
    assert not [c for c in page.context.cookies() if c["name"] == "haven_session"]


def test_a_cross_site_login_is_refused(served: HavenServer) -> None:
    answer = httpx.post(
        f"{served.url}/dashboard/login",
        data={"token": served.token},
        headers={"Origin": "http://evil.example"},
        timeout=5,
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


def test_the_keyboard_reaches_everything(served: HavenServer, page: Page) -> None:
    log_in(page, served)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto(f"{served.url}/dashboard/")
    reached = []
    for _ in range(4):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate("document.activeElement.tagName + ':' + document.activeElement.textContent")
        )
    assert "BUTTON:Log out" in reached


# Each state the drill's panel showed, recorded in the page as it changes (a state shorter than
# Playwright's polling is not missed): the phases then listed, and whether the verdict was shown.
RECORD_DRILL = """() => {
  window.__drill = [];
  new MutationObserver(() => {
    const panel = document.querySelector('#drill-result');
    if (panel === null) return;
    const phases = [...panel.querySelectorAll('.timeline li[data-phase]')].map(li => li.dataset.phase);
    const verdict = panel.querySelector('.verdict') !== null;
    const last = window.__drill[window.__drill.length - 1];
    if (last === undefined || last.phases.join() !== phases.join() || last.verdict !== verdict) {
      window.__drill.push({at: performance.now(), phases, verdict});
    }
  }).observe(document.querySelector('#drill-out'), {childList: true, subtree: true, characterData: true});
}"""


def test_a_drill_run_from_the_page(served: HavenServer, page: Page) -> None:
    # haven serve said where its dashboard is (the address this test's pages open)
    said = served.wait_for_log(r"dashboard\s+on\s+(http://\S+/dashboard/)", timeout_s=5).group(1)
    assert said == f"{served.url}/dashboard/"
    log_in(page, served)
    notifications = page.locator("article.notification").count()
    page.evaluate(RECORD_DRILL)
    page.get_by_label("Scenario").select_option("host-power-loss")
    page.get_by_label("Seed").fill("3")
    page.get_by_role("button", name="Run the drill").click()
    result = page.locator("#drill-result")
    # Live: the first phase shows while the drill still runs, before any verdict...
    expect(result.locator(".timeline li", has_text="suspected")).to_be_visible()
    assert result.locator(".verdict").count() == 0, "the verdict came with the first phase: not live"
    # ...and a second start meanwhile is refused, saying why (the first one goes on).
    page.get_by_role("button", name="Run the drill").click()
    expect(page.locator("#messages")).to_contain_text("a drill is already running")
    expect(result.locator(".verdict")).to_contain_text("recovered", timeout=60_000)
    expect(result.locator(".timeline li", has_text="verified")).to_be_visible()
    expect(result.locator(".counters")).to_contain_text("vms lost")
    lost = result.locator(".counters div", has_text="vms lost").locator("dd")
    expect(lost).to_have_text("0")  # the drill's judge counts from its simulated cloud's ground truth
    # The timeline grew state by state on the page before the verdict, over about 5 s (paced).
    shown = page.evaluate("window.__drill")
    verdict_at = next(s["at"] for s in shown if s["verdict"])
    before = [s for s in shown if not s["verdict"]]
    grown = [s["phases"] for s in before if s["phases"]]
    assert grown[0] == ["suspected"] and len(grown) >= 5, grown
    assert all(len(a) <= len(b) for a, b in itertools.pairwise(grown)), grown
    first_at = next(s["at"] for s in before if s["phases"])
    assert verdict_at - first_at >= 3000, shown  # ms
    # A fresh simulated cloud: the engine's own cloud and notifications are untouched.
    expect(page.locator("article.notification")).to_have_count(notifications)

    page.get_by_label("Hosts", exact=True).fill("999999")
    page.get_by_role("button", name="Run the drill").click()
    expect(page.locator("#messages")).to_contain_text("drill limit")


def test_a_page_reloaded_during_a_drill_shows_it_and_follows_it(served: HavenServer, page: Page) -> None:
    log_in(page, served)
    page.get_by_label("Scenario").select_option("host-power-loss")
    page.get_by_label("Seed").fill("4")
    page.get_by_role("button", name="Run the drill").click()
    expect(page.locator("#drill-result .timeline li", has_text="suspected")).to_be_visible()
    page.reload()
    # The reloaded page shows the running drill's timeline as it stands, without any click...
    result = page.locator("#drill-result")
    expect(result.locator(".timeline li[data-phase='suspected']")).to_be_visible()
    at_load = page.evaluate("[...document.querySelectorAll('#drill-result li[data-phase]')].length")
    assert result.locator(".verdict").count() == 0, "the drill ended before the page was back: too slow"
    page.evaluate("window.__notReloaded = true")
    page.evaluate(RECORD_DRILL)
    # ...and follows the drill's own stream: more phases, then the verdict, never reloaded again.
    expect(result.locator(".verdict")).to_contain_text("recovered", timeout=60_000)
    expect(result.locator(".timeline li", has_text="verified")).to_be_visible()
    expect(result.locator(".counters div", has_text="vms lost").locator("dd")).to_have_text("0")
    shown = page.evaluate("window.__drill")
    grew = [s["phases"] for s in shown if not s["verdict"] and len(s["phases"]) > at_load]
    assert grew, (at_load, shown)  # a phase arrived over the stream before the verdict
    assert page.evaluate("window.__notReloaded") is True
    page.reload()  # over: a page opened now shows no drill (the next one may start)
    expect(page.get_by_role("heading", name="Drills")).to_be_visible()
    expect(page.locator("#drill-result")).to_have_count(0)


def test_an_open_event_stream_ends_when_haven_stops(served: HavenServer) -> None:
    """Last in this module: it stops the module's server (the fixture then finds it stopped, cleanly)."""
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.post("/dashboard/login", data={"token": served.token}).status_code == 303
        with client.stream("GET", "/dashboard/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: live"
            started = time.monotonic()
            served.proc.send_signal(signal.SIGINT)
            for _ in lines:  # the server ends the stream as it stops
                pass
            ended_s = time.monotonic() - started
    assert served.proc.wait(timeout=60) == 0
    assert ended_s < 3.0  # not uvicorn's 5 s of graceful shutdown, then a cancelled stream
    log = served.log.read_text()
    assert "stopped cleanly" in log and "Traceback" not in log
