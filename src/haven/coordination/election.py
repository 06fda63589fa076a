"""Who may act: the ``Elector`` protocol, its status value, and the single-node elector (the default).

Who calls it: the engine (``haven serve``), through ``elector_from_url`` in this package. Without
``--coordination`` the engine uses ``SingleNodeElector``: always leader, epoch 1, no servers. With
``--coordination etcd://HOST:PORT`` it gets an ``EtcdElector`` (election_etcd.py).

How the engine uses an elector (the contract every implementation keeps):

- ``run()`` is a task in the engine's TaskGroup for the engine's whole life. It campaigns, keeps the
  lease alive while leading, steps down when it cannot, and campaigns again. It raises only at
  start (``CoordinationUnavailable`` naming the URL when etcd cannot be reached) and resigns
  (hands leadership over at once) when cancelled. ``await aclose()`` after it, at shutdown.
- ``is_leader()`` answers from local state and a monotonic deadline, never from the network: it
  turns False by itself the moment the lease *could* have expired (last successful refresh + TTL
  - safety margin), before any other engine can have won. Check it right before every effect.
- ``epoch()`` is the fencing token of the current term: it grows every time anyone in the cluster
  wins (the leader key's etcd create_revision). Every recovery step claims its notification in
  the database with this epoch (test-and-set: owner, epoch >= stored epoch), so a deposed leader
  that wakes up late is refused by the database even if it still believes it leads.
- ``await wait_leading()`` returns the epoch once leading: start the leader-only runnables then.
  ``await wait_not_leading()`` returns when leadership ends (including by the local deadline):
  cancel the leader-only runnables then. ``await changed()`` wakes on any status change.
- ``status()`` is a snapshot for the API and logs (who leads, whether etcd is reachable).
- ``identity``, ``backend`` and ``is_leader()`` make every elector a ``haven.service.status.Leadership``
  (what ``GET /v1/haven/status`` and ``haven status`` show), so serve can pass the elector there.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LeaderStatus:
    """What an elector knows right now."""

    identity: str  # this engine
    leading: bool
    epoch: int | None  # this engine's epoch while it leads
    leader: str | None  # the identity holding leadership as last seen (None: nobody / unknown)
    reachable: bool  # whether the coordination service answered lately
    reason: str = ""  # why the last change happened, for logs and the API


@runtime_checkable
class Elector(Protocol):
    """Leader election as the engine sees it; see the module docstring for the contract."""

    identity: str
    backend: str  # "single-node" or "etcd": with identity and is_leader(), haven.service.status's Leadership

    def is_leader(self) -> bool: ...

    def epoch(self) -> int | None: ...

    def status(self) -> LeaderStatus: ...

    async def run(self) -> None: ...

    async def wait_leading(self) -> int: ...

    async def wait_not_leading(self) -> None: ...

    async def changed(self, timeout_s: float | None = None) -> LeaderStatus: ...

    async def aclose(self) -> None: ...


class SingleNodeElector:
    """One engine, no coordination service: always the leader, epoch 1."""

    EPOCH = 1

    def __init__(self, identity: str = "local") -> None:
        self.identity = identity
        self.backend = "single-node"

    def is_leader(self) -> bool:
        return True

    def epoch(self) -> int | None:
        return self.EPOCH

    def status(self) -> LeaderStatus:
        return LeaderStatus(self.identity, True, self.EPOCH, self.identity, True, "single node")

    async def run(self) -> None:
        await asyncio.Event().wait()  # nothing to do until the engine stops (cancels us)

    async def wait_leading(self) -> int:
        return self.EPOCH

    async def wait_not_leading(self) -> None:
        await asyncio.Event().wait()  # never

    async def changed(self, timeout_s: float | None = None) -> LeaderStatus:
        if timeout_s is None:
            await asyncio.Event().wait()
        await asyncio.sleep(timeout_s or 0)
        return self.status()

    async def aclose(self) -> None:
        return None
