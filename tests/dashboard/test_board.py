"""The dashboard's state follows the engine's events; its hub never makes the engine wait.

Unit tests on a real SQLite store: a page's board read at open, then moved by events as the engine
emits them (a host's condition from the detector's event, before the store has it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from haven.api.auth import Principal
from haven.dashboard.board import Board
from haven.dashboard.hub import QUEUE_SIZE, EventHub
from haven.dashboard.sessions import SessionStore, csrf_ok
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Segment, SegmentHost
from haven.store import Store

SEG = SegmentId("seg-1")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as opened:
        opened.create_segment(Segment(SEG, "segment-az1"))
        opened.add_hosts([SegmentHost(HostName(f"compute-{i}"), SEG) for i in (1, 2, 3)])
        yield opened


def test_a_host_event_moves_the_board_before_the_store_knows(store: Store) -> None:
    board = Board(store)
    assert board.counts()["healthy"] == 3
    dead = EngineEvent(
        EventKind.HOST_CONFIRMED_DEAD, 10.0, HostName("compute-2"), SEG, detail={"reason": "BMC off"}
    )
    changes = board.apply([EngineEvent(EventKind.HOST_SUSPECTED, 9.0, HostName("compute-2"), SEG), dead])
    assert changes.hosts == {"compute-2"}
    assert board.hosts[HostName("compute-2")].condition == "dead"
    assert board.hosts[HostName("compute-2")].reason == "BMC off"
    assert board.counts()["dead"] == 1 and board.counts()["healthy"] == 2
    assert [h.condition for h in store.list_hosts()] == ["healthy"] * 3  # the store was not asked
    assert changes.announcements[-1] == "compute-2 is dead"
    again = board.apply([dead])
    assert not again.hosts  # no change, nothing to send


def test_a_hold_marks_its_silent_hosts_held(store: Store) -> None:
    board = Board(store)
    held = EngineEvent(
        EventKind.SEGMENT_HELD, 5.0, segment_id=SEG, detail={"hosts": ["compute-1", "compute-3"]}
    )
    changes = board.apply([held])
    assert changes.hosts == {"compute-1", "compute-3"} and changes.alerts
    assert board.counts()["held"] == 2


def test_the_hub_drops_nothing_silently_and_never_blocks() -> None:
    async def run() -> None:
        hub = EventHub()
        hub(EngineEvent(EventKind.HOST_HEALTHY, 0.0, HostName("h")))  # nobody listens: dropped, no error
        with hub.subscribe() as sub:
            for i in range(QUEUE_SIZE + 5):
                hub(EngineEvent(EventKind.HOST_HEALTHY, float(i), HostName("h")))
            assert sub.queue.qsize() == QUEUE_SIZE
            assert sub.overflowed and sub.wake.is_set()
        assert hub.subscribers == 0

    asyncio.run(run())


def test_sessions_expire_and_check_their_csrf_token() -> None:
    sessions = SessionStore(ttl_s=60)
    who = Principal("u", None, frozenset({"reader"}))
    sid, session = sessions.open(who, now=100.0)
    assert sessions.get(sid, 150.0) == session
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, "guess") and not csrf_ok(session, None)
    assert sessions.get("made-up", 150.0) is None
    assert sessions.get(sid, 161.0) is None  # expired
    sid, _ = sessions.open(who, now=200.0)
    sessions.close(sid)
    assert sessions.get(sid, 201.0) is None
