"""Evidence in words: times as UTC clock times, values with three significant digits and their unit.

Called by haven.diagnosis.ranker; pure and deterministic (no locale, no local time zone).
"""

from __future__ import annotations

import time

from haven.diagnosis.baseline import Deviation
from haven.diagnosis.model import EvidenceKind, NodeEvent, Series

_EVENT_VERBS = {
    EvidenceKind.DOWN: "went down",
    EvidenceKind.RESTART: "restarted",
    EvidenceKind.ERROR: "reported an error",
    EvidenceKind.HEALTHY: "was seen working",
}


def clock(at: float) -> str:
    """10:04:00 (UTC)."""
    return time.strftime("%H:%M:%S", time.gmtime(at))


def amount(value: float, unit: str) -> str:
    text = f"{value:.3g}"
    if not unit:
        return text
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}"


def event_text(label: str, event: NodeEvent) -> str:
    said = f"{label} {_EVENT_VERBS[event.kind]} at {clock(event.at)}"
    return f"{said} ({event.detail})" if event.detail else said


def metric_text(label: str, series: Series, found: Deviation) -> str:
    verb = "rose" if found.peak_z > 0 else "fell"
    return (
        f"{label} {series.metric} {verb} to {amount(found.peak_value, series.unit)} "
        f"(baseline {amount(found.baseline, series.unit)}) at {clock(found.onset)}"
    )
