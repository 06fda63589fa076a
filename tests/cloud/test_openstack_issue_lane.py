"""A host's twenty evacuations reach Nova together, not eight at a time (issue 15).

The OpenStack driver's calls run in a pool of threads (8 by default, the config's max_workers). The
calls that issue evacuations have a lane of their own, ISSUE_WORKERS wide, so every destination can
start its rebuilds at once. The Nova stand-in below answers an evacuate only once twenty of them are
in flight at the same time: with eight at a time they would never all be answered.
"""

from __future__ import annotations

import asyncio
import threading
from typing import cast

from haven.cloud.openstack.calls import CallPool
from haven.cloud.openstack.cloud import ISSUE_WORKERS, OpenStackCloud
from haven.cloud.openstack.nova import NovaApi
from haven.domain.ids import HostName, ServerId

VMS = 20


class TogetherNova:
    """Answers evacuate calls only when ``VMS`` of them are waiting at once (else they time out)."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(VMS, timeout=5.0)
        self.asked: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def evacuate(self, server_id: str, target: str | None) -> None:
        with self._lock:
            self.asked.append((server_id, target))
        self.barrier.wait()  # BrokenBarrierError after 5 s unless all twenty are in flight together


async def test_twenty_evacuations_are_in_flight_at_once_with_a_pool_of_eight() -> None:
    assert ISSUE_WORKERS >= VMS
    nova = TogetherNova()
    cloud = OpenStackCloud(cast(NovaApi, nova), CallPool(8))
    try:
        targets = [HostName("compute-2"), HostName("compute-3")]
        await asyncio.gather(*(cloud.evacuate(ServerId(f"vm-{i}"), targets[i % 2]) for i in range(VMS)))
    finally:
        cloud.close()
    assert sorted(nova.asked) == sorted((f"vm-{i}", f"compute-{2 + i % 2}") for i in range(VMS))
    assert not nova.barrier.broken
