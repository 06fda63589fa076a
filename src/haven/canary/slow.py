"""When a check that passed is a symptom all the same: far slower than its own recent past.

Called by haven.canary.runner for each API probe that passed (a token issued, Nova's server list, the
canary image's data read). Pure: the history and the answers arrive as arguments.

A check's baseline is the median and the median absolute deviation (MAD, scaled by 1.4826 to a normal
law's standard deviation) of its last ``history`` passing answers, the slow ones too (a lasting
slowdown becomes the usual once it fills half the history, not a symptom every round). An answer is
slow when it took longer than ``median + max(k * MAD, floor_s)``: the floor keeps a fast check's
wobble (0.05 s one time, 0.3 s the next, at load 20) from being a symptom, and MAD, not the standard
deviation, keeps one slow answer of the past from widening the threshold. With fewer than
``min_history`` answers there is no baseline and nothing is slow.

A single slow answer is not a symptom (a loaded host stalls one request for seconds now and then): the
runner asks the check again ``confirm`` more times, ``CONFIRM_GAP_S`` apart, and the median of all the
answers must be slow too. A service that stalls in turns (stopped 4 s, running 0.5 s) or drops most
packets stays slow over seconds; a stall of the host's scheduler does not, mostly.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MAD_SCALE = 1.4826  # the MAD of a normal law times this is its standard deviation
CONFIRM_GAP_S = 1.0  # between a slow answer and the next ask that confirms it


@dataclass(frozen=True, slots=True)
class SlowSettings:
    """``[canary]``'s slow_* keys (haven.canary.config)."""

    k: float = 6.0  # MADs above the median
    floor_s: float = 1.5  # and at least this many seconds above it
    history: int = 20  # the last this many passing answers of the same check
    min_history: int = 5  # fewer: no baseline, nothing slow
    confirm: int = 2  # more asks after a slow answer; their median with it must be slow too (0: none)


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    mad: float  # scaled (MAD_SCALE)
    count: int

    def limit(self, settings: SlowSettings) -> float:
        """Slower than this is slow."""
        return self.median + max(settings.k * self.mad, settings.floor_s)

    def words(self) -> str:
        return f"its usual {self.median:.2f} s (median of its last {self.count} passing answers)"


def baseline(seconds: Sequence[float], settings: SlowSettings) -> Baseline | None:
    """The baseline of a check's passing answers (newest first; the last ``history`` are used), or None
    when there are fewer than ``min_history``."""
    recent = list(seconds[: settings.history])
    if len(recent) < max(settings.min_history, 1):
        return None
    median = statistics.median(recent)
    mad = statistics.median(abs(s - median) for s in recent) * MAD_SCALE
    return Baseline(median, mad, len(recent))


def confirmed(answers: Sequence[float], limit: float) -> bool:
    """Slow for good: the median of every answer (a failed ask counts as slow: ``inf``) is over ``limit``."""
    return bool(answers) and statistics.median(answers) > limit
