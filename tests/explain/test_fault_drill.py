"""`haven drill fault`: the catalogue it lists, its JSON, and bad input refused before anything changes.

No lab here (fast): the injections themselves run on the lab in tests/explain/test_fault_drill_lab.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from haven.cli.fault_drill import fault_json
from haven.cli.main import main
from haven.controlplane.catalogue import CATALOGUE
from haven.drill.faults import CATALOG, FAULTS, LabProcess, computes_disabled, fault_named, placement_full
from haven.drill.faults_run import Result
from haven.topology import openstack_topology


def test_the_list_names_every_fault_with_its_kind_and_root_cause(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drill", "fault", "--list"]) == 0
    printed = capsys.readouterr().out
    assert len(CATALOG) >= 20 and len(FAULTS) == len(CATALOG)  # names are unique
    for fault in CATALOG:
        line = next(line for line in printed.splitlines() if f" {fault.name} " in line)
        assert fault.kind in line and fault.root in line


def test_the_list_as_json_and_every_root_cause_a_node_the_explainer_ranks(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["drill", "fault", "--list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [f.name for f in CATALOG]
    assert all({"name", "kind", "root_cause", "what"} <= set(r) for r in rows)
    nodes = set(openstack_topology(CATALOGUE.values()).depends_on)
    assert {r["root_cause"] for r in rows} <= nodes
    assert len({r["kind"] for r in rows}) >= 5  # hung, killed, slow, computes, capacity, image


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *said: str) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.out == ""
    for words in said:
        assert words in captured.err
    return captured.err


def test_an_unknown_fault_lists_the_valid_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _refused(["drill", "fault", "glance-on-fire", "--cloud", "lab", "--lab-folder", str(tmp_path)],
                   capsys, "no fault named 'glance-on-fire'")  # fmt: skip
    assert all(name in err for name in FAULTS)
    assert not any(tmp_path.iterdir())  # nothing was made there


def test_a_fault_without_a_name_or_without_the_lab_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _refused(["drill", "fault", "--cloud", "lab"], capsys, "name the fault", "keystone-hung")
    _refused(["drill", "fault", "keystone-hung"], capsys, "pass --cloud lab")
    _refused(["drill", "fault", "keystone-hung", "--cloud", "production"], capsys, "runs only on the lab")
    _refused(["drill", "fault", "keystone-hung", "--cloud", "lab", "--lab-folder", str(tmp_path)],
             capsys, f"no lab runs in {tmp_path}", "haven lab up")  # fmt: skip
    _refused(["drill", "host-power-loss", "keystone-hung"], capsys, "only for `haven drill fault NAME`")
    assert not any(tmp_path.iterdir())


def test_the_json_of_one_injection_has_what_the_issue_asks_for() -> None:
    fault = fault_named("glance-killed")
    evidence = [{"kind": "down", "node": "glance-api", "at": 1.0, "text": "Glance went down"}]
    explanation = {"node": "glance-api", "label": "Glance", "score": 4.0, "onset": 1.0, "text": "t",
                   "evidence": evidence}  # fmt: skip
    result = Result(fault.name, fault.root, symptom="canary", ranked=["nova-compute", "glance-api"],
                    explanations=[explanation], explained_after_s=0.4)  # fmt: skip
    doc = fault_json(fault, result)
    assert doc["root_cause"] == "glance-api" and doc["explanations"] == [explanation]
    assert (doc["top1_correct"], doc["top3_correct"], doc["explained_after_s"]) == (False, True, 0.4)
    assert doc["healed"] is True and doc["miss"] == "ranked nova-compute, glance-api first"


class RecordingLab:
    """A FaultLab whose REST answers are canned and whose calls are recorded (no lab)."""

    folder = Path("/nonexistent")
    clouds_yaml = Path("/nonexistent/clouds.yaml")
    computes = ("compute-1", "compute-2")
    flavor = "lab.tiny"
    image_id = "img"

    def __init__(self, answers: Mapping[tuple[str, str], Any]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, str, str, Any]] = []

    def call(self, service: str, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        self.calls.append((service, method, path, body))
        return self.answers.get((method, path))

    def process(self, name: str) -> LabProcess:
        raise AssertionError("not used")


def test_placement_full_reserves_every_inventory_and_heals_it_at_the_new_generation() -> None:
    path = "/resource_providers/rp1/inventories/MEMORY_MB"
    inventory = {"total": 2048, "reserved": 512, "resource_provider_generation": 3}
    lab = RecordingLab({("GET", "/resource_providers"): {"resource_providers": [{"uuid": "rp1"}]},
                        ("GET", path): inventory})  # fmt: skip
    heal = placement_full(lab)  # type: ignore[arg-type]
    assert lab.calls[-1] == ("placement", "PUT", path, {**inventory, "reserved": 2048})
    lab.answers[("GET", path)] = {**inventory, "reserved": 2048, "resource_provider_generation": 4}
    heal()
    assert lab.calls[-1] == ("placement", "PUT", path, {**inventory, "resource_provider_generation": 4})


def test_computes_disabled_disables_each_and_heals_each() -> None:
    services = {"services": [{"id": "a"}, {"id": "b"}]}
    lab = RecordingLab({("GET", "/os-services?binary=nova-compute"): services})
    heal = computes_disabled(lab)  # type: ignore[arg-type]
    assert [(c[2], c[3]["status"]) for c in lab.calls[1:]] == [("/os-services/a", "disabled"),
                                                               ("/os-services/b", "disabled")]  # fmt: skip
    heal()
    assert [(c[2], c[3]) for c in lab.calls[3:]] == [("/os-services/a", {"status": "enabled"}),
                                                     ("/os-services/b", {"status": "enabled"})]  # fmt: skip
