"""bench/explain.py's repeats and no-fault control, judged without a lab: the order of the injections
(``--repeat``, ``--control``, ``--seed``), the 95 % Wilson interval, and the report's per-fault, overall
and control figures from hand-made results."""

from __future__ import annotations

from collections import Counter
from types import ModuleType

import pytest

from bench_modules import load_bench


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_bench("explain")


def test_each_round_holds_every_fault_once_and_the_controls_are_spread(bench: ModuleType) -> None:
    order = bench.plan(["a", "b", "c"], 5, 3, 13)
    assert Counter(name for _, name, _ in order) == {"a": 5, "b": 5, "c": 5, "no-fault": 3}
    for round_ in range(1, 6):
        names = [name for r, name, _ in order if r == round_]
        assert sorted(n for n in names if n != "no-fault") == ["a", "b", "c"]
        assert names.count("no-fault") <= 1
    assert len({seed for _, _, seed in order}) == len(order)  # each injection its own seed
    assert bench.plan(["a", "b", "c"], 5, 3, 13) == order  # the same seed, the same plan
    rounds = [[n for r, n, _ in order if r == k] for k in range(1, 6)]
    assert len({tuple(r) for r in rounds}) > 1  # the rounds' orders differ
    assert bench.plan(["a", "b"], 2, 0, None) == [
        (1, "a", None),
        (1, "b", None),
        (2, "a", None),
        (2, "b", None),
    ]


def test_wilson_interval(bench: ModuleType) -> None:
    assert bench.wilson(0, 0) is None
    assert bench.wilson(5, 5) == (0.566, 1.0)
    assert bench.wilson(0, 5) == (0.0, 0.434)
    assert bench.wilson(21, 25) == (0.653, 0.936)


def test_report_per_fault_overall_and_control(bench: ModuleType) -> None:
    result = bench.Result
    results = [
        result("glance-hung", "glance-api", symptom="canary", ranked=["glance-api"],
               methods={"score": ["nova-compute"]}),
        result("glance-hung", "glance-api", symptom="canary", ranked=["nova-compute", "glance-api"], round=2),
        result("glance-hung", "glance-api", status="skipped", notes=["lab not whole"], round=3),
        result("no-fault", "", alarms=["probe:token"], blamed=["keystone"],
               supposed={"haven": ["keystone"], "score": ["keystone"], "zscore": []}),
        result("no-fault", "", round=2, supposed={"haven": [], "score": ["glance-api"]}),
    ]  # fmt: skip
    found = bench.report(results)
    assert (found["injections"], found["judged"], found["ac1"], found["ac3"]) == (3, 2, 0.5, 1.0)
    fault = found["per_fault"]["glance-hung"]
    assert (fault["injections"], fault["judged"]) == (3, 2)
    assert fault["methods"]["haven"]["ac1"] == {"hits": 1, "n": 2, "rate": 0.5, "ci95": bench.wilson(1, 2)}
    assert fault["methods"]["score"]["ac1"]["hits"] == 0
    assert fault["top1_seen"] == {"glance-api": 1, "nova-compute": 1}
    assert fault["misses"] == ["round 2: ranked nova-compute, glance-api first"]
    assert found["skipped"] == ["round 3: glance-hung: lab not whole"]
    control = found["control"]
    assert control["periods"] == 2 and control["alarms"] == 1
    assert control["false_alarms"]["hits"] == 1 and control["alarmed"]["hits"] == 1
    assert {m: f["hits"] for m, f in control["supposed_blames"].items()} == {
        "haven": 1, "zscore": 0, "score": 2, "onset": 0,
    }  # fmt: skip
    row = found["results"][3]
    assert row["control"] and row["reason"] == "false alarm: probe:token blamed keystone"
