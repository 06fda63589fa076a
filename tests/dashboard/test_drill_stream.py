"""Drills started from the dashboard, followed over their own event stream (no browser).

The dashboard runs in this process on uvicorn (dashboard.inprocess), as ``haven serve`` mounts it.
An admin starts a host power loss: the answer (202) is the drill's panel, at once; its stream then
sends the phases one after another while the drill runs (each new phase on its own, some time
before the next), and the verdict last, judged from the simulated cloud's ground truth. Meanwhile a
second start is refused (409); a reader may neither start nor follow one; a drill that cannot run
says so; and a server that stops ends the pacing, so the drill finishes at once.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import haven.dashboard.drills as drills
from dashboard.inprocess import Served, TwoTokens, serve_dashboard
from haven.dashboard.app import create_dashboard
from haven.dashboard.drills import FAILED, FINISHED, DrillRunner, Pacing
from haven.dashboard.hub import EventHub
from haven.domain.clock import RealClock
from haven.store import Store

ADMIN, READER = "drill-admin-token", "drill-reader-token"
PHASE = re.compile(r'data-phase="([^"]+)"')


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    hub = EventHub()
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as store:
        dashboard = create_dashboard(store, TwoTokens(ADMIN, READER), hub, RealClock())
        with serve_dashboard(dashboard, hub) as served:
            yield served


LogIn = Callable[[str], tuple[httpx.Client, str]]


@pytest.fixture
def log_in(served: Served) -> Iterator[LogIn]:
    """Log in with a token: a client with a session, and the page's CSRF token."""
    clients: list[httpx.Client] = []

    def log_in(token: str) -> tuple[httpx.Client, str]:
        client = httpx.Client(base_url=served.url, timeout=30)
        clients.append(client)
        return _logged_in(client, token)

    yield log_in
    for client in clients:
        client.close()


def _logged_in(client: httpx.Client, token: str) -> tuple[httpx.Client, str]:
    assert client.post("/dashboard/login", data={"token": token}).status_code == 303
    page = client.get("/dashboard/")
    found = re.search(r'"X-CSRF-Token": "([^"]+)"', page.text)
    assert page.status_code == 200 and found is not None
    return client, found.group(1)


def messages(client: httpx.Client, path: str) -> Iterator[tuple[float, str, str]]:
    """(arrival time, event, data) of each server-sent event, until the stream ends."""
    event, data = "", []
    with client.stream("GET", path) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
            elif not line and event:
                yield time.monotonic(), event, "\n".join(data)
                event, data = "", []


def test_a_drill_unfolds_phase_by_phase_then_its_verdict(served: Served, log_in: LogIn) -> None:
    admin, csrf = log_in(ADMIN)
    started = time.monotonic()
    answer = admin.post(
        "/dashboard/drills",
        data={"scenario": "host-power-loss", "hosts": "30", "vms": "300", "seed": "3"},
        headers={"X-CSRF-Token": csrf},
    )
    assert answer.status_code == 202, answer.text
    assert time.monotonic() - started < 2.0  # the answer does not wait for the drill
    stream = re.search(r'sse-connect="(/dashboard/drills/[0-9a-f]+/events)"', answer.text)
    assert stream is not None and 'sse-close="end"' in answer.text and "verdict" not in answer.text

    # Another start while it runs is refused, and so is a reader, who may not follow it either.
    again = admin.post("/dashboard/drills", data={"scenario": "rack-loss"}, headers={"X-CSRF-Token": csrf})
    assert again.status_code == 409 and "already running (host-power-loss" in again.text
    reader, reader_csrf = log_in(READER)
    refused = reader.post(
        "/dashboard/drills", data={"scenario": "rack-loss"}, headers={"X-CSRF-Token": reader_csrf}
    )
    assert refused.status_code == 403 and "only an admin" in refused.text
    assert reader.get(stream.group(1)).status_code == 403
    # A page opened now (reloaded) shows the running drill, following the same stream; a reader's not.
    assert f'sse-connect="{stream.group(1)}"' in admin.get("/dashboard/").text
    assert "drill-result" not in reader.get("/dashboard/").text
    no_csrf = admin.post("/dashboard/drills", data={"scenario": "rack-loss"})
    assert no_csrf.status_code == 403
    assert httpx.get(f"{served.url}{stream.group(1)}", timeout=5).status_code == 401

    seen = list(messages(admin, stream.group(1)))
    assert seen[-1][1] == "end"
    drill = [(at, data) for at, event, data in seen if event == "drill"]
    final_at, final = drill[-1]
    assert 'class="verdict ok"' in final and "recovered" in final
    assert re.search(r"<dt>vms lost</dt><dd>0</dd>", final)  # the judge's ground truth
    assert re.search(r"<dt>vms running twice</dt><dd>0</dd>", final)
    said = [data for _, event, data in seen if event == "said"]  # what a screen reader hears
    assert said[-1] == "the drill ended: recovered" and "drill: suspected" in said
    assert len(said) < len([d for _, e, d in seen if e == "drill"]) / 2  # on a change, not each message
    # Live: the timeline grew message by message before any verdict, one phase after another.
    before = [(at, PHASE.findall(data)) for at, data in drill[:-1]]
    assert not any("verdict" in data for _, data in drill[:-1])
    grown = [phases for _, phases in before if phases]
    assert grown[0] == ["suspected"]
    firsts: dict[str, float] = {}
    for at, phases in before:
        for p in phases:
            firsts.setdefault(p, at)
    assert list(firsts) == ["suspected", "confirmed", "fenced", "forced down", "planned", "evacuating",
                            "verified"]  # fmt: skip
    times = list(firsts.values())
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(times))  # each on screen a while
    assert final_at - firsts["suspected"] >= 3.0
    assert final_at - started < 12.0  # the whole drill, paced, stays short (about 7.5 s measured)

    assert "drill-result" not in admin.get("/dashboard/").text  # over: a page opened now shows none
    # Finished: the next start is accepted.
    later = admin.post("/dashboard/drills", data={"scenario": "vm-crash"}, headers={"X-CSRF-Token": csrf})
    assert later.status_code == 202


def test_an_unknown_drill_is_said_so_and_its_stream_ends(log_in: LogIn) -> None:
    admin, _ = log_in(ADMIN)
    seen = list(messages(admin, "/dashboard/drills/0123456789abcdef/events"))
    assert [event for _, event, _ in seen] == ["drill", "end"]
    assert "not known here any more" in seen[0][2]


FAST = Pacing(speed=20.0, phase_s=0.05, watch_s=2.0)


async def test_a_drill_that_cannot_run_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the simulated cloud could not be built")

    monkeypatch.setattr(drills, "run_drill", broken)
    runner = DrillRunner(pacing=FAST)
    run = runner.start({"scenario": "host-power-loss"}, "user ops")
    views = [v async for v in run.views()]
    assert views[-1].state == FAILED and "could not be built" in views[-1].error
    assert run.task is not None and run.task.done()
    again = runner.start({"scenario": "host-power-loss"}, "user ops")  # not stuck
    assert again is not run and [v.state async for v in again.views()][-1] == FAILED


async def test_bad_input_is_refused_before_anything_runs() -> None:
    runner = DrillRunner(pacing=FAST)
    for form, status, words in (
        ({"scenario": "no-such"}, 400, "Unknown scenario"),
        ({"scenario": "rack-loss", "hosts": "many"}, 400, "whole numbers"),
        ({"scenario": "rack-loss", "hosts": "999999"}, 400, "drill limit"),
    ):
        with pytest.raises(drills.DrillRefused) as refused:
            runner.start(form, "user ops")
        assert refused.value.status == status and words in str(refused.value)
    assert runner.current is None


async def test_a_stopping_server_ends_the_pacing_at_once() -> None:
    hub = EventHub()
    runner = DrillRunner(hub)  # the default pacing: about 7 s for this drill
    run = runner.start({"scenario": "host-power-loss", "seed": "3"}, "user ops")
    async for view in run.views():
        if view.phases:
            break
    stopping = time.monotonic()
    hub.close()  # what haven serve does first when it stops
    assert run.task is not None
    await asyncio.wait_for(run.task, 2.0)
    assert time.monotonic() - stopping < 1.5
    assert run.view.state == FINISHED and run.view.report is not None
    assert run.view.report["verdict"] == "recovered"  # the drill itself ran to its end, in virtual time
