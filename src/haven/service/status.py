"""The engine's status in one summary: who leads, hosts by condition, notifications by status, alerts, holds.

Computed from the store, so ``haven status`` (a separate process reading the state)
and the API's ``GET /v1/haven/status`` (inside ``haven serve``) say the same thing from
the same code. Who leads comes from a ``Leadership``: today the single in-process
engine always leads (``SingleNodeLeadership``); an etcd elector plugs in by offering
the same two members.
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from haven.domain.incidents import Alert, AlertKind
from haven.store import Store


class Leadership(Protocol):
    """Who this engine is and whether it leads now (read at each status request, never cached)."""

    @property
    def identity(self) -> str: ...

    @property
    def backend(self) -> str: ...

    def is_leader(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class SingleNodeLeadership:
    """The embedded default: one engine in one process, leader for as long as it runs."""

    identity: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    backend: str = "single-node"

    def is_leader(self) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class StatusSummary:
    segments: int
    hosts_by_condition: dict[str, int]
    notifications_by_status: dict[str, int]
    alerts: list[Alert]

    @property
    def holds(self) -> list[Alert]:
        """Segments whose automatic recovery the observer gate holds now (one active alert each)."""
        return [a for a in self.alerts if a.kind is AlertKind.GATE_HOLD]

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``haven status --json`` (and the store part of the API's status)."""
        return {
            "segments": self.segments,
            "hosts_by_condition": self.hosts_by_condition,
            "notifications_by_status": self.notifications_by_status,
            "alerts": [alert_dict(a) for a in self.alerts],
            "holds": [
                {"segment_id": a.segment_id, "since": a.raised_at, "reason": a.message} for a in self.holds
            ],
        }


def status_summary(store: Store) -> StatusSummary:
    """Counts read from the store now (a whole read: fine for a status page or a 15 s scrape)."""
    hosts = store.list_hosts()
    notifications = store.list_notifications()
    return StatusSummary(
        segments=len(store.list_segments()),
        hosts_by_condition=dict(sorted(Counter(h.condition for h in hosts).items())),
        notifications_by_status=dict(sorted(Counter(n.status.value for n in notifications).items())),
        alerts=store.list_alerts(active_only=True),
    )


def leader_dict(leadership: Leadership) -> dict[str, Any]:
    return {
        "identity": leadership.identity,
        "backend": leadership.backend,
        "is_leader": leadership.is_leader(),
    }


def alert_dict(a: Alert) -> dict[str, Any]:
    return {
        "kind": a.kind.value,
        "host": a.host,
        "segment_id": a.segment_id,
        "message": a.message,
        "raised_at": a.raised_at,
    }
