"""The benchmarks' arithmetic, apart from their runs so it is unit-tested (tests/bench_math).

Used by bench/scale.py and bench/lab.py (run as scripts, so this folder is on ``sys.path``). Three rules:
- A run that never reached an event (a drill that did not detect, or did not recover: its time is
  None) is counted and reported apart, never as 0 s, and is left out of the median and the max.
- A run stopped at a cap (Masakari's, not done within ``--masakari-timeout``) is censored, not
  lost: it took more than the cap, so it counts in the median as "> cap". The median is exact while
  it falls on a measured run (fewer than half censored); otherwise it is only a lower bound, shown
  as "> bound", and so is a ratio taken from it.
- A ratio compares like with like: two times measured the same way (both as Nova lists the VMs),
  never haven's own event time against a time observed through Nova.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spread:
    """The times of the runs that reached an event, and how many runs did not.

    With a ``cap``, the runs that did not were stopped at it (censored: each took more than ``cap``
    seconds) and count in the median as larger than every measured run; without, they are left out.
    """

    measured: tuple[float, ...]
    missing: int
    cap: float | None = None

    @property
    def runs(self) -> int:
        return len(self.measured) + self.missing

    @property
    def median(self) -> float | None:
        """The median (exact), or None: no run measured, or (capped) it falls on a censored run."""
        if self.cap is None:
            return statistics.median(self.measured) if self.measured else None
        bound = self.median_bound
        return None if bound is None or not bound[1] else bound[0]

    @property
    def median_bound(self) -> tuple[float, bool] | None:
        """(the median, True) when exact; (a lower bound, False) when it falls on a censored run.

        Uncapped: the measured runs' median, always exact. Capped: the censored runs sort above every
        measured one, each as "> cap"; a median on them is known only to exceed the cap (or, with an
        even count straddling both, the mean of the last measured run and the cap).
        """
        if self.cap is None:
            return None if not self.measured else (statistics.median(self.measured), True)
        ordered = sorted(self.measured)
        n = self.runs
        if n == 0:
            return None
        middle = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
        if all(i < len(ordered) for i in middle):
            return statistics.fmean(ordered[i] for i in middle), True
        low = [ordered[i] if i < len(ordered) else self.cap for i in middle]
        return statistics.fmean(low), False

    def median_text(self) -> str:
        """``417.80``, ``> 420.00`` when only a lower bound is known, ``-`` when nothing is."""
        bound = self.median_bound
        if bound is None:
            return "-"
        return f"{bound[0]:.2f}" if bound[1] else f"> {bound[0]:.2f}"

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


def spread(values: Iterable[float | None], cap: float | None = None) -> Spread:
    """The runs' times; a None (the event never came) is counted as missing, not as a time.

    ``cap``: the runs were stopped at ``cap`` seconds, so a None is a run censored there ("> cap").
    """
    listed = list(values)
    return Spread(tuple(float(v) for v in listed if v is not None), sum(v is None for v in listed), cap)


def seconds(value: float | None, failed: str) -> str:
    """One run's time, or what happened instead (``did not detect``), never ``0 s`` or ``None s``."""
    return failed if value is None else f"{value:.2f} s"


def ratio(numerator: Spread, denominator: Spread) -> float | None:
    """The ratio of two exact medians measured the same way; None when either median is not known
    exactly (no run got there, or it falls on runs censored at a cap: see ``ratio_text``)."""
    top, bottom = numerator.median, denominator.median
    if top is None or bottom is None or bottom <= 0:
        return None
    return top / bottom


def ratio_text(numerator: Spread, denominator: Spread) -> str:
    """The ratio of two medians as printed: ``13.91``; ``> 14.00`` when the numerator's median is only
    a lower bound (censored at its cap), ``< ...`` when the denominator's is; ``-`` when unknown."""
    top, bottom = numerator.median_bound, denominator.median_bound
    if top is None or bottom is None or bottom[0] <= 0 or not (top[1] or bottom[1]):
        return "-"
    value = top[0] / bottom[0]
    return f"{value:.2f}" if top[1] and bottom[1] else f"{'>' if bottom[1] else '<'} {value:.2f}"
