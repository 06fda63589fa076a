"""When a check that passed is a symptom all the same: far slower than its own recent past.

Called by haven.canary.runner for each API probe that passed (a token issued, Nova's server list, the
canary image's data read). Pure: the history and the answers arrive as arguments.

A check's baseline is the median and the median absolute deviation (MAD, scaled by 1.4826 to a normal
law's standard deviation) of its last ``history`` passing answers, the slow ones too (a lasting
slowdown becomes the usual once it fills half the history, not a symptom every round). An answer is
slow when it took longer than ``median + max(floor_s, min(k * MAD, (ratio - 1) * median))``: the floor
keeps a fast check's wobble (0.05 s one time, 0.3 s the next, at load 20) from being a symptom; MAD, not
the standard deviation, keeps one slow answer of the past from widening the threshold, and its spread
lets a loaded host's broad answers pass (the token at load 7 to 29: median 1.04 s, up to 4.33 s); the
ratio bounds that widening: "several times its usual" is slow whatever the past spread. Without it the
slow answers of earlier faults, kept in the history, put the limit at 6 to 9 times the median (13.8 s
against a median of 1.56 s in the 2026-12-07 catalogue's round 5; 4.03 s against 0.65 s on the
evening's lab), above keystone-slow's 3.3 to 3.7 s. With fewer than ``min_history`` answers there is no
baseline and nothing is slow.

A single answer decides nothing, fast or slow: every passing probe that has a baseline is asked
``confirm`` more times, ``CONFIRM_GAP_S`` apart, and the **median of all its answers** is judged. A loaded
host stalls one request for seconds now and then (the 30-minute control of 2026-12-07: a server list of
5.1 s against its usual 0.09 s), so one slow answer is no symptom; and one fast answer is no proof of
health: a service that stalls in turns (stopped 4 s, running 0.5 s) answers the round's first token in
0.16 s when the round's own earlier request to it has just woken it (its answer lands in the same short
running window), then 3 to 4 s for each ask after it. Until 2026-12-07 the further asks were made only
after a slow first answer, so keystone-slow was missed 3 times in 5 on a quiet lab (one first answer
0.16 s; bench/results/explain-2026-12-07.json.gz). A service that drops most packets also stays slow over
seconds; a stall of the host's scheduler does not, mostly.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MAD_SCALE = 1.4826  # the MAD of a normal law times this is its standard deviation
CONFIRM_GAP_S = 1.0  # between a passing answer and each ask that confirms its speed


@dataclass(frozen=True, slots=True)
class SlowSettings:
    """``[canary]``'s slow_* keys (haven.canary.config)."""

    k: float = 6.0  # MADs above the median
    floor_s: float = 1.5  # and at least this many seconds above it
    ratio: float = 4.0  # but the MADs put it at most this many times the median (the floor may go above)
    history: int = 20  # the last this many passing answers of the same check
    min_history: int = 5  # fewer: no baseline, nothing slow
    confirm: int = 2  # more asks of each passing probe with a baseline; the median of all judged (0: none)


@dataclass(frozen=True, slots=True)
class Baseline:
    median: float
    mad: float  # scaled (MAD_SCALE)
    count: int

    def limit(self, settings: SlowSettings) -> float:
        """Slower than this is slow."""
        spread = min(settings.k * self.mad, (settings.ratio - 1.0) * self.median)
        return self.median + max(spread, settings.floor_s)

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
    """Slow for good: the median of every answer, the first and the ``confirm`` more (a failed ask counts
    as slow: ``inf``), is over ``limit``."""
    return bool(answers) and statistics.median(answers) > limit
