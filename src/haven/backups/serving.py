"""haven serve's backups: the runner's passes and the restore drills as one leader-only runnable.

Built by haven.cli.serve when ``[backups] enabled`` (on the simulated cloud or a real one: the port
is whichever the chosen cloud gives), run only while this engine leads (``run(stop)``, stopped at
the end of the term); the API's ``POST /v1/haven/backups`` and ``.../restores`` use the same runner
and restorer (haven.api.routes.haven_backups). Each round: one runner pass (haven.backups.runner),
then one drill round over the servers the pass found protected (haven.backups.restores); the next
round comes when the plan says something is due, a backup or drill is in flight, or after
``pass_interval_s``. One round's failure is logged and the next round comes; never the loop's death.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry

from haven.backups.config import BackupsConfig
from haven.backups.metrics import BackupMetrics
from haven.backups.planner import BackupPlan
from haven.backups.restores import DrillRound, Restorer
from haven.backups.runner import BackupHook, BackupRunner
from haven.cloud.backups import BackupPort
from haven.domain.backups import RestoreRecord
from haven.domain.clock import Clock
from haven.domain.errors import HavenError
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.store import Store

log = logging.getLogger(__name__)
IN_FLIGHT_POLL_S = 5.0  # a drill or restore in flight is looked at again this soon
RestoreHook = Callable[[RestoreRecord], None]


class BackupService:
    def __init__(
        self,
        config: BackupsConfig,
        port: BackupPort,
        store: Store,
        clock: Clock,
        leader_epoch: Callable[[], int | None] | None = None,
        on_backup: BackupHook | None = None,
        on_restore: RestoreHook | None = None,
    ) -> None:
        self.config, self.port, self.store, self._clock = config, port, store, clock
        self.runner = BackupRunner(config, port, store, clock, leader_epoch, on_backup=on_backup)
        self.restorer = Restorer(port, store, clock, config.drills, leader_epoch, on_finish=on_restore)
        self.rounds = 0
        self.on_event: EventSink | None = None  # haven serve: the dashboard's hub, told after each round
        self._wake = asyncio.Event()  # a drill asked from the dashboard: the next round comes now

    async def drill_now(self, server_id: str, asked_by: str) -> RestoreRecord:
        """A restore drill of one server now (the dashboard's, an admin's; Restorer.drill_now), the
        next round brought forward so the drill is followed at once, the page told."""
        record = await self.restorer.drill_now(server_id, asked_by)
        self._wake.set()
        if self.on_event is not None:
            self.on_event(EngineEvent(EventKind.BACKUPS_CHANGED, self._clock.now()))
        return record

    @property
    def last_plan(self) -> BackupPlan | None:
        return self.runner.last_plan

    def describe(self) -> str:
        s = self.config.scheduler
        return (
            f"scheduled backups: at most {s.max_concurrent} in flight, restore drills every "
            f"{self.config.drills.interval_s:.0f} s (`haven backups list` shows them)"
        )

    async def run_round(self) -> tuple[BackupPlan, DrillRound]:
        """One runner pass and one drill round (tests, drills and the benchmark drive these)."""
        plan = await self.runner.run_pass()
        drills = await self.restorer.drill_round([s.server_id for s in plan.statuses])
        self.rounds += 1
        if self.on_event is not None:
            self.on_event(EngineEvent(EventKind.BACKUPS_CHANGED, self._clock.now()))
        return plan, drills

    async def run(self, stop: asyncio.Event) -> None:
        """Round after round until ``stop`` is set (the end of this engine's term, or of haven serve)."""
        interval = self.config.pass_interval_s
        while not stop.is_set():
            started = self._clock.now()
            due = started + interval
            self._wake.clear()  # set during this round: the next one comes at once
            try:
                plan, drills = await self.run_round()
                if plan.next_due_at is not None:
                    due = min(due, max(plan.next_due_at, started + 1.0))
                if drills.started or drills.advanced:
                    due = min(due, started + IN_FLIGHT_POLL_S)
            except HavenError as exc:
                log.warning("backup round failed: %s", exc)
            except Exception:  # a bug: this round is lost, never the loop
                log.exception("backup round failed")
            await _until(stop, self._clock, max(due, self._clock.now() + 0.05), self._wake)


async def _until(
    stop: asyncio.Event, clock: Clock, deadline: float, wake: asyncio.Event | None = None
) -> None:
    """Sleep on ``clock`` until ``deadline``, or less if ``stop`` (or ``wake``) is set meanwhile."""
    waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(clock.sleep_until(deadline))]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


def build_service(
    config: BackupsConfig,
    port: BackupPort,
    store: Store,
    clock: Clock,
    leader_epoch: Callable[[], int | None] | None,
    registry: CollectorRegistry | None = None,
) -> BackupService:
    """haven serve's service, its metrics (haven.backups.metrics) in ``registry`` when given."""
    if registry is None:
        return BackupService(config, port, store, clock, leader_epoch)
    metrics = BackupMetrics(registry, config.scheduler, clock.now)
    service = BackupService(config, port, store, clock, leader_epoch, metrics.on_backup, metrics.on_restore)
    metrics.watch(service)
    return service
