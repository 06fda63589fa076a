"""The Galera recovery loop: observe every node, decide (haven.stateful.galera), act one persisted step.

Who calls it: the tests and drills on a loopback cluster, bench/galera.py, and (once the control-plane
reconciler hands Galera over, see docs/stateful.md) haven serve, as a leader-only runnable.

Each pass reads every node at once (running, grastate.dat, wsrep status), asks ``decide``, and:
- RECOVER: runs ``--wsrep-recover`` on the named stopped nodes (a read: its result is kept until the
  node runs again) and decides again in the same pass;
- START / BOOTSTRAP: commits the intent to the journal, makes the effect (the driver re-reads the node
  first: a node already running is not started twice), then commits the outcome;
- HOLD: raises its alert once (the same text is not raised again while it holds).
A step's failure fails that step only: the next pass decides again from what it reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from haven.domain.clock import Clock
from haven.domain.errors import HavenError
from haven.stateful.galera import (
    DecisionKind,
    GaleraDecision,
    GaleraSettings,
    GraState,
    LiveStatus,
    NodeObservation,
    Position,
    decide,
)
from haven.stateful.galera_node import GaleraNode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GaleraAction:
    """One persisted step: its intent before the effect, its outcome after."""

    id: str
    kind: DecisionKind  # START or BOOTSTRAP
    node: str
    reason: str
    position: str  # the uuid:seqno it was started or bootstrapped from ("" when none)
    created_at: float
    state: str = "issued"  # issued, done, failed
    error: str = ""


class GaleraJournal(Protocol):
    """Where the loop's steps are persisted (the store's galera_actions; a list in tests)."""

    def issue(self, action: GaleraAction) -> None: ...

    def finish(self, action_id: str, state: str, error: str) -> None: ...

    def unfinished(self) -> list[GaleraAction]: ...


@dataclass
class MemoryJournal:
    """A journal in memory: what the tests read back, and what a drill reports."""

    actions: list[GaleraAction] = field(default_factory=list)

    def issue(self, action: GaleraAction) -> None:
        self.actions.append(action)

    def finish(self, action_id: str, state: str, error: str) -> None:
        for i, action in enumerate(self.actions):
            if action.id == action_id:
                self.actions[i] = GaleraAction(
                    action.id, action.kind, action.node, action.reason, action.position, action.created_at,
                    state, error,
                )  # fmt: skip

    def unfinished(self) -> list[GaleraAction]:
        return [a for a in self.actions if a.state == "issued"]


Alert = Callable[[str], Awaitable[None]]


class GaleraRecovery:
    def __init__(
        self,
        nodes: Sequence[GaleraNode],
        journal: GaleraJournal,
        clock: Clock,
        alert: Alert,
        settings: GaleraSettings | None = None,
    ) -> None:
        self._nodes: Mapping[str, GaleraNode] = {n.name: n for n in nodes}
        self._journal, self._clock, self._alert = journal, clock, alert
        self._settings = settings or GaleraSettings()
        self._recovered: dict[str, Position] = {}
        self._recover_errors: dict[str, str] = {}
        self._mute_since: dict[str, float] = {}
        self._last_alert = ""

    async def run_pass(self) -> GaleraDecision:
        for action in self._journal.unfinished():  # an engine stopped between intent and outcome
            await self._finish(action)
        observations = await self.observe()
        decision = decide(observations, self._clock.now(), self._settings)
        if decision.kind is DecisionKind.RECOVER:
            await self._recover(decision.nodes)
            observations = await self.observe()
            decision = decide(observations, self._clock.now(), self._settings)
        if decision.kind in (DecisionKind.START, DecisionKind.BOOTSTRAP):
            for name in decision.nodes:
                await self._act(decision, name)
        if decision.kind is DecisionKind.HOLD and decision.alert != self._last_alert:
            log.warning("%s", decision.alert)
            await self._alert(decision.alert)
        self._last_alert = decision.alert
        return decision

    async def run_until_synced(self, timeout_s: float, interval_s: float = 0.5) -> list[GaleraDecision]:
        """Passes until every node is synced in one primary component (or ``timeout_s``); the decisions."""
        decisions: list[GaleraDecision] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            decision = await self.run_pass()
            if (
                not decisions
                or decisions[-1].kind is not decision.kind
                or decision.kind is not DecisionKind.WAIT
            ):
                decisions.append(decision)
            if decision.kind in (DecisionKind.NOTHING, DecisionKind.HOLD):
                return decisions
            await asyncio.sleep(interval_s)
        return decisions

    # ---- observe -----------------------------------------------------------------------------------

    async def observe(self) -> list[NodeObservation]:
        return list(await asyncio.gather(*(self._observe(node) for node in self._nodes.values())))

    async def _observe(self, node: GaleraNode) -> NodeObservation:
        try:
            running = await node.running()
        except HavenError as exc:
            return NodeObservation(node.name, None, error=str(exc))
        if running:
            self._recovered.pop(node.name, None)
            self._recover_errors.pop(node.name, None)
            try:
                live: LiveStatus = await node.live()
            except HavenError as exc:
                since = self._mute_since.setdefault(node.name, self._clock.now())
                return NodeObservation(node.name, True, error=str(exc), unreadable_since=since)
            self._mute_since.pop(node.name, None)
            return NodeObservation(node.name, True, live)
        self._mute_since.pop(node.name, None)
        try:
            grastate: GraState = await node.grastate()
        except HavenError as exc:
            return NodeObservation(node.name, False, error=str(exc))
        return NodeObservation(
            node.name, False, grastate=grastate, recovered=self._recovered.get(node.name),
            error=self._recover_errors.get(node.name, ""),
        )  # fmt: skip

    async def _recover(self, names: Sequence[str]) -> None:
        async def one(name: str) -> None:
            try:
                self._recovered[name] = await self._nodes[name].recover_position()
            except HavenError as exc:
                self._recover_errors[name] = str(exc)

        await asyncio.gather(*(one(name) for name in names))

    # ---- act ---------------------------------------------------------------------------------------

    async def _act(self, decision: GaleraDecision, name: str) -> None:
        position = decision.position if decision.kind is DecisionKind.BOOTSTRAP else self._recovered.get(name)
        if position is None and decision.kind is DecisionKind.START:
            # Started from its InnoDB position it rejoins by IST; from none, by a full SST.
            await self._recover([name])
            position = self._recovered.get(name)
        action = GaleraAction(
            str(uuid.uuid4()), decision.kind, name, decision.reason, str(position or ""), self._clock.now()
        )
        await asyncio.to_thread(self._journal.issue, action)
        await self._finish(action)

    async def _finish(self, action: GaleraAction) -> None:
        node = self._nodes.get(action.node)
        state, error = "done", ""
        try:
            if node is None:
                raise HavenError(f"{action.node} is no longer a node of this cluster")
            position = _parse(action.position)
            if action.kind is DecisionKind.BOOTSTRAP:
                if position is None:
                    raise HavenError("a bootstrap step without its position")
                await node.bootstrap(position)
            else:
                await node.start(position)
        except HavenError as exc:
            state, error = "failed", str(exc)
            log.warning("galera %s of %s failed: %s", action.kind.value, action.node, exc)
        except Exception as exc:  # a bug: this step fails, never the loop
            state, error = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
            log.exception("galera %s of %s", action.kind.value, action.node)
        await asyncio.to_thread(self._journal.finish, action.id, state, error)


def _parse(text: str) -> Position | None:
    if not text:
        return None
    uuid_, _, seqno = text.rpartition(":")
    return Position(uuid_, int(seqno))
