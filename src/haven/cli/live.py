"""The demo's live view: each recovery phase appears as it happens, with evacuations counted n/N."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text

from haven.domain.events import EngineEvent, EventKind
from haven.recovery.workflows import EVACUATE, FENCE, FORCE_DOWN, PLAN

PHASES = ("suspected", "confirmed", "fenced", "forced down", "planned", "evacuating", "verified")
_STEP_PHASE = {FENCE: "fenced", FORCE_DOWN: "forced down", PLAN: "planned"}


@dataclass
class LiveView:
    """Folds engine events into the phase table; times are seconds after the injected failure."""

    fault_at: float | None = None
    reached: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    evac_total: int = 0
    evac_issued: int = 0
    evac_verified: int = 0
    log: list[str] = field(default_factory=list)

    def __call__(self, event: EngineEvent) -> None:
        if event.kind is EventKind.FAULT_INJECTED:
            self.fault_at = event.at
            self.log.append(f"  0.00s  injected: {event.detail.get('description', '')}")
        if self.fault_at is None:
            return  # warm-up: nothing to show yet
        t = event.at - self.fault_at
        kind, detail = event.kind, event.detail
        if kind is EventKind.HOST_SUSPECTED:
            self._reach("suspected", t, f"{event.host}: {detail.get('reason', '')}")
        elif kind is EventKind.HOST_CONFIRMED_DEAD:
            self._reach("confirmed", t, f"{event.host}: {detail.get('reason', '')}")
        elif kind is EventKind.STEP_FINISHED and detail.get("kind") in _STEP_PHASE:
            note = (
                f"{detail.get('placed', '')} VMs planned" if detail.get("kind") == PLAN else str(event.host)
            )
            self._reach(_STEP_PHASE[str(detail["kind"])], t, note)
            if detail.get("kind") == PLAN:
                self.evac_total += int(detail.get("placed", 0))
        elif kind is EventKind.STEP_STARTED and detail.get("kind") == EVACUATE:
            self.evac_issued += 1
            self._reach("evacuating", t, "")
        elif (
            kind is EventKind.STEP_FINISHED
            and detail.get("kind") == EVACUATE
            and detail.get("state") == "done"
        ):
            self.evac_verified += 1
            self._reach("verified", t, "")
        elif kind in (EventKind.SEGMENT_HELD, EventKind.HOST_ISOLATED):
            self.log.append(f"{t:6.2f}s  {kind.value}: {detail.get('reason', '')}")

    def _reach(self, phase: str, t: float, note: str) -> None:
        self.reached.setdefault(phase, t)
        self.reached[phase + ":last"] = t
        if note:
            self.notes.setdefault(phase, note)

    def render(self) -> Table:
        table = Table(title="haven: recovering from a host power loss (simulated cloud)")
        table.add_column("phase")
        table.add_column("at (s)", justify="right")
        table.add_column("")
        for phase in PHASES:
            # Verification is done when the last VM is: show that instant, not the first.
            at = self.reached.get(phase + ":last" if phase == "verified" else phase)
            note = self.notes.get(phase, "")
            if phase == "evacuating":
                note = f"{self.evac_issued}/{self.evac_total} issued"
            elif phase == "verified":
                note = f"{self.evac_verified}/{self.evac_total} ACTIVE on a healthy host"
            mark = Text("✔ ", style="green") if at is not None else Text("… ", style="dim")
            table.add_row(mark + phase, "" if at is None else f"{at:.2f}", note if at is not None else "")
        return table
