"""Accessibility in a real browser: the keyboard reaches and operates everything, focus is always
visible, every control has an accessible name, and no condition is told by colour alone.

The dashboard runs in this process over a store holding one of everything the page colours: a host
in each condition (healthy, suspect, dead, isolated, held, agent down), a gate hold, a recovery in
progress and a finished one (its timeline's step states, the plot's phases), a control-plane replica
in each health, canary boots of each outcome, and recovery points within policy, stale and none yet.
What is judged is what the browser exposes: the text left once everything marked aria-hidden (the
symbols) is removed, which is what a screen reader or a colour-blind reader gets, and the page's
focus order as Tab moves it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Dialog, Page, expect

from dashboard.inprocess import Served, log_in, serve_dashboard
from haven.api.auth import LocalTokenAuthenticator
from haven.backups.config import SchedulerSettings
from haven.backups.planner import BackupPlan, ServerStatus
from haven.canary.model import CanaryRun, Outcome, RunState, run_json
from haven.canary.runner import BOOT
from haven.dashboard.app import create_dashboard
from haven.dashboard.board import CONDITIONS, BackupStatus
from haven.dashboard.hub import EventHub
from haven.domain.backups import BackupPolicy
from haven.domain.clock import RealClock
from haven.domain.controlplane import ReplicaHealth, ReplicaState
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import (
    Alert,
    AlertKind,
    Notification,
    NotificationStatus,
    NotificationType,
    Segment,
    SegmentHost,
    Step,
    StepState,
)
from haven.store import Store

TOKEN = "a11y-test-token"
SEG = SegmentId("seg-1")
# The visible text of every element with a colour class (c-*: a condition; p-*: a timeline step's
# state; ph-*: a plot bar's phase), without what is aria-hidden; an SVG bar's text is its <title>.
COLOURED = """() => {
  const said = (el) => {
    const c = el.cloneNode(true);
    c.querySelectorAll('[aria-hidden="true"]').forEach((n) => n.remove());
    return c.textContent.replace(/\\s+/g, " ").trim();
  };
  const out = [];
  for (const el of document.querySelectorAll("[class]")) {
    for (const cls of el.classList) {
      const m = cls.match(/^(c|p|ph)-(.+)$/);
      if (m) out.push({kind: m[1], word: m[2], text: said(el), tag: el.tagName,
                       colour: getComputedStyle(el).color + "/" + getComputedStyle(el).fill});
    }
  }
  return out;
}"""
FOCUSABLE = """() => [...document.querySelectorAll(
  'a[href], button, input:not([type=hidden]), select, textarea, [tabindex]:not([tabindex="-1"])')]
  .filter((el) => el.getClientRects().length > 0 && !el.disabled).map((el) => el.outerHTML.slice(0, 120))"""
FOCUSED = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  const label = el.labels && el.labels.length ? el.labels[0].textContent : "";
  return {html: el.outerHTML.slice(0, 120), tag: el.tagName, id: el.id,
          name: (el.getAttribute("aria-label") || label || el.textContent || "").replace(/\\s+/g, " ").trim(),
          outline: style.outlineStyle, width: parseFloat(style.outlineWidth)};
}"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    now = time.time()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        _seed(store, now)
        hub = EventHub()
        plan = BackupPlan((), (), _recovery_points(now), 0, None)
        domains = {HostName(f"compute-{i}"): ("az1", "rack-1") for i in range(1, 7)}
        dashboard = create_dashboard(
            store, LocalTokenAuthenticator(TOKEN), hub, RealClock(), domains=domains,
            backups=lambda: BackupStatus(plan, SchedulerSettings()),
        )  # fmt: skip
        with serve_dashboard(dashboard, hub) as running:
            yield running


def _seed(store: Store, now: float) -> None:
    store.create_segment(Segment(SEG, "segment-az1"))
    hosts = [HostName(f"compute-{i}") for i in range(1, 7)]
    store.add_hosts([SegmentHost(h, SEG) for h in hosts])
    store.set_host_conditions(dict(zip(hosts, CONDITIONS, strict=True)))
    store.raise_alert(
        Alert("hold-1", AlertKind.GATE_HOLD, "5 of 6 hosts silent at once", now, segment_id=SEG)
    )
    for nid, status, states in (
        ("n-done", NotificationStatus.FINISHED, ["done"] * 5),
        ("n-now", NotificationStatus.RUNNING, ["done", "failed", "running", "pending", "pending", "pending"]),
    ):
        n = Notification(NotificationId(nid), NotificationType.COMPUTE_HOST, HostName("compute-3"), status,
                         {}, now - 60, now - 60, now)  # fmt: skip
        kinds = ["fence", "force_down", "plan", "evacuate", "evacuate", "evacuate"]
        steps = [
            Step(n.id, i, kinds[i], f"s-{i}", StepState(state), started_at=now - 59 + i,
                 finished_at=now - 58.5 + i if state in ("done", "failed") else None)
            for i, state in enumerate(states)
        ]  # fmt: skip
        store.create_notification(n, steps)
    replicas = [
        ReplicaState("nova-api", HostName(f"ctl-{i}"), "rack-1", health, "active", "ready", "", now)  # type: ignore[arg-type]
        for i, health in enumerate(ReplicaHealth)
    ]
    store.record_replicas(replicas)
    for i, (state, outcome) in enumerate(
        [(RunState.DONE, Outcome.OK), (RunState.DONE, Outcome.SLOW), (RunState.DONE, Outcome.FAILED),
         (RunState.BOOTING, None)]
    ):  # fmt: skip
        run = CanaryRun(str(i), f"az{i}", f"canary-{i}", now - 30 + i, state, phases={"accepted": 0.4},
                        outcome=outcome)  # fmt: skip
        store.save_canary(BOOT, run_json(run))


def _recovery_points(now: float) -> tuple[ServerStatus, ...]:
    hourly = BackupPolicy("hourly")
    return (
        ServerStatus("s-1", "web-1", hourly, 0, 0, 0, now - 600, False, False),  # within policy
        ServerStatus("s-2", "db-1", hourly, 0, 0, 0, now - 50_000, True, True),  # stale
        ServerStatus("s-3", "new-1", hourly, 0, 0, 0, None, False, False),  # none yet
    )


def test_no_condition_is_told_by_colour_alone(served: Served, page: Page) -> None:
    log_in(page, served.url, TOKEN)
    expect(page.locator("#main")).to_contain_text("nova-api")
    coloured: list[dict[str, Any]] = page.evaluate(COLOURED)
    missing = [
        c for c in coloured if c["word"].replace("_", " ").lower() not in c["text"].lower()
    ]  # a colour whose word is not said
    assert not missing, missing
    said = {(c["kind"], c["word"]) for c in coloured}
    # Not vacuous: every condition, replica health, boot outcome, recovery point, step state and
    # phase the page colours was on it, and coloured differently from the page's plain text.
    wanted = {("c", w) for w in [*CONDITIONS, *ReplicaHealth, "ok", "slow", "failed", "booting"]}
    wanted |= {("c", w) for w in ("within_policy", "stale", "none_yet")}
    wanted |= {("p", w) for w in ("done", "running", "failed", "pending")}
    wanted |= {("ph", w) for w in ("fence", "force_down", "plan", "evacuate")}
    assert wanted <= said, wanted - said
    plain = page.evaluate("getComputedStyle(document.body).color")
    assert all(c["colour"].split("/")[0] != plain for c in coloured if c["kind"] == "c")
    # The map's chips as the accessibility tree reads them: the host and its condition in words.
    chips = page.locator(".chips").first.aria_snapshot()
    for i, condition in enumerate(CONDITIONS, start=1):
        assert re.search(rf"compute-{i}\s+{condition.replace('_', ' ')}", chips), chips


def test_the_keyboard_reaches_and_operates_everything(served: Served, page: Page) -> None:
    log_in(page, served.url, TOKEN)
    expect(page.locator("#holds")).to_contain_text("segment-az1 held")
    page.goto(f"{served.url}/dashboard/")
    expect(page.locator("#live")).to_contain_text("live: following")
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUSED)
    assert first["name"] == "Skip to the content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"  # past the header, to the content

    page.goto(f"{served.url}/dashboard/")
    expect(page.locator("#live")).to_contain_text("live: following")
    page.wait_for_timeout(300)  # the stream's first update (sent with that line) swapped in: no more
    focusable = set(page.evaluate(FOCUSABLE))
    reached: list[dict[str, Any]] = []
    for _ in range(len(focusable) + 5):
        page.keyboard.press("Tab")
        now = page.evaluate(FOCUSED)
        if (reached and now["html"] == reached[0]["html"]) or now["tag"] == "BODY":
            break
        reached.append(now)
    assert {r["html"] for r in reached} == focusable  # every link, button and field, by Tab alone
    unnamed = [r["html"] for r in reached if not r["name"]]
    assert not unnamed  # every control says what it is
    unseen = [r["html"] for r in reached if r["outline"] == "none" or r["width"] < 2]
    assert not unseen  # the focus is always visible (3 px outline)

    # The release, by keyboard alone: the reason typed, the button pressed, the browser's confirmation.
    asked: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()  # the operator thinks again: nothing is released

    page.on("dialog", answer)
    page.get_by_label("Why (recorded)").focus()
    page.keyboard.type("rack 4 lost its PDU")
    page.keyboard.press("Tab")
    assert page.evaluate(FOCUSED)["name"] == "Release segment-az1"
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 5
    while not asked and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert asked and "haven will fence and recover its silent hosts" in asked[0]
    expect(page.locator("#holds")).to_contain_text("segment-az1 held")  # dismissed: still held
