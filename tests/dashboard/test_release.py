"""Releasing a gate hold from the dashboard: a real Keystone's users log in with their passwords.

`haven serve` takes Keystone's tokens ([keystone]) and the observer loses sight of most of one zone
of its simulated cloud, so the observer gate holds that segment. A reader sees the hold but no
release button, and a release posted with the reader's own session and CSRF token is refused: the
hold is still there as the API tells an admin. An admin releases it through the page, after a
confirmation, and the API then shows the release recorded with the admin's name and "(dashboard)".
A user's password (right or wrong) and haven's local token never show in any URL the browser asked
for, in the page, or in haven serve's log.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from clients.conftest import HavenServer, start_haven
from servers.keystone import Account, KeystoneLab

pytestmark = pytest.mark.keystone


@pytest.fixture(scope="module")
def served(
    keystone: KeystoneLab, tmp_path_factory: pytest.TempPathFactory, patient_start: None
) -> Iterator[HavenServer]:
    config = (
        "[keystone]\n"
        f'auth_url = "{keystone.url}"\n'
        f'username = "{keystone.service.username}"\n'
        f'password = "{keystone.service.password}"\n'
        f'project_name = "{keystone.service.project_name}"\n'
        "timeout_s = 30.0\n"  # a shared 2-core machine: Keystone's password checks can be slow
    )
    home = tmp_path_factory.mktemp("dashboard-keystone") / "home"
    argv = ("--inject", "observer-partition", "--inject-after", "3")
    yield from start_haven(home, *argv, config=config)


def status(server: HavenServer, admin: Account) -> dict[str, Any]:
    """What the API tells an admin (a fresh Keystone token, as any client would use)."""
    token = admin.session().get_token()
    # Generous: on a loaded 2-core machine haven's check of a new token with Keystone can take seconds.
    answer = httpx.get(f"{server.url}/v1/haven/status", headers={"X-Auth-Token": token}, timeout=60)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def held(server: HavenServer, admin: Account) -> str:
    """The held segment's id, once the gate holds it."""
    server.wait_for_log(r"segment_held", timeout_s=40)
    holds = status(server, admin)["holds"]
    assert len(holds) == 1, holds
    return str(holds[0]["segment_id"])


def log_in(page: Page, server: HavenServer, who: Account) -> None:
    page.goto(f"{server.url}/dashboard/login")
    page.get_by_label("Keystone user name").fill(who.username)
    page.get_by_label("Password").fill(who.password)
    page.get_by_label("Project").fill(who.project_name)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Gate holds")).to_be_visible()


def test_release_is_refused_to_a_reader(served: HavenServer, keystone: KeystoneLab, page: Page) -> None:
    segment_id = held(served, keystone.admin)
    log_in(page, served, keystone.reader)
    hold = page.locator(f"#hold-{segment_id}")
    expect(hold).to_contain_text("held")
    expect(hold).to_contain_text("Only an admin may release a hold")
    expect(hold.get_by_role("button")).to_have_count(0)

    csrf = json.loads(page.evaluate("document.body.getAttribute('hx-headers')"))["X-CSRF-Token"]
    refused = page.request.post(
        f"{served.url}/dashboard/segments/{segment_id}/release",
        form={"reason": "a reader tries", "csrf": csrf},
        headers={"Origin": served.url},
    )
    assert refused.status == 403
    assert "only an admin" in refused.text()
    after = status(served, keystone.admin)
    assert [h["segment_id"] for h in after["holds"]] == [segment_id]
    assert not [a for a in after["alerts"] if a["kind"] == "gate_released"]


def test_an_admin_releases_a_hold_confirmed_and_audited(
    served: HavenServer, keystone: KeystoneLab, browser: Browser
) -> None:
    segment_id = held(served, keystone.admin)
    page = browser.new_context().new_page()
    log_in(page, served, keystone.admin)
    no_csrf = page.request.post(
        f"{served.url}/dashboard/segments/{segment_id}/release",
        form={"reason": "no csrf token"},
        headers={"Origin": served.url},
    )
    assert no_csrf.status == 403  # the session cookie alone is not enough
    assert [h["segment_id"] for h in status(served, keystone.admin)["holds"]] == [segment_id]

    asked: list[str] = []

    def confirm(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", confirm)
    hold = page.locator(f"#hold-{segment_id}")
    hold.get_by_label("Why (recorded)").fill("rack 4 lost its PDU")
    hold.get_by_role("button", name=re.compile("Release")).click()
    expect(page.locator(f"#hold-{segment_id}")).to_have_count(0)
    assert asked and "recorded with your name" in asked[0]

    after = status(served, keystone.admin)
    assert after["holds"] == []
    released = [a for a in after["alerts"] if a["kind"] == "gate_released"]
    assert released, after["alerts"]
    for alert in released:
        assert alert["segment_id"] == segment_id
        assert "rack 4 lost its PDU" in alert["message"]
        assert "(dashboard)" in alert["message"]
    page.context.close()


def test_passwords_and_the_local_token_stay_out_of_urls_and_the_log(
    served: HavenServer, keystone: KeystoneLab, browser: Browser
) -> None:
    who, wrong = keystone.reader, f"wrong-{secrets.token_hex(8)}"
    secrets_ = {"the password": who.password, "a wrong password": wrong, "the local token": served.token}
    context = browser.new_context()
    page = context.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))  # every page, form post, redirect, stream, asset
    login = f"{served.url}/dashboard/login"

    def attempt(token: str = "", password: str = "") -> None:
        page.goto(login)
        if token:
            page.get_by_label("Token").fill(token)
        else:
            page.get_by_label("Keystone user name").fill(who.username)
            page.get_by_label("Password").fill(password)
            page.get_by_label("Project").fill(who.project_name)
        page.get_by_role("button", name="Log in").click()

    attempt(password=wrong)
    expect(page.get_by_role("alert")).to_contain_text("not recognised")
    attempt(token=served.token)  # Keystone mode: the local token is not a login here
    expect(page.get_by_role("alert")).to_contain_text("not recognised")
    pages = [page.content()]
    attempt(password=who.password)
    expect(page.get_by_role("heading", name="Gate holds")).to_be_visible()
    expect(page.locator("#live")).to_contain_text("live")  # the event stream's URL was asked for too
    pages.append(page.content())
    context.close()

    log = served.log.read_text()
    assert log.count("dashboard: a login was refused") >= 2, log  # the log does hear the dashboard
    assert any("/dashboard/events" in u for u in urls) and any(u.endswith("/dashboard/") for u in urls)
    for what, secret in secrets_.items():
        forms = {secret, quote(secret, safe=""), quote_plus(secret)}
        assert not [u for u in urls if any(f in u for f in forms)], f"{what} in a URL"
        assert not any(secret in p for p in pages), f"{what} in a page"
        assert secret not in log, f"{what} in haven serve's log"
