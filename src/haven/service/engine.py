"""The engine: detection passes turned into notifications and alerts, and recoveries driven to the end.

Owned by the service runner (``haven serve``), by drills and by the demo.
Each ``tick`` reads the unusual hosts' channels, applies the pure detector,
acts on what changed (open a notification, raise or clear an alert, return a
recovered host to service) and runs the executor's due steps. It never
sleeps: ``next_wake`` says when it wants to be called again. The work is done
by its parts, one job each: detection (engine_detection.HostWatch), opening
notifications (engine_intake.Intake), the return to service
(engine_return.HostReturn) and the step executor (haven.recovery.executor);
this module owns the loop body and the leader's terms.

Several engines (``haven serve --coordination etcd://...``): the engine gets a
``leadership`` (the elector) and acts only while it leads. A tick of a follower
does nothing. The first tick of a term claims every unfinished notification in
the store for the term's epoch, reloads from the store and resumes them; the
first tick after the term ended forgets them and says so (LEADERSHIP_LOST).
The executor checks leadership again before each step and fences each commit
with the epoch, so a step never starts once leadership is gone. Every other
write the engine makes as leader (alerts raised or cleared, notifications the
detector opens, host conditions, a host returned to service, and the check
before returning one) carries the term's epoch too: the store refuses it with
``Deposed`` once a newer leader wrote, and the engine then stands by for the
rest of that term (LEADERSHIP_LOST, ``deposed_by``). Notifications submitted
through the API are stored whatever the term (the leader adopts them).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from haven.cloud.base import Cloud, LivenessSource
from haven.detection.detector import Hold
from haven.domain.clock import Clock
from haven.domain.errors import Deposed, StoreUnavailable
from haven.domain.events import EngineEvent, EventKind, EventSink, discard_events
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Notification, NotificationType
from haven.domain.liveness import HostCondition
from haven.domain.settings import EngineSettings
from haven.fencing.base import Fencer
from haven.recovery.custom import CustomRecovery
from haven.recovery.executor import CommitHook, RecoveryExecutor, no_hook
from haven.safety import Source
from haven.service.engine_detection import HostWatch
from haven.service.engine_intake import Intake
from haven.service.engine_return import HostReturn
from haven.store import Store

log = logging.getLogger("haven.engine")

FOLLOWER_POLL_S = 0.2  # how often a follower looks whether it leads now (a local check, no I/O)


class Leading(Protocol):
    """What the engine needs of an elector (haven.coordination.Elector): answered locally."""

    def is_leader(self) -> bool: ...

    def epoch(self) -> int | None: ...


class Engine:
    def __init__(
        self,
        cloud: Cloud,
        liveness: LivenessSource,
        fencer: Fencer,
        store: Store,
        clock: Clock,
        settings: EngineSettings | None = None,
        on_event: EventSink = discard_events,
        on_commit: CommitHook = no_hook,
        leadership: Leading | None = None,
    ) -> None:
        """``leadership`` None: this engine alone acts, always (the embedded default, drills)."""
        self._store, self._clock = store, clock
        self.settings = settings or EngineSettings()
        self._emit = on_event
        self._leadership = leadership
        self._term: int | None = None  # the epoch of the term this engine acts in; None: not acting
        self._deposed_in: int | None = None  # a term the store refused: not begun again
        self._watch = HostWatch(liveness, store, clock, self.settings.detection, on_event, self._open_fenced)
        self._return = HostReturn(cloud, store, clock, self.settings.recovery, on_event)
        self._executor = RecoveryExecutor(
            cloud,
            fencer,
            store,
            clock,
            self.settings.recovery,
            self._watch.is_healthy,
            self._on_step_event,
            on_commit,
            leadership.epoch if leadership is not None else None,
            authorize=self._watch.authorize,
        )
        self._intake = Intake(
            store,
            clock,
            self._executor,
            on_event,
            self._watch.membership_segment_of,
            self._term_matches,
            self.settings.recovery.return_to_service,
        )
        # Custom recovery: the API's claim/progress/finish/fail, heard by the same event sink.
        self.custom = CustomRecovery(store, clock, on_event)

    # ---- start-up ------------------------------------------------------------------------

    def start(self) -> int:
        """Load segments, remembered conditions and holds; resume unfinished recoveries."""
        members = self._store.list_hosts()
        process_failures = self._return.load(members)
        self._watch.load(members, process_failures)
        return self._executor.resume()

    def reload_membership(self) -> None:
        self._watch.reload_membership()
        self._emit(EngineEvent(EventKind.SEGMENTS_CHANGED, self._clock.now()))  # the dashboard's map

    # ---- queries -------------------------------------------------------------------------

    def is_healthy(self, host: HostName) -> bool:
        return self._watch.is_healthy(host)

    def condition(self, host: HostName) -> HostCondition:
        return self._watch.condition(host)

    @property
    def holds(self) -> Mapping[SegmentId, Hold]:
        return dict(self._watch.holds)

    def open_notifications(self) -> list[Notification]:
        return self._executor.open_notifications()

    @property
    def term(self) -> int | None:
        """The epoch this engine acts under now (None: a follower, or not started as leader yet)."""
        return self._term

    def is_acting(self) -> bool:
        """Whether this engine may act now: alone, or the leader."""
        return self._leadership is None or self._leadership.is_leader()

    def next_wake(self) -> float:
        if self._leadership is not None and self._term is None:
            return self._clock.now() + FOLLOWER_POLL_S
        candidates = self._watch.wake_times()
        due = self._executor.next_due()
        if due is not None:
            candidates.append(due)
        return min(candidates)

    # ---- the loop body -------------------------------------------------------------------

    async def tick(self) -> None:
        try:
            if self._leadership is not None and not self._check_term():
                return  # a follower: stand by (the API still serves reads)
            now = self._clock.now()
            self._watch.tick += 1
            if self._watch.is_due(now):
                if self._leadership is not None:
                    self._executor.adopt_new()  # notifications a follower's API stored for the leader
                epoch = self._epoch()
                await self._guarded("detection", self._watch.look(now, epoch))
                busy = {n.hostname for n in self._executor.open_notifications()}
                returning = self._return.run(now, epoch, busy, self._watch.is_healthy, self.is_acting)
                await self._guarded("return to service", returning)
            await self._executor.run_due()
        except Deposed as exc:
            self._deposed(exc)

    async def _guarded(self, what: str, work: Awaitable[None]) -> None:
        """A bug in one pass is logged and that pass skipped; the engine and every recovery go on."""
        try:
            await work
        except (Deposed, StoreUnavailable):
            raise
        except Exception as exc:
            log.error(
                "%s pass failed with an unexpected error; skipped until the next pass", what, exc_info=exc
            )
            self._watch.next_detection = self._clock.now() + self.settings.detection.heartbeat_interval_s
            self._emit(
                EngineEvent(
                    EventKind.STEP_ERROR, self._clock.now(), detail={"pass": what, "error": repr(exc)}
                )
            )

    # ---- terms ---------------------------------------------------------------------------

    def _check_term(self) -> bool:
        """Begin or end a term as leadership comes and goes; whether this engine acts now."""
        assert self._leadership is not None
        epoch = self._leadership.epoch()
        if epoch is not None and epoch == self._deposed_in:
            epoch = None  # the store refused this term's writes: a newer leader exists
        if epoch == self._term:
            return epoch is not None
        if self._term is not None:
            self._end_term()
        if epoch is not None:
            self._begin_term(epoch)
        return epoch is not None

    def _epoch(self) -> int | None:
        """The epoch this engine's writes as leader carry (None: the only engine, writes unfenced)."""
        return self._term if self._leadership is not None else None

    def _term_matches(self) -> bool:
        return self._leadership is None or (self._term is not None and self._leadership.is_leader())

    def _begin_term(self, epoch: int) -> None:
        now = self._clock.now()
        claimed = self._store.claim_unfinished(epoch)  # from now on an older leader's commits are refused
        resumed = self.start()
        self._term = epoch
        self._watch.next_detection = now
        log.info("leading (epoch %d): resumed %d unfinished notification(s)", epoch, resumed)
        detail = {"epoch": epoch, "resumed": resumed, "claimed": claimed}
        self._emit(EngineEvent(EventKind.LEADERSHIP_GAINED, now, detail=detail))

    def _end_term(self) -> None:
        epoch, self._term = self._term, None
        self._executor.drop_all()  # the next term reloads from the store
        log.warning("no longer the leader (epoch %s ended): this engine stops acting and stands by", epoch)
        self._emit(EngineEvent(EventKind.LEADERSHIP_LOST, self._clock.now(), detail={"epoch": epoch}))

    def _deposed(self, exc: Deposed) -> None:
        """The store refused a write: a newer leader wrote since. Stand by until a newer term."""
        self._deposed_in = exc.epoch
        if self._term is not None:
            self._term = None
            self._executor.drop_all()
        log.warning("deposed: %s", exc)
        detail = {"epoch": exc.epoch, "deposed_by": exc.owner_epoch}
        self._emit(EngineEvent(EventKind.LEADERSHIP_LOST, self._clock.now(), detail=detail))

    # ---- notifications -------------------------------------------------------------------

    def submit(
        self,
        type_: NotificationType,
        host: HostName,
        payload: Mapping[str, Any],
        generated_at: float | None = None,
    ) -> Notification | None:
        """Open a notification (Masakari semantics), unless an identical one is already open.

        What the API and the monitors submit is stored whatever this engine's term (unfenced).
        """
        return self._intake.open(type_, host, payload, generated_at, None)

    def _open_fenced(
        self, type_: NotificationType, host: HostName, payload: Mapping[str, Any], epoch: int | None
    ) -> Notification | None:
        """What the engine's own detection opens: fenced with the term's epoch."""
        return self._intake.open(type_, host, payload, None, epoch, Source.DETECTOR)

    def _on_step_event(self, event: EngineEvent) -> None:
        self._return.note(event)
        self._emit(event)
