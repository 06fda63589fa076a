"""The step executor: runs the persisted steps of every open notification, resumably.

Called by the engine on each tick. For every step it commits the intent
(state RUNNING, attempt counted) before calling the handler, and the outcome
after; a batch of steps that start together is committed in one transaction.
A new executor on the same store resumes whatever was unfinished; handlers
re-read the world, so nothing is done twice.

With several engines (``haven serve --coordination``) the engine passes ``leader_epoch``:
the current leader's epoch, or None while this engine does not lead. No step starts
without an epoch, and every commit claims the notification for that epoch in the same
transaction (haven.store.fencing); a commit refused with ``Deposed`` (a newer leader owns
the notification) drops the notification here at once: no handler runs after it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from haven.cloud.base import Cloud
from haven.domain.clock import Clock
from haven.domain.errors import CloudError, Deposed, NotLeading, TemporaryError
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import (
    RECOVERY_SUMMARY_KEY,
    UNFINISHED_STATUSES,
    Notification,
    NotificationStatus,
    SegmentMode,
    Step,
    StepState,
)
from haven.domain.settings import RecoverySettings
from haven.fencing.base import Fencer
from haven.recovery import dry_run_step, evacuate_step, host_steps, process_steps, vm_steps
from haven.recovery.context import StepContext
from haven.recovery.guard import GuardedCloud, GuardedFencer
from haven.recovery.outcome import Outcome, failed, requeue
from haven.recovery.summary import alerts_for, summarize
from haven.recovery.targets import Claim, TargetBook
from haven.recovery.workflows import (
    DISABLE_SERVICE,
    DRY_RUN,
    ENABLE_RESERVED,
    ENABLE_SERVICE,
    EVACUATE,
    FENCE,
    FORCE_DOWN,
    PARALLEL_KINDS,
    PLAN,
    RECOVERY_MODE_KEY,
)
from haven.safety import Action, Decision
from haven.store import Store

log = logging.getLogger(__name__)

# haven.safety's answer for one notification's step (the engine's HostWatch.authorize).
Authorizer = Callable[[Action, HostName, Notification, int | None, float, float | None], Decision]
UNEXPECTED_RETRIES = 3  # a step whose handler raised an unexpected error this often is failed

Handler = Callable[[Step, StepContext], Awaitable[Outcome]]
HANDLERS: Mapping[str, Handler] = {
    FENCE: host_steps.fence,
    FORCE_DOWN: host_steps.force_down,
    PLAN: host_steps.plan,
    ENABLE_RESERVED: host_steps.enable_reserved,
    EVACUATE: evacuate_step.evacuate,
    DISABLE_SERVICE: process_steps.disable_service,
    ENABLE_SERVICE: process_steps.enable_service,
    DRY_RUN: dry_run_step.dry_run,
    **vm_steps.HANDLERS,
}
TERMINAL = frozenset({StepState.DONE, StepState.FAILED, StepState.SKIPPED})

# Called around every commit; tests use it to stop the engine at each step boundary.
CommitHook = Callable[[str], None]


def no_hook(_: str) -> None:
    """The default CommitHook."""


# The leader's epoch now, or None while not leading (haven.coordination's Elector.epoch).
EpochSource = Callable[[], int | None]


@dataclass(slots=True)
class _Open:
    notification: Notification
    steps: list[Step]
    due: dict[int, float] = field(default_factory=dict)
    in_flight: int = 0  # parallel steps running now; kept up to date at every commit

    def count_in_flight(self) -> None:
        self.in_flight = sum(
            1 for s in self.steps if s.kind in PARALLEL_KINDS and s.state is StepState.RUNNING
        )


class RecoveryExecutor:
    def __init__(
        self,
        cloud: Cloud,
        fencer: Fencer,
        store: Store,
        clock: Clock,
        settings: RecoverySettings,
        host_is_healthy: Callable[[HostName], bool],
        on_event: EventSink,
        on_commit: CommitHook = no_hook,
        leader_epoch: EpochSource | None = None,
        *,
        authorize: Authorizer,
    ) -> None:
        """``leader_epoch`` None: one engine alone, steps unfenced (drills, tests, the embedded default).

        ``authorize``: the safety policy, asked by steps before every fence, evacuation and disable.
        """
        self._cloud, self._fencer, self._store, self._clock = cloud, fencer, store, clock
        self._authorize = authorize
        self._leader_epoch = leader_epoch
        self._settings = settings
        self._host_is_healthy = host_is_healthy
        self._emit = on_event
        self._on_commit = on_commit
        self._open: dict[NotificationId, _Open] = {}
        self._targets = TargetBook(self._pending_claims)

    # ---- intake --------------------------------------------------------------------------

    def resume(self) -> int:
        """Pick up every notification a previous engine left unfinished."""
        self._open.clear()  # what the store says wins over anything remembered from an earlier term
        self.adopt_new()
        return len(self._open)

    def adopt_new(self) -> int:
        """Follow unfinished notifications stored by others (a follower's API); returns how many."""
        adopted = 0
        for n in self._store.list_notifications(statuses=UNFINISHED_STATUSES):
            if n.id in self._open or n.payload.get(RECOVERY_MODE_KEY) == SegmentMode.NOTIFY.value:
                continue  # custom recovery: an external system works on it through the API
            self._open[n.id] = _Open(n, self._store.list_steps(n.id))
            self._open[n.id].count_in_flight()
            adopted += 1
        return adopted

    def drop_all(self) -> None:
        """Forget every open notification (leadership lost: the next term reloads from the store)."""
        self._open.clear()

    def track(self, notification: Notification, steps: Sequence[Step]) -> None:
        """Follow a notification the engine has just stored with its steps."""
        self._open[notification.id] = _Open(notification, list(steps))
        self._open[notification.id].count_in_flight()

    def is_open(self, notification_id: NotificationId) -> bool:
        return notification_id in self._open

    def open_notifications(self) -> list[Notification]:
        return [o.notification for o in self._open.values()]

    def next_due(self) -> float | None:
        """The earliest time some open notification has a step it can run."""
        now = self._clock.now()
        free = self._settings.max_parallel_evacuations - self._in_flight()
        dues = [t for item in self._open.values() if (t := self._item_due(item, now, free)) is not None]
        return min(dues, default=None)

    @staticmethod
    def _item_due(item: _Open, now: float, free_slots: int) -> float | None:
        pending = [s for s in item.steps if s.state not in TERMINAL]
        if not pending:
            return now  # only the closing commit is left
        if pending[0].kind not in PARALLEL_KINDS:
            return item.due.get(pending[0].seq, now)
        times: list[float] = []
        for step in pending:
            if step.kind not in PARALLEL_KINDS:
                break
            if step.state is StepState.RUNNING:
                times.append(item.due.get(step.seq, now))
            elif free_slots > 0:
                times.append(now)
        return min(times, default=None)

    # ---- the work ------------------------------------------------------------------------

    async def run_due(self) -> None:
        for notification_id in list(self._open):
            item = self._open.get(notification_id)
            if item is None:
                continue  # dropped meanwhile (deposed)
            acting, epoch = self._fence()
            if not acting:
                return  # not leading (any more): no step starts
            try:
                await self._advance(item, self._in_flight(), epoch)
            except Deposed as exc:
                self._deposed(item, exc)

    def _fence(self) -> tuple[bool, int | None]:
        """(whether this engine may act now, the epoch to fence commits with: None when unfenced)."""
        if self._leader_epoch is None:
            return True, None
        epoch = self._leader_epoch()
        return epoch is not None, epoch

    def _deposed(self, item: _Open, exc: Deposed) -> None:
        log.warning("%s", exc)
        self._open.pop(item.notification.id, None)

    def _in_flight(self) -> int:
        return sum(o.in_flight for o in self._open.values())

    def _pending_claims(self) -> dict[HostName, Claim]:
        """What planned evacuations not yet issued will take on each target host."""
        claims: dict[HostName, Claim] = {}
        for item in self._open.values():
            for s in item.steps:
                if s.kind != EVACUATE or s.state not in (StepState.PENDING, StepState.RUNNING):
                    continue
                claimed = evacuate_step.claim_of(s.detail)
                if claimed is None:
                    continue
                target, vcpus, ram_mb, disk_gb = claimed
                claims[target] = claims.get(target, Claim()) + Claim(vcpus, ram_mb, disk_gb)
        return claims

    async def _advance(self, item: _Open, in_flight: int, epoch: int | None) -> None:
        """Run the due steps of one notification: intent committed, handlers run, outcomes committed."""
        now = self._clock.now()
        batch = self._runnable(item, now, self._settings.max_parallel_evacuations - in_flight)
        if batch:
            started = self._commit_intent(item, batch, now, epoch)
            if not self._fence()[0]:
                return  # leadership ended during the commit: no effect; the next leader re-runs them
            ctx = self._context(item, now, epoch)
            outcomes = await asyncio.gather(*(self._run_one(step, ctx) for step in started))
            self._commit_outcomes(item, started, outcomes, now, epoch)
        if all(s.state in TERMINAL for s in item.steps):
            self._finish(item, epoch)

    def _context(self, item: _Open, now: float, epoch: int | None) -> StepContext:
        """What the batch's handlers may touch: the world through the leadership guard, the policy,
        and a way to commit an *issued* marker before a call that is not idempotent."""
        notification = item.notification

        def still_leading() -> bool:
            return self._fence() == (True, epoch)

        def authorize(
            action: Action, host: HostName, waited_s: float = 0.0, bmc_answered_at: float | None = None
        ) -> Decision:
            return self._authorize(action, host, notification, epoch, waited_s, bmc_answered_at)

        def persist(step: Step, detail: Mapping[str, Any]) -> None:
            if not still_leading():
                raise NotLeading(f"not leading any more: step {step.seq} of {notification.id} not recorded")
            marked = dataclasses.replace(step, detail=dict(detail))
            self._on_commit("before-issued")
            self._store.save_progress(notification.id, steps=[marked], now=self._clock.now(), epoch=epoch)
            self._on_commit("after-issued")
            self._replace(item, [marked])

        return StepContext(
            GuardedCloud(self._cloud, still_leading),
            GuardedFencer(self._fencer, still_leading),
            self._store,
            self._settings,
            now,
            notification,
            self._host_is_healthy,
            self._targets,
            epoch=epoch,
            authorize=authorize,
            persist=persist,
        )

    def _runnable(self, item: _Open, now: float, free_slots: int) -> list[Step]:
        pending = [s for s in item.steps if s.state not in TERMINAL]
        if not pending:
            return []
        head = pending[0]
        if head.kind not in PARALLEL_KINDS:
            return [head] if item.due.get(head.seq, 0.0) <= now else []
        batch: list[Step] = []
        for step in pending:
            if step.kind not in PARALLEL_KINDS:
                break  # a sequential step waits for the parallel block before it
            if item.due.get(step.seq, 0.0) > now:
                continue
            if step.state is StepState.RUNNING:
                batch.append(step)
            elif free_slots > 0:
                batch.append(step)
                free_slots -= 1
        return batch

    def _commit_intent(self, item: _Open, batch: list[Step], now: float, epoch: int | None) -> list[Step]:
        starting = [
            dataclasses.replace(s, state=StepState.RUNNING, attempts=s.attempts + 1, started_at=now)
            for s in batch
            if s.state is StepState.PENDING
        ]
        status = (
            NotificationStatus.RUNNING if item.notification.status is not NotificationStatus.RUNNING else None
        )
        if starting or status or epoch is not None:
            # With an epoch even a step already RUNNING (resumed, or polled again) is claimed first.
            self._on_commit("before-intent")
            self._store.save_progress(
                item.notification.id, steps=starting, status=status, now=now, epoch=epoch
            )
            self._on_commit("after-intent")
            if status:
                item.notification = dataclasses.replace(item.notification, status=status, updated_at=now)
            self._replace(item, starting)
            for s in starting:
                self._emit(
                    EngineEvent(
                        EventKind.STEP_STARTED,
                        now,
                        item.notification.hostname,
                        notification_id=item.notification.id,
                        detail={"kind": s.kind, "subject": s.subject, "seq": s.seq},
                    )
                )
        by_seq = {s.seq: s for s in item.steps}
        return [by_seq[s.seq] for s in batch]

    async def _run_one(self, step: Step, ctx: StepContext) -> Outcome:
        handler = HANDLERS.get(step.kind)
        if handler is None:
            return failed(f"unknown step kind {step.kind!r}", step.detail, stop_recovery=True)
        try:
            outcome = await handler(step, ctx)
        except TemporaryError as exc:
            outcome = requeue(exc.delay, {**self._latest(step).detail, "last_error": str(exc)})
        except CloudError as exc:
            return failed(str(exc), self._latest(step).detail)
        except NotLeading as exc:
            # Nothing was asked: the leader of the current term runs the step again.
            return requeue(
                self._settings.fence_poll_interval_s, {**self._latest(step).detail, "last_error": str(exc)}
            )
        except Deposed:
            raise
        except Exception as exc:  # a bug in one handler: that step only, never the engine
            return self._unexpected(step, ctx, exc)
        limit = self._settings.step_timeout_s
        if (
            outcome.state is StepState.RUNNING
            and step.started_at is not None
            and ctx.now - step.started_at > limit
        ):
            # A step that keeps being retried must end, and loudly, rather than stall the recovery.
            why = outcome.detail.get("last_error") or "no progress"
            return failed(
                f"gave up after {limit:g} s: {why}",
                outcome.detail,
                stop_recovery=step.kind not in PARALLEL_KINDS,
            )
        return outcome

    def _latest(self, step: Step) -> Step:
        """The step as last recorded (a handler may have committed an issued marker since it began)."""
        item = self._open.get(step.notification_id)
        if item is not None:
            for s in item.steps:
                if s.seq == step.seq:
                    return s
        return step

    def _unexpected(self, step: Step, ctx: StepContext, exc: Exception) -> Outcome:
        """An unexpected error in a handler: retried with back-off, then failed with an alert."""
        detail = dict(self._latest(step).detail)
        errors = int(detail.get("unexpected_errors", 0)) + 1
        detail.update(unexpected_errors=errors, last_error=f"{type(exc).__name__}: {exc}")
        log.error(
            "step %s (%s of %s) raised an unexpected error", step.seq, step.kind, step.subject, exc_info=exc
        )
        self._emit(
            EngineEvent(
                EventKind.STEP_ERROR,
                ctx.now,
                ctx.notification.hostname,
                notification_id=ctx.notification.id,
                detail={"kind": step.kind, "subject": step.subject, "error": detail["last_error"]},
            )
        )
        if errors >= UNEXPECTED_RETRIES:
            return failed(
                f"unexpected error {errors} times (a bug in haven; see its log): {detail['last_error']}",
                detail,
                stop_recovery=step.kind not in PARALLEL_KINDS,
            )
        return requeue(2.0**errors, detail)

    def _commit_outcomes(
        self, item: _Open, started: list[Step], outcomes: Sequence[Outcome], now: float, epoch: int | None
    ) -> None:
        updated: list[Step] = []
        new_steps: list[Step] = []
        stop = False
        next_seq = max(s.seq for s in item.steps) + 1
        for step, outcome in zip(started, outcomes, strict=True):
            finished_at = now if outcome.state in TERMINAL else None
            updated.append(
                dataclasses.replace(
                    step, state=outcome.state, detail=dict(outcome.detail), finished_at=finished_at
                )
            )
            item.due[step.seq] = now + outcome.requeue_after if outcome.state is StepState.RUNNING else 0.0
            stop = stop or outcome.stop_recovery
            for new in outcome.new_steps:
                new_steps.append(
                    Step(item.notification.id, next_seq, new.kind, new.subject, detail=dict(new.detail))
                )
                next_seq += 1
        if stop:
            done_seqs = {s.seq for s in updated}
            updated += [
                dataclasses.replace(s, state=StepState.SKIPPED, finished_at=now)
                for s in item.steps
                if s.state not in TERMINAL and s.seq not in done_seqs
            ]
        self._on_commit("before-outcome")
        self._store.save_progress(
            item.notification.id, steps=updated, new_steps=new_steps, now=now, epoch=epoch
        )
        self._on_commit("after-outcome")
        self._replace(item, updated)
        item.steps.extend(new_steps)
        for s in updated:
            if s.state in TERMINAL:
                item.due.pop(s.seq, None)
                self._emit(
                    EngineEvent(
                        EventKind.STEP_FINISHED,
                        now,
                        item.notification.hostname,
                        notification_id=item.notification.id,
                        detail={
                            "kind": s.kind,
                            "subject": s.subject,
                            "seq": s.seq,
                            "state": s.state.value,
                            **_brief(s.detail),
                        },
                    )
                )

    def _finish(self, item: _Open, epoch: int | None) -> None:
        now = self._clock.now()
        status, summary = summarize(item.steps)
        payload = {**item.notification.payload, RECOVERY_SUMMARY_KEY: summary}
        kind = EventKind.NOTIFICATION_FINISHED
        if status is NotificationStatus.NEW:
            # Handed to the VM's owner: open again, in notify mode, for an external system to claim.
            payload[RECOVERY_MODE_KEY] = SegmentMode.NOTIFY.value
            kind = EventKind.NOTIFICATION_LEFT_TO_OWNER
        # Alerts before the closing commit: a crash between the two replays the finish, and the
        # store drops the duplicate alert; the other order could lose the alert for good.
        for alert in alerts_for(item.notification, item.steps, summary, now):
            self._store.raise_alert(alert, epoch=epoch)
        self._on_commit("before-finish")
        self._store.save_progress(item.notification.id, status=status, payload=payload, now=now, epoch=epoch)
        self._on_commit("after-finish")
        del self._open[item.notification.id]
        self._emit(
            EngineEvent(
                kind,
                now,
                item.notification.hostname,
                notification_id=item.notification.id,
                detail={"status": status.value, **summary},
            )
        )

    @staticmethod
    def _replace(item: _Open, steps: Sequence[Step]) -> None:
        by_seq = {s.seq: s for s in steps}
        if by_seq:
            item.steps = [by_seq.get(s.seq, s) for s in item.steps]
            item.count_in_flight()


def _brief(detail: Mapping[str, Any]) -> dict[str, Any]:
    keys = (
        "error",
        "target",
        "host",
        "name",
        "placed",
        "unplaced",
        "confirmed_at",
        "issued_at",
        vm_steps.OWNER_KEY,
    )
    return {k: detail[k] for k in keys if k in detail}
