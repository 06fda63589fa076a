"""`haven drill fault a,b --repeat N`: the bench's rounds and shuffled order, through the CLI (no lab).

The lab, its handles and the injection are stood in for (each injection recorded, judged a hit or a
miss as told); what is judged is the CLI's own doing: which injections it asked for, in which order,
the summary it printed and its exit code. The injections themselves run on the lab in
tests/explain/test_fault_drill_lab.py.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from haven.cli import fault_drill
from haven.cli.main import main
from haven.drill.faults import Fault
from haven.drill.faults_run import FaultRun, Result, plan


@pytest.fixture
def injected(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int | None]]:
    """Every injection the CLI asks for, as (fault, round, seed); glance-hung misses, the others hit."""
    asked: list[tuple[str, int, int | None]] = []

    async def inject(self: FaultRun, fault: Fault, round_: int = 1, seed: int | None = None) -> Result:
        asked.append((fault.name, round_, seed))
        ranked = ["nova-compute"] if fault.name == "glance-hung" else [fault.root]
        return Result(fault.name, fault.root, symptom="canary", ranked=ranked, round=round_, seed=seed)

    @contextlib.asynccontextmanager
    async def observing(*_args: Any) -> AsyncIterator[None]:
        yield

    class Lab:
        flavor, image_id = "lab.tiny", "img"

        def __init__(self, _state: object) -> None:
            pass

    monkeypatch.setattr(fault_drill, "running_lab", lambda folder: object())
    monkeypatch.setattr(fault_drill, "LabFaults", Lab)
    monkeypatch.setattr(fault_drill, "observing", observing)
    monkeypatch.setattr(FaultRun, "inject", inject)
    return asked


def test_several_faults_repeated_run_the_bench_s_shuffled_rounds(
    injected: list[tuple[str, int, int | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    names = ["keystone-hung", "glance-hung", "scheduler-killed"]
    argv = ["drill", "fault", ",".join(names), "--cloud", "lab", "--repeat", "3", "--seed", "7", "--json"]
    assert main(argv) == 1  # glance-hung missed
    assert injected == [(n, r, s) for r, n, s in plan(names, 3, 0, 7)]  # bench/explain.py's order
    for round_ in (1, 2, 3):
        assert sorted(n for n, r, _ in injected if r == round_) == sorted(names)
    orders = [tuple(n for n, r, _ in injected if r == k) for k in (1, 2, 3)]
    assert len(set(orders)) > 1 or orders[0] != tuple(names)  # shuffled, not the order given
    doc = json.loads(capsys.readouterr().out)
    assert doc["order"] == [n for n, _, _ in injected]
    assert [d["round"] for d in doc["injections"]] == [r for _, r, _ in injected]
    glance = doc["per_fault"]["glance-hung"]
    assert glance["top1"] == 0 and len(glance["misses"]) == 3
    assert doc["per_fault"]["keystone-hung"] == {"injections": 3, "top1": 3, "top3": 3, "misses": []}
    assert (doc["top1_correct"], len(doc["injections"])) == (6, 9)


def test_one_fault_repeated_keeps_its_order_and_passes_when_every_injection_hits(
    injected: list[tuple[str, int, int | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", "fault", "keystone-hung", "--cloud", "lab", "--repeat", "2"]) == 0
    assert injected == [("keystone-hung", 1, None), ("keystone-hung", 2, None)]
    assert "top 1 correct 2/2" in capsys.readouterr().out


def test_one_injection_prints_one_document_as_before(
    injected: list[tuple[str, int, int | None]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["drill", "fault", "keystone-hung", "--cloud", "lab", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fault"] == "keystone-hung" and doc["top1_correct"] is True and "round" not in doc
    assert injected == [("keystone-hung", 1, None)]


@pytest.mark.parametrize(
    ("names", "extra", "said"),
    [
        ("keystone-hung,keystone-hung", [], "name each fault once"),
        ("keystone-hung,glance-on-fire", [], "no fault named 'glance-on-fire'"),
        ("keystone-hung", ["--repeat", "0"], "--repeat must be at least 1"),
    ],
)
def test_bad_lists_and_repeats_are_refused_before_anything_runs(
    names: str, extra: list[str], said: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # the real running_lab: a refusal must come before the lab is even looked for
    assert main(["drill", "fault", names, "--cloud", "lab", "--lab-folder", str(tmp_path), *extra]) == 2
    captured = capsys.readouterr()
    assert said in captured.err and "Traceback" not in captured.err and captured.out == ""
    assert not any(tmp_path.iterdir())
