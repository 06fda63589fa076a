"""The map's zones and racks (haven.dashboard.domains) and the board's segments, read again (no browser).

``FailureDomains.refresh``: a page opening reads the cloud again only when the map is older than its
refresh age, pages asking at once share one read, a read that fails or hangs keeps the last map and is
logged once. ``Board`` on ``segments_changed``: a host added, moved or removed, its zone and rack as
the domains now say, a condition the engine's events gave kept.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from haven.cloud.sim.builder import CloudSpec, build_cloud
from haven.dashboard.board import Board
from haven.dashboard.domains import FailureDomains
from haven.domain.clock import VirtualClock
from haven.domain.cloud import Host
from haven.domain.errors import TemporaryError
from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import SegmentId
from haven.domain.incidents import RecoveryMethod, Segment, SegmentHost
from haven.service.bootstrap import segments_per_zone
from haven.store import Store


class Cloud:
    """The cloud's list_hosts, counted; ``fail``/``hang`` make the next reads go wrong."""

    def __init__(self, hosts: Sequence[Host]) -> None:
        self.hosts = list(hosts)
        self.reads = 0
        self.fail = self.hang = False

    async def list_hosts(self) -> Sequence[Host]:
        self.reads += 1
        await asyncio.sleep(0.01)
        if self.hang:
            await asyncio.sleep(60)
        if self.fail:
            raise TemporaryError("nova-api answered 503")
        return list(self.hosts)


@pytest.fixture
def cloud() -> Cloud:
    sim, _ = build_cloud(CloudSpec(hosts=4, vms=0, zones=2), VirtualClock())
    return Cloud(asyncio.run(sim.list_hosts()))


async def test_a_page_reads_the_cloud_again_when_the_map_is_old_and_pages_share_one_read(
    cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    domains = FailureDomains.of(cloud.hosts, cloud.list_hosts, refresh_s=0.2, timeout_s=0.5)
    first = cloud.hosts[0].name
    assert domains[first] == (cloud.hosts[0].zone, cloud.hosts[0].aggregate)
    cloud.hosts[0] = dataclasses.replace(cloud.hosts[0], zone="az9", aggregate="az9-rack01")
    assert await domains.refresh() is False and cloud.reads == 0  # fresh: not read
    await asyncio.sleep(0.25)
    changed = await asyncio.gather(*(domains.refresh() for _ in range(5)))  # five pages at once
    assert cloud.reads == 1 and changed.count(True) == 1
    assert domains[first] == ("az9", "az9-rack01")
    await asyncio.sleep(0.25)
    changed = await asyncio.gather(*(domains.refresh(0.2) for _ in range(3)))  # after segments_changed
    assert cloud.reads == 2 and not any(changed)  # one new read for all three; nothing moved

    cloud.fail = True
    with caplog.at_level(logging.WARNING, "haven.dashboard.domains"):
        assert await domains.refresh(0) is False
        assert await domains.refresh(0) is False
        cloud.fail, cloud.hang = False, True
        assert await domains.refresh(0) is False  # timed out after 0.5 s
    assert domains[first] == ("az9", "az9-rack01")  # the last map stands
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "nova-api answered 503" in said[0]  # said once while failing
    cloud.hang = False
    cloud.hosts = cloud.hosts[1:]
    assert await domains.refresh(0) is True and first not in domains


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'haven.db'}") as s:
        yield s


def test_the_board_reads_segments_again_keeping_what_the_engine_said(store: Store, cloud: Cloud) -> None:
    hosts = cloud.hosts
    segments_per_zone(store, hosts[:3], RecoveryMethod.AUTO)
    domains = FailureDomains.of(hosts)
    board = Board(store, domains, now=0.0)
    dead, mover, new = hosts[0].name, hosts[1].name, hosts[3].name
    board.apply([EngineEvent(EventKind.HOST_CONFIRMED_DEAD, 1.0, host=dead, detail={"reason": "BMC off"})])

    late = store.create_segment(Segment(SegmentId(uuid.uuid4().hex), "segment-late", RecoveryMethod.AUTO))
    store.add_host(SegmentHost(new, late.id))
    store.update_host(mover, segment_id=late.id)
    store.delete_host(hosts[2].name)
    changes = board.apply([EngineEvent(EventKind.SEGMENTS_CHANGED, 2.0)])
    assert changes.membership and bool(changes)
    assert set(board.hosts) == {dead, mover, new}
    assert board.hosts[dead].condition == "dead" and board.hosts[dead].reason == "BMC off"
    assert board.hosts[new].segment == board.hosts[mover].segment == "segment-late"
    assert board.hosts[new].zone == hosts[3].zone and board.hosts[new].rack == hosts[3].aggregate
    said = {f"{mover} moved to segment segment-late", f"{new} is in segment segment-late"}
    assert set(changes.announcements) == said
    grouped = dict(board.hosts_by_segment())
    assert [h.name for h in grouped["segment-late"]] == sorted([mover, new])
    empty = store.create_segment(Segment(SegmentId(uuid.uuid4().hex), "segment-empty", RecoveryMethod.AUTO))
    board.apply([EngineEvent(EventKind.SEGMENTS_CHANGED, 3.0)])
    assert dict(board.hosts_by_segment())[empty.name] == []
