"""Drills from the dashboard: the API's drill (same code, limits and report), started by an admin and
watched live on the page.

A drill runs on a fresh simulated cloud (never the cloud the engine watches) in a worker thread with
its own event loop, one at a time per server: a second start while one runs is refused (409). Its
engine's events are turned, as they happen, into ``DrillView`` snapshots (the phases so far, the
simulated time since the fault) that the page's own server-sent-events stream renders; the last one
carries the drill's report and verdict.

Paced so that a person can watch it: the warm-up runs at once, then the drill's virtual clock runs at
``Pacing.speed`` times real time, and each new phase is held on screen for ``Pacing.phase_s``, all
within ``Pacing.watch_s`` of wall time after the fault; past that the drill finishes in virtual time
(a held segment's long watch, a 10,000-host cloud). When the server stops (the ``EventHub`` closes),
the pacing ends at once and the drill finishes within milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from haven.api.context import DrillLimits
from haven.api.errors import ApiError
from haven.api.routes.haven_drills import DrillRequest, check_request
from haven.dashboard.hub import EventHub
from haven.domain.clock import VirtualClock
from haven.domain.events import EngineEvent, EventKind
from haven.drill.run import DrillOptions, run_drill
from haven.drill.scenarios import SCENARIOS
from haven.recovery.workflows import (
    CONFIRM_VM,
    EVACUATE,
    FENCE,
    FORCE_DOWN,
    PLAN,
    REBOOT_VM,
    START_VM,
    STOP_VM,
    VM_CHECK,
)

log = logging.getLogger(__name__)

COUNTERS = ("vms_lost", "vms_running_twice", "evacuated_unfenced", "false_evacuations", "double_actions")
FINISHED, FAILED = "finished", "failed"

# The phases as haven.drill.report.phases_of names them; a step's phase runs from its first start to
# its last end. (unit, counted): what a phase's count counts, shown when there is more than one.
STEP_PHASES = {
    FENCE: "fenced",
    FORCE_DOWN: "forced down",
    PLAN: "planned",
    VM_CHECK: "vm checked",
    STOP_VM: "vm stopped",
    START_VM: "vm started",
    REBOOT_VM: "vm rebooted",
    CONFIRM_VM: "vm confirmed running",
}
UNITS = {"suspected": "host", "confirmed": "host", "isolated": "host", "fenced": "host",
         "forced down": "host", "held": "segment", "evacuating": "VM", "verified": "VM"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Pacing:
    speed: float = 4.0  # virtual seconds per wall second after the fault
    phase_s: float = 0.6  # a new phase stays on screen this long before the drill goes on
    watch_s: float = 8.0  # the most wall time paced after the fault; then virtual time jumps again
    max_wait_s: float = 1.0  # the longest single paced wait (a quiet stretch goes by briskly)
    refresh_s: float = 0.25  # the simulated clock on the page moves at most this often


class DrillRefused(Exception):
    """A drill the page cannot run: bad input (400) or another one running (409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class PhaseView:
    name: str
    start_s: float  # after the fault, in the drill's virtual time
    end_s: float
    count: int = 0  # hosts, segments or VMs, as ``unit`` says (0: not counted)
    of: int = 0  # verified: of how many evacuated
    running: bool = False

    @property
    def unit(self) -> str:
        return UNITS.get(self.name, "")

    @property
    def counted(self) -> str:
        """E.g. "12 VMs", "7 of 12 VMs"; "" when there is nothing worth counting."""
        if not self.unit or self.count < 1 or (self.count == 1 and not self.of):
            return ""
        total = self.of or self.count
        plural = self.unit + ("s" if total != 1 else "")
        return f"{self.count} of {self.of} {plural}" if self.of else f"{self.count} {plural}"


@dataclass(frozen=True, slots=True)
class DrillView:
    """A drill as the page shows it at one moment (a snapshot: each message replaces the last)."""

    id: str
    scenario: str
    hosts: int
    vms: int
    seed: int
    seq: int  # later snapshots have higher numbers
    state: str  # "warming up", "running", FINISHED or FAILED
    injected: str = ""
    simulated_s: float | None = None  # virtual seconds since the fault
    phases: tuple[PhaseView, ...] = ()
    report: Mapping[str, Any] | None = None
    error: str = ""
    pacing: Pacing = field(default_factory=Pacing)

    @property
    def finished(self) -> bool:
        return self.state in (FINISHED, FAILED)

    @property
    def said(self) -> str:
        """What a screen reader is told when it changes: the newest phase, then the verdict."""
        if self.report is not None:
            return f"the drill ended: {self.report.get('verdict')}"
        if self.state == FAILED:
            return "the drill could not run"
        if self.phases:
            newest = max(self.phases, key=lambda p: (p.start_s, p.end_s))
            return f"drill: {newest.name}" + (f", {newest.counted}" if newest.counted else "")
        return "drill: the fault is injected" if self.injected else "drill: warming up"

    @property
    def counters(self) -> tuple[str, ...]:
        """The report's safety counters the page shows (from the simulated cloud's ground truth)."""
        return COUNTERS


class DrillRun:
    """One drill started from the page: its latest snapshot, for every stream that follows it."""

    def __init__(self, drill_id: str, options: DrillOptions, by: str, pacing: Pacing) -> None:
        self.id, self.options, self.by, self.pacing = drill_id, options, by, pacing
        self.view = DrillView(drill_id, options.scenario, options.hosts, options.vms, options.seed, 0,
                              "warming up", pacing=pacing)  # fmt: skip
        self.stop = threading.Event()  # set: stop pacing (the server is stopping)
        self.task: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Event] = set()

    def show(self, view: DrillView) -> None:
        """A new snapshot (on the server's loop); an older one arriving late is dropped."""
        if view.seq <= self.view.seq:
            return
        self.view = view
        for wake in self._watchers:
            wake.set()

    async def views(self) -> AsyncIterator[DrillView]:
        """The latest snapshot now, then each newer one, until the drill has finished."""
        wake = asyncio.Event()
        self._watchers.add(wake)
        try:
            seq = -1
            while True:
                view = self.view
                if view.seq != seq:
                    seq = view.seq
                    yield view
                if view.finished:
                    return
                await wake.wait()
                wake.clear()
        finally:
            self._watchers.discard(wake)


class DrillRunner:
    """The page's drills, one at a time; ``hub``: the server's EventHub, whose closing stops pacing."""

    def __init__(
        self, hub: EventHub | None = None, limits: DrillLimits | None = None, pacing: Pacing | None = None
    ) -> None:
        self.hub = hub
        self.limits = limits or DrillLimits()
        self.pacing = pacing or Pacing()
        self.current: DrillRun | None = None

    @staticmethod
    def scenarios() -> list[str]:
        return list(SCENARIOS)

    def options(self, form: Mapping[str, str]) -> DrillOptions:
        """The drill the form asks for, within the API's limits (DrillRefused 400 if not)."""
        try:
            body = DrillRequest(
                scenario=form.get("scenario", ""),
                hosts=int(form.get("hosts") or 30),
                vms=int(form.get("vms") or 300),
                seed=int(form.get("seed") or 1),
                ha_fraction=1 / 3,
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise DrillRefused(
                400, f"hosts, vms and seed are whole numbers of at least 0 or 1: {exc}"
            ) from exc
        try:
            check_request(body, self.limits)
        except ApiError as exc:
            raise DrillRefused(exc.status, exc.message) from exc
        return DrillOptions(body.scenario, hosts=body.hosts, vms=body.vms, seed=body.seed)

    def start(self, form: Mapping[str, str], by: str) -> DrillRun:
        """Start the drill in the background (call on the server's loop); it runs to its end whether
        or not a page follows it. DrillRefused: 400 for bad input, 409 while another one runs."""
        options = self.options(form)
        if self.current is not None and not self.current.view.finished:
            raise DrillRefused(
                409,
                f"a drill is already running ({self.current.options.scenario}, started by "
                f"{self.current.by}); try again when it has finished",
            )
        run = DrillRun(secrets.token_hex(8), options, by, self.pacing)
        self.current = run
        run.task = asyncio.get_running_loop().create_task(self._drive(run), name=f"drill-{run.id}")
        log.info("dashboard: %s started drill %s (%s)", by, run.id, options.scenario)
        return run

    def running(self) -> DrillRun | None:
        """The drill running now, if any (a page opened meanwhile shows it and follows it)."""
        run = self.current
        return run if run is not None and not run.view.finished else None

    def get(self, drill_id: str) -> DrillRun | None:
        run = self.current
        return run if run is not None and run.id == drill_id else None

    async def _drive(self, run: DrillRun) -> None:
        loop = asyncio.get_running_loop()

        def publish(view: DrillView) -> None:  # from the drill's thread to this loop
            with contextlib.suppress(RuntimeError):  # the loop has closed: the server is gone
                loop.call_soon_threadsafe(run.show, view)

        watcher = loop.create_task(self._stop_with_server(run))
        try:
            final = await asyncio.to_thread(_run_in_thread, run, publish)
        except asyncio.CancelledError:  # the server's loop is ending: the thread finishes unpaced
            run.stop.set()
            raise
        except Exception as exc:  # the drill's own failure: said on the page and in the log
            log.exception("dashboard: drill %s (%s) could not run", run.id, run.options.scenario)
            final = DrillView(run.id, run.options.scenario, run.options.hosts, run.options.vms,
                              run.options.seed, 1 << 60, FAILED, error=f"{type(exc).__name__}: {exc}",
                              pacing=run.pacing)  # fmt: skip
        finally:
            watcher.cancel()
        run.show(final)
        verdict = final.report.get("verdict") if final.report is not None else final.state
        log.info("dashboard: %s ran drill %s (%s): %s", run.by, run.id, run.options.scenario, verdict)

    async def _stop_with_server(self, run: DrillRun) -> None:
        """Pacing stops when the server stops (its hub closes), so the drill does not hold the stop up."""
        if self.hub is None:
            return
        with self.hub.subscribe() as sub:
            while not sub.closed:
                await sub.wake.wait()
                sub.wake.clear()
                while not sub.queue.empty():
                    sub.queue.get_nowait()  # the engine's events: not this drill's
        run.stop.set()


def _run_in_thread(run: DrillRun, publish: Callable[[DrillView], None]) -> DrillView:
    live = LiveDrill(run, publish)
    report = asyncio.run(run_drill(run.options, live, live.clock))
    return live.final(report.to_dict())


class WatchedClock(VirtualClock):
    """The drill's virtual clock, paced by its ``LiveDrill`` once the fault is injected."""

    def __init__(self, live: LiveDrill) -> None:
        super().__init__()
        self._live = live

    async def sleep_until(self, deadline: float) -> None:
        wait = self._live.allow(min((deadline - self.now()) / self._live.pacing.speed,
                                    self._live.pacing.max_wait_s))  # fmt: skip
        if wait > 0:
            await asyncio.sleep(wait)
        self.advance_to(deadline)
        self._live.tick()


@dataclass(slots=True)
class _Phase:
    start: float
    end: float
    count: int = 0
    ended: int = 0


class LiveDrill:
    """The drill's EventSink (in its worker thread): the phases so far, as snapshots, paced."""

    def __init__(self, run: DrillRun, publish: Callable[[DrillView], None]) -> None:
        self.run, self.pacing, self._publish = run, run.pacing, publish
        self.clock = WatchedClock(self)
        self._fault_at: float | None = None
        self._paced_from: float | None = None  # wall time of the fault
        self._injected = ""
        self._phases: dict[str, _Phase] = {}
        self._hosts: dict[str, set[str]] = {}  # suspected, confirmed... : which hosts (counted once)
        self._seq = 0
        self._shown_at = 0.0
        self._dirty = False

    # --- pacing -------------------------------------------------------------------------------------
    def allow(self, want_s: float) -> float:
        """How much of ``want_s`` of wall time the drill may take now (0 before the fault, once the
        watching budget is spent, or when the server stops)."""
        if self._paced_from is None or self.run.stop.is_set() or want_s <= 0:
            return 0.0
        left = self.pacing.watch_s - (time.monotonic() - self._paced_from)
        return max(0.0, min(want_s, left))

    def tick(self) -> None:
        if self._fault_at is not None and time.monotonic() - self._shown_at >= self.pacing.refresh_s:
            self._show()

    # --- events -------------------------------------------------------------------------------------
    def __call__(self, event: EngineEvent) -> None:
        if event.kind is EventKind.FAULT_INJECTED:
            self._fault_at, self._paced_from = event.at, time.monotonic()
            self._injected = str(event.detail.get("description", ""))
            self._show()
            self._hold()
            return
        if self._fault_at is None:
            return  # the warm-up
        new = self._record(event)
        if new:
            self._show()
            self._hold()
        elif self._dirty and time.monotonic() - self._shown_at >= self.pacing.refresh_s:
            self._show()

    def _record(self, e: EngineEvent) -> bool:
        """The event's mark on the phases; True if it began one."""
        assert self._fault_at is not None
        at = round(e.at - self._fault_at, 3)
        kind, step = e.kind, str(e.detail.get("kind", ""))
        began = False
        if kind is EventKind.HOST_SUSPECTED:
            began = self._begin("suspected", at, e.host)
        elif kind in (EventKind.HOST_CONFIRMED_DEAD, EventKind.SEGMENT_HELD):
            self._end("suspected", at)
            if kind is EventKind.HOST_CONFIRMED_DEAD:
                began = self._begin("confirmed", at, e.host, instant=True)
            else:
                began = self._begin("held", at, e.segment_id, instant=True)
        elif kind is EventKind.HOST_ISOLATED:
            began = self._begin("isolated", at, e.host, instant=True)
        elif kind is EventKind.STEP_STARTED and step == EVACUATE:
            began = self._begin("evacuating", at, instant=True)
        elif kind is EventKind.STEP_FINISHED and step == EVACUATE:
            if e.detail.get("state") == "done":
                began = self._begin("verified", at, instant=True)
        elif kind is EventKind.STEP_STARTED and step in STEP_PHASES:
            began = self._begin(STEP_PHASES[step], at, e.host if UNITS.get(STEP_PHASES[step]) else None)
        elif (
            kind is EventKind.STEP_FINISHED
            and step in STEP_PHASES
            and (step != CONFIRM_VM or e.detail.get("state") == "done")
        ):
            self._end(STEP_PHASES[step], at)
        return began

    def _begin(self, name: str, at: float, subject: object = None, instant: bool = False) -> bool:
        self._dirty = True
        phase = self._phases.get(name)
        if subject is not None:
            seen = self._hosts.setdefault(name, set())
            counted = str(subject) not in seen
            seen.add(str(subject))
        else:
            counted = True
        if phase is None:
            self._phases[name] = _Phase(at, at, int(counted), int(instant))
            return True
        phase.count += int(counted)
        phase.ended += int(instant)
        phase.end = max(phase.end, at) if instant else phase.end
        return False

    def _end(self, name: str, at: float) -> None:
        phase = self._phases.get(name)
        if phase is not None:
            self._dirty = True
            phase.end, phase.ended = max(phase.end, at), phase.ended + 1

    def _hold(self) -> None:
        """Keep what the page now shows there a moment (the drill's thread waits; virtual time too)."""
        wait = self.allow(self.pacing.phase_s)
        if wait > 0:
            self.run.stop.wait(wait)

    # --- snapshots ----------------------------------------------------------------------------------
    def _views(self) -> tuple[PhaseView, ...]:
        evacuating = self._phases.get("evacuating")
        of = evacuating.count if evacuating is not None else 0
        views = [
            PhaseView(name, p.start, p.end, p.count, of if name == "verified" else 0, running=p.ended < 1)
            for name, p in self._phases.items()
        ]
        return tuple(sorted(views, key=lambda v: (v.start_s, v.end_s)))

    def _view(self, state: str, **extra: Any) -> DrillView:
        self._seq += 1
        o = self.run.options
        simulated = round(self.clock.now() - self._fault_at, 1) if self._fault_at is not None else None
        return DrillView(self.run.id, o.scenario, o.hosts, o.vms, o.seed, self._seq, state,
                         self._injected, simulated, pacing=self.pacing, **extra)  # fmt: skip

    def _show(self) -> None:
        self._publish(self._view("running", phases=self._views()))
        self._shown_at, self._dirty = time.monotonic(), False

    def final(self, report: Mapping[str, Any]) -> DrillView:
        """The finished drill: the report's phases (haven.drill.report's, over all the events) with
        the counts seen live, its counters and verdict."""
        counts = {v.name: v for v in self._views()}
        phases = tuple(
            PhaseView(
                str(p["name"]),
                float(p["start_s"]),
                float(p.get("end_s") or p["start_s"]),
                counts[p["name"]].count if p["name"] in counts else 0,
                counts[p["name"]].of if p["name"] in counts else 0,
            )
            for p in report.get("phases", [])
            if isinstance(p, dict)
        )
        return self._view(FINISHED, phases=phases, report=report)
