"""Drills from the dashboard: the API's drill (same code, limits and report) run for an admin.

A drill runs on a fresh simulated cloud in virtual time (never the cloud the engine watches), in a
worker thread with its own event loop, one at a time. Its report's phases (seconds after the
injection, in the drill's virtual time) are what the page replays: each phase appears at its own
time, scaled so that the replay lasts at most ``REPLAY_S`` seconds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from haven.api.context import DrillLimits
from haven.api.errors import ApiError
from haven.api.routes.haven_drills import DrillRequest, check_request
from haven.drill.run import DrillOptions, run_drill
from haven.drill.scenarios import SCENARIOS

REPLAY_S = 8.0
COUNTERS = ("vms_lost", "vms_running_twice", "evacuated_unfenced", "false_evacuations", "double_actions")


class DrillRefused(Exception):
    """A drill the page cannot run: bad input (400) or another one running (409)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ReplayedPhase:
    name: str
    start_s: float
    end_s: float
    delay_s: float  # when the page shows it, after the result arrives


class DrillRunner:
    def __init__(self, limits: DrillLimits | None = None) -> None:
        self.limits = limits or DrillLimits()
        self._running = asyncio.Lock()

    @staticmethod
    def scenarios() -> list[str]:
        return list(SCENARIOS)

    async def run(self, form: dict[str, str]) -> dict[str, Any]:
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
        if self._running.locked():
            raise DrillRefused(409, "a drill is already running; try again when it has finished")
        async with self._running:
            options = DrillOptions(body.scenario, hosts=body.hosts, vms=body.vms, seed=body.seed)
            return await asyncio.to_thread(_run_in_thread, options)


def _run_in_thread(options: DrillOptions) -> dict[str, Any]:
    return asyncio.run(run_drill(options)).to_dict()


def replay(report: dict[str, Any]) -> list[ReplayedPhase]:
    phases = [p for p in report.get("phases", []) if isinstance(p, dict)]
    last = max((float(p.get("end_s") or p.get("start_s") or 0.0) for p in phases), default=0.0)
    scale = min(1.0, REPLAY_S / last) if last > 0 else 1.0
    return [
        ReplayedPhase(
            str(p["name"]),
            float(p["start_s"]),
            float(p.get("end_s") or p["start_s"]),
            round(float(p["start_s"]) * scale, 2),
        )
        for p in phases
    ]
