"""Each metric against its own pre-incident baseline: the robust z-score (median and MAD), as BARO/N-sigma.

Called by haven.diagnosis.ranker once per series. The baseline is the stretch just before the incident
window, so a metric that is always high or always noisy is judged against itself, never against others.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from haven.diagnosis.model import RankSettings, Series

MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation


@dataclass(frozen=True, slots=True)
class Deviation:
    """A series that left its baseline within the window."""

    onset: float  # the first point of the anomalous run that holds the peak
    peak_at: float
    peak_value: float
    peak_z: float  # signed: positive when the metric rose
    baseline: float  # the baseline's median


def robust_scale(values: list[float], settings: RankSettings) -> tuple[float, float]:
    """(median, scale): the scale is 1.4826 * MAD, floored so a flat baseline is not infinitely strict."""
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    floor = max(settings.mad_floor_share * abs(median), settings.scale_floor)
    return median, max(MAD_TO_SIGMA * mad, floor)


def deviation(series: Series, symptom_at: float, settings: RankSettings) -> Deviation | None:
    """How ``series`` left its baseline before ``symptom_at``, or None (no baseline, or never anomalous)."""
    window_start = symptom_at - settings.window_s
    baseline_start = window_start - settings.baseline_s
    points = sorted(series.points)
    baseline = [v for t, v in points if baseline_start <= t < window_start]
    window = [(t, v) for t, v in points if window_start <= t <= symptom_at]
    if len(baseline) < settings.min_baseline_points or not window:
        return None
    median, scale = robust_scale(baseline, settings)
    # The onset is where the run of anomalous points holding the peak began: a lone spike earlier in
    # the window does not move it, a rise that lasts until the peak does.
    run_start: float | None = None
    onset: float | None = None
    peak: tuple[float, float, float] | None = None  # (time, value, z); the first of equal peaks
    for t, v in window:
        z = (v - median) / scale
        if abs(z) < settings.z_threshold:
            run_start = None
            continue
        if run_start is None:
            run_start = t
        if peak is None or abs(z) > abs(peak[2]):
            peak, onset = (t, v, z), run_start
    if onset is None or peak is None:
        return None
    return Deviation(onset=onset, peak_at=peak[0], peak_value=peak[1], peak_z=peak[2], baseline=median)
