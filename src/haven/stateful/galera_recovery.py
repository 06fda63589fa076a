"""The Galera recovery loop: observe every node, decide (haven.stateful.galera), act one persisted step.

Who calls it: the tests and drills on a loopback cluster, bench/galera.py, and (once the control-plane
reconciler hands Galera over, see docs/stateful.md) haven serve, as a leader-only runnable.

Each pass reads every node at once (running, grastate.dat, wsrep status), asks ``decide``, and:
- RECOVER: commits the intent, runs ``--wsrep-recover`` on the named stopped nodes (a read: its result,
  a position or a failure, is kept only while the node's grastate.dat is unchanged and the node does not
  run), commits the outcome with the positions read, and decides again;
- START / BOOTSTRAP: commits the intent to the journal, makes the effect (the driver re-reads the node
  first: a node already running is not started twice), then commits the outcome;
- HOLD: raises one ``galera_hold`` alert in the store's alerts, kept while the same hold lasts (a hold
  for another reason replaces it), cleared once the loop decides anything else.
The journal is the store's galera_actions (StoreJournal): a pass first finishes any step a stopped
engine left ``issued``, re-reading its node, and never makes that step's effect: a start whose server
runs, or a bootstrap whose server runs Primary, was made (done, never made again); one whose server does
not run was not made (failed), and the pass decides afresh from every node's state now: the step may be
of any age, and the cluster may have been brought up elsewhere meanwhile. The store refuses a second
unfinished step in one cluster, so a haven restarted mid-recovery never bootstraps twice nor a second
node. Every journal and alert write carries the leader's epoch: once one is refused (``Deposed``), this
loop makes no effect and writes nothing more. No effect is made whose intent could not be committed. A
step's failure fails that step only: the next pass decides again.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

from haven.domain.clock import Clock
from haven.domain.errors import Deposed, HavenError
from haven.domain.galera import DONE, FAILED, GaleraAction
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
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
from haven.store import Store

log = logging.getLogger(__name__)


class GaleraJournal(Protocol):
    """Where the loop's steps are persisted: the store's galera_actions (StoreJournal)."""

    def issue(self, action: GaleraAction) -> None: ...

    def finish(self, action_id: str, state: str, error: str, position: str | None = None) -> None: ...

    def unfinished(self) -> list[GaleraAction]: ...


class HoldAlerts(Protocol):
    """Where a hold is raised (the store's alerts: StoreAlerts) and cleared once the loop acts again."""

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


class StoreAlerts:
    """One ``galera_hold`` alert per hold in the store's alerts (its host: the cluster's name)."""

    def __init__(self, store: Store, cluster: str, clock: Clock, epoch: int | None = None) -> None:
        self.store, self.cluster, self._clock, self._epoch = store, cluster, clock, epoch

    def hold(self, text: str) -> None:
        """Raise the hold's alert; an active one saying something else (an earlier hold) is cleared first."""
        active = self.active()
        if active and active[0].message == text:
            return
        if active:
            self.clear()
        alert = Alert(
            str(uuid.uuid4()), AlertKind.GALERA_HOLD, text, self._clock.now(), host=HostName(self.cluster)
        )
        self.store.raise_alert(alert, epoch=self._epoch)

    def clear(self) -> None:
        self.store.clear_alerts(
            now=self._clock.now(), kind=AlertKind.GALERA_HOLD, host=HostName(self.cluster), epoch=self._epoch
        )

    def active(self) -> list[Alert]:
        return [
            a for a in self.store.list_alerts()
            if a.kind is AlertKind.GALERA_HOLD and a.host == self.cluster
        ]  # fmt: skip


class GaleraRecovery:
    def __init__(
        self,
        nodes: Sequence[GaleraNode],
        journal: GaleraJournal,
        alerts: HoldAlerts,
        clock: Clock,
        cluster: str,
        settings: GaleraSettings | None = None,
    ) -> None:
        self._nodes: Mapping[str, GaleraNode] = {n.name: n for n in nodes}
        self._journal, self._alerts, self._clock, self.cluster = journal, alerts, clock, cluster
        self._settings = settings or GaleraSettings()
        # --wsrep-recover's reads, each with the grastate.dat it was made beside (kept while unchanged)
        self._recovered: dict[str, tuple[GraState | None, Position]] = {}
        self._recover_errors: dict[str, tuple[GraState | None, str]] = {}
        self._deposed: str | None = None  # why this loop's epoch was refused: it acts no more
        self._mute_since: dict[str, float] = {}
        self._holding: bool | None = None  # None: not known yet (a restarted loop clears a stale hold)
        self._hold_reason: str | None = None  # the hold whose alert is raised

    @classmethod
    def on_store(
        cls,
        nodes: Sequence[GaleraNode],
        store: Store,
        cluster: str,
        clock: Clock,
        *,
        epoch: int | None = None,
        settings: GaleraSettings | None = None,
    ) -> GaleraRecovery:
        """The loop with its journal and its alerts in haven's store (what haven serve and drills run)."""
        journal, alerts = (
            StoreJournal(store, cluster, clock, epoch),
            StoreAlerts(store, cluster, clock, epoch),
        )
        return cls(nodes, journal, alerts, clock, cluster, settings)

    async def run_pass(self) -> GaleraDecision:
        if self._deposed is None:
            for action in await asyncio.to_thread(self._journal.unfinished):
                await self._resume(action)  # an engine stopped between intent and outcome: finish that first
        if self._deposed is not None:
            return GaleraDecision(
                DecisionKind.WAIT, f"this loop was deposed, a newer leader decides: {self._deposed}"
            )
        observations = await self.observe()
        decision = decide(observations, self._clock.now(), self._settings)
        if decision.kind is DecisionKind.RECOVER:
            await self._recover(decision.nodes, decision.reason)
            observations = await self.observe()
            decision = decide(observations, self._clock.now(), self._settings)
        if decision.kind in (DecisionKind.START, DecisionKind.BOOTSTRAP):
            for name in decision.nodes:
                await self._act(decision, name)
        holding = decision.kind is DecisionKind.HOLD
        try:
            if holding and decision.reason != self._hold_reason:  # a new hold (or a different one)
                log.warning("%s", decision.alert)
                await asyncio.to_thread(self._alerts.hold, decision.alert)
            elif not holding and self._holding is not False:
                await asyncio.to_thread(self._alerts.clear)
        except HavenError as exc:  # the store unavailable, or this engine deposed: the next pass retries
            log.warning("galera %s: alert not written: %s", self.cluster, exc)
            self._note_deposed(exc)
            return decision
        self._holding = holding
        self._hold_reason = decision.reason if holding else None
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
        # A read made beside another grastate.dat is stale: the node ran since, or an operator acted.
        recovered = self._recovered.get(node.name)
        if recovered is not None and recovered[0] != grastate:
            del self._recovered[node.name]
            recovered = None
        failed = self._recover_errors.get(node.name)
        if failed is not None and failed[0] != grastate:
            del self._recover_errors[node.name]
            failed = None
        return NodeObservation(
            node.name, False, grastate=grastate, recovered=recovered[1] if recovered else None,
            error=failed[1] if failed else "",
        )  # fmt: skip

    async def _recover(self, names: Sequence[str], reason: str) -> None:
        """``--wsrep-recover`` on ``names``: one journaled step (it runs mariadbd on their data folders)."""
        action = self._action(DecisionKind.RECOVER, ",".join(names), reason, "")
        if not await self._issue(action):
            return

        async def one(name: str) -> tuple[str, str]:
            node = self._nodes[name]
            self._recovered.pop(name, None)
            self._recover_errors.pop(name, None)
            try:
                position = await node.recover_position()
            except HavenError as exc:
                self._recover_errors[name] = (await self._grastate(node), str(exc))
                return f"{name}=?", str(exc)
            self._recovered[name] = (await self._grastate(node), position)
            return f"{name}={position}", ""

        results = await asyncio.gather(*(one(name) for name in names))
        found = [text for text, _ in results]
        errors = "; ".join(error for _, error in results if error)
        await self._outcome(action, FAILED if errors else DONE, errors, ",".join(found))

    @staticmethod
    async def _grastate(node: GaleraNode) -> GraState | None:
        """The grastate.dat a read was made beside (re-read after it: the read itself may rewrite it)."""
        try:
            return await node.grastate()
        except HavenError:
            return None  # never equal to a later read: the result is not kept

    # ---- act ---------------------------------------------------------------------------------------

    def _action(self, kind: DecisionKind, node: str, reason: str, position: str) -> GaleraAction:
        return GaleraAction(
            str(uuid.uuid4()), self.cluster, kind.value, node, reason, position, self._clock.now()
        )

    def _note_deposed(self, exc: HavenError) -> None:
        if isinstance(exc, Deposed):
            self._deposed = str(exc)

    async def _issue(self, action: GaleraAction) -> bool:
        """Commit the intent; False (no effect) when it could not be committed."""
        if self._deposed is not None:
            return False
        try:
            await asyncio.to_thread(self._journal.issue, action)
        except HavenError as exc:  # another step unfinished (another engine), the store unavailable
            log.warning("galera %s of %s not issued: %s", action.kind, action.node, exc)
            self._note_deposed(exc)
            return False
        return True

    async def _outcome(
        self, action: GaleraAction, state: str, error: str, position: str | None = None
    ) -> None:
        try:
            await asyncio.to_thread(self._journal.finish, action.id, state, error, position)
        except HavenError as exc:  # the next pass finds the step unfinished and finishes it
            log.warning("galera %s of %s: outcome not committed: %s", action.kind, action.node, exc)
            self._note_deposed(exc)

    async def _act(self, decision: GaleraDecision, name: str) -> None:
        position = decision.position if decision.kind is DecisionKind.BOOTSTRAP else self._read_position(name)
        if position is None and decision.kind is DecisionKind.START:
            # Started from its InnoDB position it rejoins by IST; from none, by a full SST.
            await self._recover([name], f"{name}'s position, to start it")
            position = self._read_position(name)
        action = self._action(decision.kind, name, decision.reason, str(position or ""))
        if await self._issue(action):
            await self._finish(action)

    def _read_position(self, name: str) -> Position | None:
        read = self._recovered.get(name)
        return read[1] if read else None

    async def _resume(self, action: GaleraAction) -> None:
        """A step a stopped engine left ``issued``: finish it from its node's state now, never make it.

        Its effect is never made here: it was decided from positions that may be any age (another
        leader, or an operator, may have brought the cluster up since). A start whose server runs, or a
        bootstrap whose server runs Primary, was made: done. A node that does not run was not started or
        bootstrapped: failed, and this pass decides afresh from every node. A bootstrapped node that runs
        but is not Primary (an in-place ``pc.bootstrap`` that did not take): failed, decided afresh. A
        node that cannot be read, or runs and does not answer yet (a bootstrap still starting): the step
        waits for a later pass. Each outcome is a leader write fenced by the epoch: a deposed loop's is
        refused, and it then writes nothing more.
        """
        if action.kind == DecisionKind.RECOVER.value:
            # A read: its result died with the engine; the next decision asks for it again.
            await self._outcome(action, FAILED, "haven stopped during --wsrep-recover; read again")
            return
        node = self._nodes.get(action.node)
        if node is None:
            await self._outcome(action, FAILED, f"{action.node} is no longer a node of this cluster")
            return
        try:
            running = await node.running()
        except HavenError as exc:
            log.warning("galera: %s unreadable, its unfinished %s waits: %s", action.node, action.kind, exc)
            return
        if not running:
            await self._outcome(action, FAILED, "not made before haven stopped; decided afresh")
            return
        if action.kind != DecisionKind.BOOTSTRAP.value:
            log.info("galera: %s of %s had been made before haven stopped", action.kind, action.node)
            await self._outcome(action, DONE, "")
            return
        try:
            live = await node.live()
        except HavenError as exc:
            log.info(
                "galera: %s runs, not answering yet; its unfinished bootstrap waits: %s", action.node, exc
            )
            return
        if live.primary:
            log.info("galera: the bootstrap of %s had been made before haven stopped", action.node)
            await self._outcome(action, DONE, "")
        else:
            why = f"{action.node} runs but is not Primary ({live.cluster_status}); decided afresh"
            await self._outcome(action, FAILED, why)

    async def _finish(self, action: GaleraAction) -> None:
        node = self._nodes.get(action.node)
        state, error = DONE, ""
        try:
            if node is None:
                raise HavenError(f"{action.node} is no longer a node of this cluster")
            position = _parse(action.position)
            if action.kind == DecisionKind.BOOTSTRAP.value:
                if position is None:
                    raise HavenError("a bootstrap step without its position")
                await node.bootstrap(position)
            else:
                await node.start(position)
        except HavenError as exc:
            state, error = FAILED, str(exc)
            log.warning("galera %s of %s failed: %s", action.kind, action.node, exc)
        except Exception as exc:  # a bug: this step fails, never the loop
            state, error = FAILED, f"unexpected error: {type(exc).__name__}: {exc}"
            log.exception("galera %s of %s", action.kind, action.node)
        await self._outcome(action, state, error)


def _parse(text: str) -> Position | None:
    if not text:
        return None
    uuid_, _, seqno = text.rpartition(":")
    return Position(uuid_, int(seqno))
