"""Whether this ``haven serve`` leads, and where the leader's dashboard is: what a follower's page says.

With several engines (``haven serve --coordination etcd://...``) only the leader acts: its engine,
reconciler, explainer and backup service emit the events that keep a page live. A follower's engine
stands by and emits nothing, so a page served by a follower would show the store as it was when the
page opened, silently. Instead the page says so in words: this engine is a follower, since when the
page's figures date, and the leader's dashboard address (from the leader's identity,
``host:pid@address:port``, as ``haven serve`` names itself to etcd). The stream watches the elector's
own status (in memory, woken by its watch on etcd; never the database): when the leader changes or
this engine starts or stops leading, the page is told at once, and the store is read again then.
Called by haven.dashboard.app; ``leadership`` is what ``haven serve`` gives the API.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from haven.service.status import Leadership

WATCH_S = 1.0  # a lease can lapse without a notification (is_leader turns False by itself): look again


@runtime_checkable
class _Watched(Protocol):
    """An elector (haven.coordination): who leads as last seen, and a wake-up on any change."""

    def status(self) -> object: ...

    async def changed(self, timeout_s: float | None = None) -> object: ...


@dataclass(frozen=True, slots=True)
class LeaderView:
    """What the page says about leadership."""

    several: bool  # several engines (etcd): False for the embedded single engine
    leading: bool
    identity: str  # this engine
    leader: str | None  # the leader's identity as last seen (None: nobody, or not known)
    reachable: bool = True  # the coordination service answered lately

    @property
    def follower(self) -> bool:
        return self.several and not self.leading

    @property
    def leader_url(self) -> str | None:
        """The leader's dashboard, from its identity ``host:pid@address:port`` (None: not given)."""
        if self.leader is None or "@" not in self.leader:
            return None
        name, _, address = self.leader.rpartition("@")
        host, sep, port = address.rpartition(":")
        if not sep or not port.isdigit():
            return None
        if host in ("0.0.0.0", "[::]", ""):  # bound to every address: the leader's host name instead
            host = name.split(":", 1)[0]
        return f"http://{host}:{port}/dashboard/"


def leader_view(leadership: Leadership | None) -> LeaderView:
    if leadership is None or leadership.backend == "single-node":
        identity = leadership.identity if leadership is not None else "local"
        return LeaderView(False, True, identity, identity)
    leading = leadership.is_leader()
    status = leadership.status() if isinstance(leadership, _Watched) else None
    leader = getattr(status, "leader", None) if status is not None else None
    reachable = bool(getattr(status, "reachable", True))
    if leading:
        leader = leadership.identity
    return LeaderView(
        True, leading, leadership.identity, leader if isinstance(leader, str) else None, reachable
    )


async def leadership_changes(leadership: Leadership | None, seen: LeaderView, wake: asyncio.Event) -> None:
    """Until cancelled: set ``wake`` each time ``leader_view`` differs from the last one seen.
    ``seen`` is the view the page was rendered with; the caller reads ``leader_view`` again."""
    if leadership is None or not isinstance(leadership, _Watched):
        return
    while True:
        await leadership.changed(WATCH_S)
        now = leader_view(leadership)
        if now != seen:
            seen = now
            wake.set()
