"""A drill's detection and fence times count from each host's FIRST confirmed death.

On the lab (CI, 2026-12-06) compute-2 was confirmed dead a second time 1.5 s after every VM was
verified; the last confirmation then made detection look later than recovery (8.796 s vs 7.32 s).
"""

from __future__ import annotations

from haven.domain.events import EngineEvent, EventKind
from haven.domain.ids import HostName
from haven.drill.report import fence_time, worst_time
from haven.recovery.workflows import FENCE

C1, C2 = HostName("compute-1"), HostName("compute-2")


def events() -> list[EngineEvent]:
    fenced = {"kind": FENCE, "state": "done"}
    return [
        EngineEvent(EventKind.HOST_CONFIRMED_DEAD, 103.0, C2),
        EngineEvent(EventKind.HOST_CONFIRMED_DEAD, 104.0, C1),
        EngineEvent(EventKind.STEP_FINISHED, 103.5, C2, detail=fenced),
        EngineEvent(EventKind.STEP_FINISHED, 105.0, C1, detail=fenced),
        EngineEvent(EventKind.HOST_CONFIRMED_DEAD, 108.8, C2),  # again, after its recovery
    ]


def test_detection_is_each_hosts_first_confirmation_the_worst_of_the_hosts() -> None:
    assert worst_time(events(), EventKind.HOST_CONFIRMED_DEAD, {C2}, 100.0) == 3.0
    assert worst_time(events(), EventKind.HOST_CONFIRMED_DEAD, {C1, C2}, 100.0) == 4.0
    assert worst_time(events(), EventKind.HOST_CONFIRMED_DEAD, set(), 100.0) is None


def test_fence_time_counts_from_the_first_confirmation() -> None:
    assert fence_time(events(), {C2}) == 0.5  # not negative from the later one
    assert fence_time(events(), {C1, C2}) == 1.0
