"""Delivery: spooled before sending, kept across an agent restart while the engine is down, delivered
once when it is back; a refused notification is dropped with its reason and blocks nothing behind it.

Against a real `haven serve` (the engine) except the answer-classification test, which replays
the engine's possible answers through httpx's mock transport (the reporter's pure core).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.conftest import HavenServer, start_haven
from haven.agent.reporter import Reporter
from haven.agent.reports import notification, process_payload
from haven.agent.spool import Spool
from servers.process import free_port

from .conftest import RunAgent, agent_config, eventually


@contextlib.contextmanager
def engine_in(home: Path) -> Iterator[HavenServer]:
    server = start_haven(home)
    try:
        yield next(server)
    finally:
        server.close()


def process_notes(engine: HavenServer, name: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{engine.url}/v1/notifications", headers={"X-Auth-Token": engine.token}, timeout=10)
    return [n for n in answer.json()["notifications"] if n["payload"].get("process_name") == name]


async def test_a_notification_survives_an_agent_restart_while_the_engine_is_down(
    tmp_path: Path, run_agent: RunAgent
) -> None:
    token = tmp_path / "token"
    token.write_text("not-yet")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = agent_config(tmp_path, down, token_file=token)
    name = f"haven-dummy-{free_port()}"
    async with run_agent(config) as agent:
        agent.report_process(name, running=False)  # as the process check does
        await eventually(lambda: agent.spool.pending()[0].attempts >= 2, what="two failed attempts")
        assert agent.reporter.delivered == 0
    assert len(Spool(config.state_dir)) == 1  # stopped with it undelivered: still on disk

    with engine_in(tmp_path / "home") as engine:
        token.write_text(engine.token)
        # The engine came back on another port (the fixture picks one): the spool holds bodies, not URLs.
        config = dataclasses.replace(config, engine_url=engine.url)
        async with run_agent(config) as again:  # a new agent process would do exactly this
            await eventually(lambda: again.reporter.delivered == 1, what="delivery after the restart")
            assert len(again.spool) == 0
        notes = process_notes(engine, name)
    assert len(notes) == 1, notes  # delivered once
    assert notes[0]["payload"] == {"event": "STOPPED", "process_name": name}
    assert notes[0]["hostname"] == "compute-00001"


async def test_a_refused_notification_is_dropped_and_blocks_nothing(
    tmp_path: Path, run_agent: RunAgent, engine: HavenServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text(engine.token)
    name = f"haven-dummy-{free_port()}"
    async with run_agent(agent_config(tmp_path, engine.url, token_file=token)) as agent:
        with caplog.at_level(logging.ERROR, logger="haven.agent"):
            # Malformed (what a buggy libvirt binding could hand over), then a good one behind it.
            agent.report("VM", {"event": "LIFECYCLE", "instance_uuid": "not-a-uuid", "vir_domain_event": "X"})
            agent.report_process(name, running=False)
            await eventually(lambda: agent.reporter.delivered == 1, what="the good one delivered")
        assert agent.reporter.dropped == 1
        assert len(agent.spool) == 0
    assert "HTTP 400" in caplog.text and "instance_uuid" in caplog.text  # the engine's reason, logged
    assert len(process_notes(engine, name)) == 1


def answers(*statuses: int) -> tuple[httpx.MockTransport, list[str]]:
    """A transport that answers ``statuses`` in turn, recording the token each request carried."""
    queue = list(statuses)
    tokens: list[str] = []

    def reply(request: httpx.Request) -> httpx.Response:
        tokens.append(request.headers.get("X-Auth-Token", ""))
        status = queue.pop(0)
        return httpx.Response(status, json={"fault": {"code": status, "message": f"answer {status}"}})

    return httpx.MockTransport(reply), tokens


@pytest.mark.parametrize(
    ("statuses", "delivered", "dropped"),
    [
        ((202,), 1, 0),
        ((409,), 1, 0),  # a duplicate (or host on maintenance): the engine has it, that is delivery
        ((400,), 0, 1),
        ((404,), 0, 1),
        ((500, 503, 202), 1, 0),  # engine trouble: retried
        ((429, 408, 202), 1, 0),
        ((401, 403, 202), 1, 0),  # the agent's token is wrong, not the event: retried, token re-read
    ],
)
async def test_answers_settle_or_retry(
    tmp_path: Path, statuses: tuple[int, ...], delivered: int, dropped: int
) -> None:
    import asyncio

    spool = Spool(tmp_path)
    spool.add(notification("PROCESS", "compute-00001", process_payload("nova-compute", running=False)))
    token = tmp_path / "token"
    token.write_text("old")
    transport, tokens = answers(*statuses)
    reporter = Reporter(spool, "http://engine", token_file=token, retry_min_s=0.01, retry_max_s=0.02,
                        transport=transport)  # fmt: skip
    task = asyncio.create_task(reporter.run())
    if 401 in statuses:
        token.write_text("fixed")
    await eventually(lambda: len(spool) == 0, 5, "settled")
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert (reporter.delivered, reporter.dropped) == (delivered, dropped)
    assert len(tokens) == len(statuses)
    if 401 in statuses:
        assert tokens[0] == "old" and tokens[-1] == "fixed"
