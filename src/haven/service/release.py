"""Releasing a held segment: an operator's word that its silent hosts really failed (audited).

Called by ``haven release SEGMENT`` (the CLI, on the store directly) and by
``POST /v1/haven/segments/{segment_id}/release`` (the API). A hold of the observer gate, or a
fence budget spent, stays until the hosts are back or until this release; the release records one
``gate_released`` alert per released host (who, when, why: the audit trail), clears the segment's
``gate_hold`` alert, and the engine, at its next pass, stops counting those hosts in the gate and
lets haven.safety fence them once its own channels call them dead. Nothing else changes: a host
that heartbeats again is never fenced, released or not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from haven.domain.errors import Conflict
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Alert, AlertKind
from haven.domain.liveness import HostCondition
from haven.store import Store

RELEASABLE = frozenset({HostCondition.HELD.value, HostCondition.DEAD.value, HostCondition.SUSPECT.value})


@dataclass(frozen=True, slots=True)
class Release:
    segment_id: SegmentId
    segment: str
    hosts: tuple[HostName, ...]  # the silent hosts released from the gate
    by: str
    reason: str
    at: float

    def to_dict(self) -> dict[str, object]:
        return {
            "segment_id": self.segment_id,
            "segment": self.segment,
            "hosts": list(self.hosts),
            "by": self.by,
            "reason": self.reason,
            "at": self.at,
        }


def release_segment(store: Store, segment: str, by: str, reason: str, now: float) -> Release:
    """Release ``segment`` (id or name) from the gate; Conflict if nothing in it is held or silent."""
    found = store.get_segment(segment)  # NotFound names the segment
    silent = [h.name for h in store.list_hosts(found.id) if h.condition in RELEASABLE]
    active = store.list_alerts(active_only=True)
    gate = [a for a in active if a.kind is AlertKind.GATE_HOLD and a.segment_id == found.id]
    if not silent and not gate:
        raise Conflict(
            f"segment {found.name} is not held and none of its hosts is silent: nothing to release"
        )
    why = reason.strip() or "no reason given"
    for host in silent:
        message = f"{host}: released from the observer gate and the fence budget by {by}: {why}"
        store.raise_alert(Alert(uuid.uuid4().hex, AlertKind.GATE_RELEASED, message, now, found.id, host))
    store.clear_alerts(now=now, kind=AlertKind.GATE_HOLD, segment_id=found.id)
    return Release(found.id, found.name, tuple(silent), by, why, now)
