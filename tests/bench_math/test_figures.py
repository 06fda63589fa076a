"""The benchmarks' arithmetic (bench/figures.py) and the lab bench's comparison (bench/lab.py).

bench/ holds scripts, not a package: they are loaded from their files here, as ``python bench/x.py``
runs them (bench/ first on sys.path). Loading bench/lab.py and bench/scale.py is also the dry check
that they still import; neither runs (the lab bench needs a lab and minutes).
"""

from __future__ import annotations

import pytest

from bench_modules import load_bench

load = load_bench

figures = load("figures")


def test_runs_that_never_got_there_are_counted_apart_not_as_zero() -> None:
    found = figures.spread([2.5, None, 3.0, 2.0, None])
    assert found.measured == (2.5, 3.0, 2.0) and found.missing == 2 and found.runs == 5
    assert found.median == 2.5 and found.max == 3.0 and found.min == 2.0  # None is not 0 s
    assert found.describe("did not detect") == "median 2.50 s, max 3.00 s; 2 of 5 runs did not detect"


def test_every_run_reaching_the_event_says_nothing_about_misses() -> None:
    assert figures.spread([1.0, 2.0, 4.0]).describe("did not recover") == "median 2.00 s, max 4.00 s"


def test_no_run_reaching_the_event_has_no_median() -> None:
    found = figures.spread([None, None])
    assert found.median is None and found.max is None
    assert found.describe("did not recover") == "-; 2 of 2 runs did not recover"


def test_one_runs_time_is_what_happened_never_zero_or_none() -> None:
    assert figures.seconds(None, "did not detect") == "did not detect"
    assert figures.seconds(2.714, "did not detect") == "2.71 s"


def test_a_ratio_needs_both_medians() -> None:
    assert figures.ratio(figures.spread([20.0, 22.0, None]), figures.spread([20.0])) == pytest.approx(1.05)
    assert figures.ratio(figures.spread([None]), figures.spread([20.0])) is None
    assert figures.ratio(figures.spread([20.0]), figures.spread([])) is None


def test_the_lab_bench_compares_novas_view_with_novas_view() -> None:
    lab = load("lab")
    # Each sequence's total is the moment Nova lists every HA VM ACTIVE elsewhere; a run that never
    # got there is counted apart, never as a time.
    totals = {
        "haven": figures.spread([22.0, 24.0, None]),
        "oracle": figures.spread([20.0, 22.0]),
        "floor": figures.spread([30.0]),
        "masakari": figures.spread([None, None]),
    }
    lines = lab.comparison(totals)
    haven = next(line for line in lines if line.strip().startswith("haven "))
    assert "23.00 s" in haven and "2 of 3" in haven and "1 of 3 runs not done" in haven
    masakari = next(line for line in lines if line.strip().startswith("masakari "))
    assert "2 of 2 runs never got there" in masakari
    assert any(line.startswith(f"ratio haven / oracle: {23.0 / 21.0:.2f} ") for line in lines)
    assert any(line.startswith(f"ratio haven / floor: {23.0 / 30.0:.2f} ") for line in lines)
    assert any(line.startswith("ratio masakari / haven: -") for line in lines)  # no Masakari time, no ratio


def test_the_scale_bench_imports() -> None:
    assert callable(load("scale").default_timings)


# Masakari's runs are capped (--masakari-timeout): one not done by then took longer than the cap. The
# bench used to leave such runs out of the median, printing 10.67 for Masakari / haven where the true
# median of its five runs (> 420, > 420, 417.8, 320.6, 320.6) is 417.8 s, 13.9 times haven's 30.04 s.
MASAKARI_RUNS = [None, None, 417.8, 320.6, 320.6]


def test_runs_censored_at_the_cap_count_as_more_than_the_cap_in_the_median() -> None:
    found = figures.spread(MASAKARI_RUNS, cap=420.0)
    assert found.median == pytest.approx(417.8)  # not 320.6, the median of the three that finished
    assert found.median_bound == (pytest.approx(417.8), True) and found.median_text() == "417.80"
    haven = figures.spread([30.04])
    assert figures.ratio(found, haven) == pytest.approx(417.8 / 30.04)
    assert figures.ratio_text(found, haven) == f"{417.8 / 30.04:.2f}" == "13.91"


def test_a_median_on_censored_runs_is_only_a_lower_bound() -> None:
    most = figures.spread([None, None, None, 300.0, 310.0], cap=420.0)
    assert most.median is None and most.median_bound == (420.0, False)
    assert most.median_text() == "> 420.00"
    assert figures.ratio(most, figures.spread([30.0])) is None  # no exact ratio from a bound
    assert figures.ratio_text(most, figures.spread([30.0])) == "> 14.00"
    assert figures.ratio_text(figures.spread([30.0]), most) == "< 0.07"
    half = figures.spread([None, 300.0, 310.0, None], cap=420.0)  # even: 310 and a censored run
    assert half.median_text() == f"> {(310.0 + 420.0) / 2:.2f}"
    every = figures.spread([None, None], cap=420.0)
    assert every.median_text() == "> 420.00" and every.measured == ()
    # Without a cap a missing run is one that never got there: still left out, as before.
    assert figures.spread(MASAKARI_RUNS).median == pytest.approx(320.6)


def test_the_lab_bench_counts_masakaris_capped_runs_in_its_median_and_ratio() -> None:
    lab = load("lab")
    totals = {"haven": figures.spread([30.04]), "masakari": figures.spread(MASAKARI_RUNS, cap=420.0)}
    lines = lab.comparison(totals)
    masakari = next(line for line in lines if line.strip().startswith("masakari "))
    assert "417.80 s" in masakari and "3 of 5" in masakari and "2 of 5 runs counted as > 420 s" in masakari
    assert any(line.startswith("ratio masakari / haven: 13.91 ") for line in lines), lines
    capped = {"haven": figures.spread([30.0]), "masakari": figures.spread([None] * 3 + [300.0] * 2, cap=420)}
    lines = lab.comparison(capped)
    assert any("> 420.00 s" in line for line in lines if line.strip().startswith("masakari ")), lines
    assert any(line.startswith("ratio masakari / haven: > 14.00 ") for line in lines), lines
