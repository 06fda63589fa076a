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
import uuid
from collections.abc import Mapping, Sequence

from haven.domain.clock import Clock
from haven.domain.errors import HavenError
from haven.domain.galera import DONE, FAILED, GaleraAction
from haven.domain.incidents import AlertKind
from haven.stateful.galera import (
    DecisionKind,
    GaleraDecision,
    GaleraSettings,
    GraState,
    LiveStatus,
    NodeObservation,
    Position,
    decide,
    hold_if_stuck,
)
from haven.stateful.galera_node import GaleraNode
from haven.stateful.journal import HoldAlerts, Journaled, StepJournal, StoreHold, StoreJournal, run_passes
from haven.store import Store

log = logging.getLogger(__name__)


GaleraJournal = StepJournal  # the name the tests and older callers know


class StoreAlerts(StoreHold):
    """One ``galera_hold`` alert per hold in the store's alerts (its host: the cluster's name)."""

    def __init__(self, store: Store, cluster: str, clock: Clock, epoch: int | None = None) -> None:
        super().__init__(store, cluster, clock, epoch, kind=AlertKind.GALERA_HOLD)


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
        self._clock, self.cluster = clock, cluster
        self._steps = Journaled(journal, alerts, "galera", cluster)
        self._settings = settings or GaleraSettings()
        # --wsrep-recover's reads, each with the grastate.dat it was made beside (kept while unchanged)
        self._recovered: dict[str, tuple[GraState | None, Position]] = {}
        self._recover_errors: dict[str, tuple[GraState | None, str]] = {}
        self._mute_since: dict[str, float] = {}

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
        for action in await self._steps.unfinished():
            await self._resume(action)  # an engine stopped between intent and outcome: finish that first
        if self._steps.deposed is not None:
            return GaleraDecision(DecisionKind.WAIT, self._steps.deposed_reason)
        observations = await self.observe()
        decision = decide(observations, self._clock.now(), self._settings)
        if decision.kind is DecisionKind.RECOVER:
            await self._recover(decision.nodes, decision.reason)
            observations = await self.observe()
            decision = decide(observations, self._clock.now(), self._settings)
        if decision.kind in (DecisionKind.START, DecisionKind.BOOTSTRAP):
            now = self._clock.now()
            try:
                steps = await self._steps.since(now - self._settings.start_window_s)
            except HavenError as exc:  # the store unavailable: act on nothing this pass
                log.warning("galera %s: journal not read: %s", self.cluster, exc)
                return GaleraDecision(DecisionKind.WAIT, f"the journal cannot be read: {exc}")
            decision = hold_if_stuck(decision, steps, now, self._settings)
        if decision.kind in (DecisionKind.START, DecisionKind.BOOTSTRAP):
            for name in decision.nodes:
                await self._act(decision, name)
        held = decision.kind is DecisionKind.HOLD or bool(decision.alert)  # a START may hold a stuck node
        await self._steps.show_hold(held, decision.reason, decision.alert)
        return decision

    async def run_until_synced(self, timeout_s: float, interval_s: float = 0.5) -> list[GaleraDecision]:
        """Passes until every node is synced in one primary component (or ``timeout_s``); the decisions."""
        return await run_passes(self.run_pass, timeout_s, interval_s)

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
        if not await self._steps.issue(action):
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
        await self._steps.outcome(action, FAILED if errors else DONE, errors, ",".join(found))

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

    async def _act(self, decision: GaleraDecision, name: str) -> None:
        position = decision.position if decision.kind is DecisionKind.BOOTSTRAP else self._read_position(name)
        if position is None and decision.kind is DecisionKind.START:
            # Started from its InnoDB position it rejoins by IST; from none, by a full SST.
            await self._recover([name], f"{name}'s position, to start it")
            position = self._read_position(name)
        action = self._action(decision.kind, name, decision.reason, str(position or ""))
        if await self._steps.issue(action):
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
            await self._steps.outcome(action, FAILED, "haven stopped during --wsrep-recover; read again")
            return
        if not await self._steps.resume_if_running(action, self._nodes.get(action.node)):
            return
        node = self._nodes[action.node]
        if action.kind != DecisionKind.BOOTSTRAP.value:
            log.info("galera: %s of %s had been made before haven stopped", action.kind, action.node)
            await self._steps.outcome(action, DONE, "")
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
            await self._steps.outcome(action, DONE, "")
        else:
            why = f"{action.node} runs but is not Primary ({live.cluster_status}); decided afresh"
            await self._steps.outcome(action, FAILED, why)

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
        await self._steps.outcome(action, state, error)


def _parse(text: str) -> Position | None:
    if not text:
        return None
    uuid_, _, seqno = text.rpartition(":")
    return Position(uuid_, int(seqno))
