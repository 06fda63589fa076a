"""The benchmarks' arithmetic, apart from their runs so it is unit-tested (tests/bench_math).

Used by bench/scale.py and bench/lab.py (run as scripts, so this folder is on ``sys.path``). Two rules:
- A run that never reached an event (a drill that did not detect, or did not recover: its time is
  None) is counted and reported apart, never as 0 s, and is left out of the median and the max.
- A ratio compares like with like: two times measured the same way (both as Nova lists the VMs),
  never haven's own event time against a time observed through Nova.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spread:
    """The times of the runs that reached an event, and how many runs did not."""

    measured: tuple[float, ...]
    missing: int

    @property
    def runs(self) -> int:
        return len(self.measured) + self.missing

    @property
    def median(self) -> float | None:
        return statistics.median(self.measured) if self.measured else None

    @property
    def max(self) -> float | None:
        return max(self.measured) if self.measured else None

    @property
    def min(self) -> float | None:
        return min(self.measured) if self.measured else None

    def describe(self, failed: str) -> str:
        """``median 2.71 s, max 2.94 s`` and, when some runs never got there, ``; 1 of 20 runs <failed>``."""
        text = "-" if not self.measured else f"median {self.median:.2f} s, max {self.max:.2f} s"
        if self.missing:
            text += f"; {self.missing} of {self.runs} runs {failed}"
        return text


def spread(values: Iterable[float | None]) -> Spread:
    """The runs' times; a None (the event never came) is counted as missing, not as a time."""
    listed = list(values)
    return Spread(tuple(float(v) for v in listed if v is not None), sum(v is None for v in listed))


def seconds(value: float | None, failed: str) -> str:
    """One run's time, or what happened instead (``did not detect``), never ``0 s`` or ``None s``."""
    return failed if value is None else f"{value:.2f} s"


def ratio(numerator: Spread, denominator: Spread) -> float | None:
    """The ratio of two medians measured the same way; None when either has no run that got there."""
    top, bottom = numerator.median, denominator.median
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom
