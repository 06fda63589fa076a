"""The RabbitMQ recovery loop: observe every node, decide (haven.stateful.rabbitmq), act one persisted step.

Who calls it: the tests and ``haven drill rabbitmq-*`` on a loopback cluster (haven.stateful
.rabbitmq_drills), and haven serve's ``[stateful.rabbitmq]`` (haven.stateful.serving), as a leader-only
runnable.

Each pass reads every node at once (its VM running, its own ``cluster_status``), asks ``decide`` and:
- START / RESTART: commits the intent to the journal, makes the effect (a start re-reads the node first:
  a node already running is not started twice; a restart is ``stop_app`` then ``start_app``), then
  commits the outcome;
- HOLD: raises one ``rabbitmq_hold`` alert, kept while the same hold lasts, cleared once the loop
  decides anything else.

The journal is the store's table of stateful steps (galera_actions, migration 0012; no table of its own):
a RabbitMQ cluster's steps are kept under the key ``rabbitmq:<cluster>``, so its one-unfinished-step
index holds for RabbitMQ too, and a Galera cluster of the same name never shares it. A pass first
finishes any step a stopped engine left ``issued``, re-reading its node: a start whose VM runs was made
(done), one whose VM does not run was not (failed, decided afresh); a restart whose node answers was made
(done); one whose node runs but whose app is stopped (haven stopped between ``stop_app`` and
``start_app``) is completed by ``start_app``, the one effect a resume makes: leaving a node's app stopped
is never safer. A restart whose ``start_app`` failed after ``stop_app`` (the node's app stopped) is left
``issued`` the same way, so the next pass completes it; ``start_app`` is tried ``start_attempts`` times,
then the step fails and the loop holds (``hold_if_stuck``, which also holds a node started again and
again). Every journal and alert write carries the leader's epoch: once one is refused
(``Deposed``), this loop makes no effect and writes nothing more. No effect is made whose intent could
not be committed.
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
from haven.stateful.galera_recovery import GaleraJournal, HoldAlerts, StoreJournal
from haven.stateful.rabbitmq import (
    DecisionKind,
    NodeObservation,
    PastStep,
    RabbitDecision,
    RabbitSettings,
    decide,
    hold_if_stuck,
)
from haven.stateful.rabbitmq_node import RabbitNode
from haven.store import Store

log = logging.getLogger(__name__)

APP_STOPPED = "requires the 'rabbit' app to be running"  # rabbitmqctl's words when the app is stopped


def journal_key(cluster: str) -> str:
    """The journal's cluster key of a RabbitMQ cluster (Galera's steps use the plain name)."""
    return f"rabbitmq:{cluster}"


class RabbitJournal(GaleraJournal, Protocol):
    """The journal, and its steps since a time (a node started again and again holds)."""

    def actions(self, after: float = 0.0) -> list[GaleraAction]: ...


class RabbitStoreAlerts:
    """One ``rabbitmq_hold`` alert per hold in the store's alerts (its host: the cluster's name)."""

    def __init__(self, store: Store, cluster: str, clock: Clock, epoch: int | None = None) -> None:
        self.store, self.cluster, self._clock, self._epoch = store, cluster, clock, epoch

    def hold(self, text: str) -> None:
        active = self.active()
        if active and active[0].message == text:
            return
        if active:
            self.clear()
        alert = Alert(
            str(uuid.uuid4()), AlertKind.RABBITMQ_HOLD, text, self._clock.now(), host=HostName(self.cluster)
        )
        self.store.raise_alert(alert, epoch=self._epoch)

    def clear(self) -> None:
        self.store.clear_alerts(
            now=self._clock.now(), kind=AlertKind.RABBITMQ_HOLD, host=HostName(self.cluster),
            epoch=self._epoch,
        )  # fmt: skip

    def active(self) -> list[Alert]:
        return [
            a for a in self.store.list_alerts()
            if a.kind is AlertKind.RABBITMQ_HOLD and a.host == self.cluster
        ]  # fmt: skip


class RabbitRecovery:
    def __init__(
        self,
        nodes: Sequence[RabbitNode],
        journal: RabbitJournal,
        alerts: HoldAlerts,
        clock: Clock,
        cluster: str,
        settings: RabbitSettings | None = None,
    ) -> None:
        self._nodes: Mapping[str, RabbitNode] = {n.name: n for n in nodes}
        self._journal, self._alerts, self._clock, self.cluster = journal, alerts, clock, cluster
        self._settings = settings or RabbitSettings()
        self._deposed: str | None = None
        self._mute_since: dict[str, float] = {}
        self._partitioned_since: float | None = None
        self._holding: bool | None = None  # None: not known yet (a restarted loop clears a stale hold)
        self._hold_reason: str | None = None
        self._start_app_failures: dict[str, int] = {}  # an unfinished restart's id -> start_app failures

    @classmethod
    def on_store(
        cls,
        nodes: Sequence[RabbitNode],
        store: Store,
        cluster: str,
        clock: Clock,
        *,
        epoch: int | None = None,
        settings: RabbitSettings | None = None,
    ) -> RabbitRecovery:
        """The loop with its journal and alerts in haven's store (what haven serve and the drills run)."""
        journal = StoreJournal(store, journal_key(cluster), clock, epoch)
        alerts = RabbitStoreAlerts(store, cluster, clock, epoch)
        return cls(nodes, journal, alerts, clock, cluster, settings)

    async def run_pass(self) -> RabbitDecision:
        if self._deposed is None:
            for action in await asyncio.to_thread(self._journal.unfinished):
                await self._resume(action)
        if self._deposed is not None:
            return RabbitDecision(
                DecisionKind.WAIT, f"this loop was deposed, a newer leader decides: {self._deposed}"
            )
        observations = await self.observe()
        now = self._clock.now()
        decision = decide(observations, now, self._partitioned_since, self._settings)
        if decision.kind is not DecisionKind.HOLD:
            try:
                steps = await asyncio.to_thread(self._journal.actions, now - self._settings.start_window_s)
            except HavenError as exc:  # the store unavailable: act on nothing this pass
                log.warning("rabbitmq %s: journal not read: %s", self.cluster, exc)
                return RabbitDecision(DecisionKind.WAIT, f"the journal cannot be read: {exc}")
            past = [PastStep(s.kind, s.node, s.state, s.error, s.created_at) for s in steps]
            decision = hold_if_stuck(decision, observations, past, now, self._settings)
        if decision.kind in (DecisionKind.START, DecisionKind.RESTART):
            for name in decision.nodes:
                await self._act(decision, name)
            if decision.kind is DecisionKind.RESTART:
                self._partitioned_since = None  # a new view: the next partition seen waits its grace
        holding = decision.kind is DecisionKind.HOLD
        try:
            if holding and decision.reason != self._hold_reason:
                log.warning("%s", decision.alert)
                await asyncio.to_thread(self._alerts.hold, decision.alert)
            elif not holding and self._holding is not False:
                await asyncio.to_thread(self._alerts.clear)
        except HavenError as exc:  # the store unavailable, or this engine deposed: the next pass retries
            log.warning("rabbitmq %s: alert not written: %s", self.cluster, exc)
            self._note_deposed(exc)
            return decision
        self._holding = holding
        self._hold_reason = decision.reason if holding else None
        return decision

    async def run_until_healthy(self, timeout_s: float, interval_s: float = 0.5) -> list[RabbitDecision]:
        """Passes until every node runs and sees every other (or ``timeout_s``, or a hold); the decisions."""
        decisions: list[RabbitDecision] = []
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
        observations = list(await asyncio.gather(*(self._observe(n) for n in self._nodes.values())))
        partitioned = any(o.status is not None and any(o.status.partitions.values()) for o in observations)
        if not partitioned:
            self._partitioned_since = None
        elif self._partitioned_since is None:
            self._partitioned_since = self._clock.now()
        return observations

    async def _observe(self, node: RabbitNode) -> NodeObservation:
        try:
            running = await node.running()
        except HavenError as exc:
            return NodeObservation(node.name, None, error=str(exc))
        if not running:
            self._mute_since.pop(node.name, None)
            return NodeObservation(node.name, False)
        try:
            status = await node.status()
        except HavenError as exc:
            since = self._mute_since.setdefault(node.name, self._clock.now())
            return NodeObservation(node.name, True, error=str(exc), unreadable_since=since)
        self._mute_since.pop(node.name, None)
        return NodeObservation(node.name, True, status)

    # ---- act ---------------------------------------------------------------------------------------

    def _note_deposed(self, exc: HavenError) -> None:
        if isinstance(exc, Deposed):
            self._deposed = str(exc)

    async def _act(self, decision: RabbitDecision, name: str) -> None:
        action = GaleraAction(
            str(uuid.uuid4()), journal_key(self.cluster), decision.kind.value, name, decision.reason,
            ",".join(decision.kept), self._clock.now(),
        )  # fmt: skip
        if self._deposed is not None:
            return
        try:
            await asyncio.to_thread(self._journal.issue, action)
        except HavenError as exc:  # another step unfinished (another engine), the store unavailable
            log.warning("rabbitmq %s of %s not issued: %s", action.kind, name, exc)
            self._note_deposed(exc)
            return
        state, error = DONE, ""
        try:
            node = self._nodes[name]
            if action.kind == DecisionKind.RESTART.value:
                await node.restart_app()
            else:
                await node.start()
        except HavenError as exc:
            state, error = FAILED, str(exc)
            log.warning("rabbitmq %s of %s failed: %s", action.kind, name, exc)
            if action.kind == DecisionKind.RESTART.value and await self._app_stopped(name):
                # stop_app was made, start_app was not: the step stays issued and the next pass's
                # resume completes it with start_app (a few tries, then it fails and the loop holds)
                return
        except Exception as exc:  # a bug: this step fails, never the loop
            state, error = FAILED, f"unexpected error: {type(exc).__name__}: {exc}"
            log.exception("rabbitmq %s of %s", action.kind, name)
        await self._outcome(action, state, error)

    async def _outcome(self, action: GaleraAction, state: str, error: str) -> None:
        try:
            await asyncio.to_thread(self._journal.finish, action.id, state, error, None)
        except HavenError as exc:  # the next pass finds the step unfinished and finishes it
            log.warning("rabbitmq %s of %s: outcome not committed: %s", action.kind, action.node, exc)
            self._note_deposed(exc)

    async def _app_stopped(self, name: str) -> bool:
        """Whether ``name``'s VM runs with its ``rabbit`` app stopped (rabbitmqctl says so)."""
        try:
            await self._nodes[name].status()
        except HavenError as exc:
            return APP_STOPPED in str(exc)
        return False

    async def _resume(self, action: GaleraAction) -> None:
        """A step a stopped engine left ``issued``: finish it from its node's state now."""
        node = self._nodes.get(action.node)
        if node is None:
            await self._outcome(action, FAILED, f"{action.node} is no longer a node of this cluster")
            return
        try:
            running = await node.running()
        except HavenError as exc:
            log.warning("rabbitmq: %s unreadable, its unfinished %s waits: %s", action.node, action.kind, exc)
            return
        if not running:
            await self._outcome(action, FAILED, "not made before haven stopped; decided afresh")
            return
        if action.kind != DecisionKind.RESTART.value:
            await self._outcome(action, DONE, "")
            return
        try:
            await node.status()
        except HavenError as exc:
            if APP_STOPPED not in str(exc):
                log.info(
                    "rabbitmq: %s does not answer yet; its unfinished restart waits: %s", action.node, exc
                )
                return
            try:  # stopped between stop_app and start_app: the restart is completed, never left half-made
                await node.start_app()
            except HavenError as again:
                tries = self._start_app_failures.get(action.id, 0) + 1
                self._start_app_failures[action.id] = tries
                if tries < self._settings.start_attempts:
                    log.warning("rabbitmq: start_app of %s failed (try %d): %s", action.node, tries, again)
                    return  # the step stays issued: the next pass tries again
                await self._outcome(action, FAILED, f"start_app failed {tries} times: {again}")
                return
        await self._outcome(action, DONE, "")
