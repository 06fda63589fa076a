"""One persisted step of Galera's recovery loop (haven.stateful.galera_recovery), as the store keeps it.

Who uses it: haven.stateful.galera_recovery writes it (intent ``issued`` before the effect, ``done`` or
``failed`` after), haven.store.stateful persists it (table galera_actions, migration 0012), the drills
and tests read it back.
"""

from __future__ import annotations

from dataclasses import dataclass

ISSUED, DONE, FAILED = "issued", "done", "failed"


@dataclass(frozen=True, slots=True)
class GaleraAction:
    """A start or bootstrap of one node: its intent before the effect, its outcome after."""

    id: str
    cluster: str  # the cluster's name (one store can hold several clusters' steps)
    kind: str  # "start" or "bootstrap" (haven.stateful.galera.DecisionKind's values)
    node: str
    reason: str
    position: str  # the uuid:seqno it was started or bootstrapped from ("" when none)
    created_at: float
    state: str = ISSUED  # issued, done, failed
    error: str = ""
    finished_at: float | None = None
