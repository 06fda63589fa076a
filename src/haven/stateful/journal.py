"""What the stateful recovery loops share: their journal of steps, their hold alert, the deposed latch.

Who uses it: haven.stateful.galera_recovery and haven.stateful.rabbitmq_recovery (each loop holds one
``Journaled``), and the tests that build a loop on their own journal and alerts.

- ``StoreJournal``: the steps in haven's store (table galera_actions, migration 0012), under one cluster
  key (a Galera cluster's name; ``rabbitmq:<name>`` for a RabbitMQ cluster). Its partial unique index
  allows one unfinished step per key: a second engine cannot issue another while one is in flight.
- ``StoreHold``: one hold alert of a given kind (``galera_hold``, ``rabbitmq_hold``) whose host is
  the cluster's name, kept while the same hold lasts, replaced by a hold for another reason.
- ``Journaled``: the write side a loop runs through: commit a step's intent (False: no effect may be
  made), commit its outcome, raise or clear the hold's alert. Every write carries the leader's epoch;
  the first one refused (``Deposed``) latches: from then on nothing is issued nor written, and the loop
  passes ``wait`` ("this loop was deposed").
- ``run_passes``: passes until the cluster needs nothing, a hold, or a timeout (the drills and tests).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Protocol, TypeVar

from haven.domain.clock import Clock
from haven.domain.errors import Deposed, HavenError
from haven.domain.galera import FAILED, GaleraAction
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.store import Store

log = logging.getLogger(__name__)


class StepJournal(Protocol):
    """Where a loop's steps are persisted: the store's galera_actions (StoreJournal)."""

    def issue(self, action: GaleraAction) -> None: ...

    def finish(self, action_id: str, state: str, error: str, position: str | None = None) -> None: ...

    def unfinished(self) -> list[GaleraAction]: ...

    def actions(self, after: float = 0.0) -> list[GaleraAction]: ...


class RunningNode(Protocol):
    """A node whose server can be asked whether it runs (a Galera or RabbitMQ node)."""

    async def running(self) -> bool: ...


class HoldAlerts(Protocol):
    """Where a hold is raised (the store's alerts: StoreHold) and cleared once the loop acts again."""

    def hold(self, text: str) -> None: ...

    def clear(self) -> None: ...


class StoreJournal:
    """The journal in haven's store (table galera_actions): survives a restart of haven."""

    def __init__(self, store: Store, cluster: str, clock: Clock, epoch: int | None = None) -> None:
        self.store, self.cluster, self._clock, self._epoch = store, cluster, clock, epoch

    def issue(self, action: GaleraAction) -> None:
        self.store.issue_galera_action(action, epoch=self._epoch)

    def finish(self, action_id: str, state: str, error: str, position: str | None = None) -> None:
        self.store.finish_galera_action(
            action_id, state, self._clock.now(), error, position=position, epoch=self._epoch
        )

    def unfinished(self) -> list[GaleraAction]:
        return self.store.unfinished_galera_actions(self.cluster)

    def actions(self, after: float = 0.0) -> list[GaleraAction]:
        return self.store.galera_actions_since(self.cluster, after)


class StoreHold:
    """One hold alert of ``kind`` in the store's alerts (its host: the cluster's name)."""

    def __init__(
        self, store: Store, cluster: str, clock: Clock, epoch: int | None = None, *, kind: AlertKind
    ) -> None:
        self.store, self.cluster, self._clock, self._epoch, self.kind = store, cluster, clock, epoch, kind

    def hold(self, text: str) -> None:
        """Raise the hold's alert; an active one saying something else (an earlier hold) is cleared first."""
        active = self.active()
        if active and active[0].message == text:
            return
        if active:
            self.clear()
        alert = Alert(str(uuid.uuid4()), self.kind, text, self._clock.now(), host=HostName(self.cluster))
        self.store.raise_alert(alert, epoch=self._epoch)

    def clear(self) -> None:
        self.store.clear_alerts(
            now=self._clock.now(), kind=self.kind, host=HostName(self.cluster), epoch=self._epoch
        )

    def active(self) -> list[Alert]:
        return [a for a in self.store.list_alerts() if a.kind is self.kind and a.host == self.cluster]


class Journaled:
    """A loop's writes: intents, outcomes and its hold alert, each fenced; latched once deposed.

    ``service`` names the loop in the log ("galera", "rabbitmq"), ``cluster`` its cluster.
    """

    def __init__(self, journal: StepJournal, alerts: HoldAlerts, service: str, cluster: str) -> None:
        self.journal, self.alerts, self._service, self._cluster = journal, alerts, service, cluster
        self.deposed: str | None = None  # why this loop's epoch was refused: it acts no more
        self._holding: bool | None = None  # None: not known yet (a restarted loop clears a stale hold)
        self._hold_reason: str | None = None  # the hold whose alert is raised

    def note_deposed(self, exc: HavenError) -> None:
        if isinstance(exc, Deposed):
            self.deposed = str(exc)

    @property
    def deposed_reason(self) -> str:
        return f"this loop was deposed, a newer leader decides: {self.deposed}"

    async def unfinished(self) -> list[GaleraAction]:
        """The steps a stopped engine left ``issued`` (none once this loop is deposed)."""
        if self.deposed is not None:
            return []
        return await asyncio.to_thread(self.journal.unfinished)

    async def since(self, after: float) -> list[GaleraAction]:
        """The steps issued since ``after`` (raises the store's errors: the caller decides)."""
        return await asyncio.to_thread(self.journal.actions, after)

    async def issue(self, action: GaleraAction) -> bool:
        """Commit the intent; False (no effect) when it could not be committed."""
        if self.deposed is not None:
            return False
        try:
            await asyncio.to_thread(self.journal.issue, action)
        except HavenError as exc:  # another step unfinished (another engine), the store unavailable
            log.warning("%s %s of %s not issued: %s", self._service, action.kind, action.node, exc)
            self.note_deposed(exc)
            return False
        return True

    async def outcome(
        self, action: GaleraAction, state: str, error: str, position: str | None = None
    ) -> None:
        try:
            await asyncio.to_thread(self.journal.finish, action.id, state, error, position)
        except HavenError as exc:  # the next pass finds the step unfinished and finishes it
            log.warning(
                "%s %s of %s: outcome not committed: %s", self._service, action.kind, action.node, exc
            )
            self.note_deposed(exc)

    async def resume_if_running(self, action: GaleraAction, node: RunningNode | None) -> bool:
        """A step a stopped engine left ``issued``, its node read first. Gone from the cluster, or not
        running (its effect was not made): finished ``failed``, decided afresh; unreadable: left
        ``issued`` for a later pass. True: the node runs, the caller finishes the step from what it sees.
        """
        if node is None:
            await self.outcome(action, FAILED, f"{action.node} is no longer a node of this cluster")
            return False
        try:
            running = await node.running()
        except HavenError as exc:
            log.warning(
                "%s: %s unreadable, its unfinished %s waits: %s", self._service, action.node, action.kind, exc
            )
            return False
        if not running:
            await self.outcome(action, FAILED, "not made before haven stopped; decided afresh")
            return False
        return True

    async def show_hold(self, holding: bool, reason: str, alert: str) -> None:
        """Raise the hold's alert (a new or different hold), or clear it once the loop does anything else."""
        try:
            if holding and reason != self._hold_reason:
                log.warning("%s", alert)
                await asyncio.to_thread(self.alerts.hold, alert)
            elif not holding and self._holding is not False:
                await asyncio.to_thread(self.alerts.clear)
        except HavenError as exc:  # the store unavailable, or this engine deposed: the next pass retries
            log.warning("%s %s: alert not written: %s", self._service, self._cluster, exc)
            self.note_deposed(exc)
            return
        self._holding = holding
        self._hold_reason = reason if holding else None


class _Decision(Protocol):
    @property
    def kind(self) -> StrEnum: ...


D = TypeVar("D", bound=_Decision)


async def run_passes(run_pass: Callable[[], Awaitable[D]], timeout_s: float, interval_s: float) -> list[D]:
    """Passes until one decides ``nothing`` or ``hold`` (or ``timeout_s``); the decisions, a run of
    ``wait`` kept once."""
    decisions: list[D] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        decision = await run_pass()
        if not decisions or decisions[-1].kind != decision.kind or decision.kind != "wait":
            decisions.append(decision)
        if decision.kind in ("nothing", "hold"):
            return decisions
        await asyncio.sleep(interval_s)
    return decisions
