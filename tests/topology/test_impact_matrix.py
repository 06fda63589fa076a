"""haven's impact model against the matrix measured on the real lab (bench/impact.py, run once).

``impact_lab_matrix.json`` is that run's saved observations: for each lab service SIGSTOPped, each user
operation's result (works / slow / fails) as a user saw it, and how the lab is declared where it differs
from the catalogue (its Keystone and Glance keep their data in SQLite). The model's prediction for each
service lost must agree with every observation: an operation it says stops failed, one it says works
(or only degrades) worked. Pure: no lab runs here. When the lab changes, run the bench again and replace
the file (docs/controlplane.md, "Impact: the measured matrix").
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from haven.controlplane.catalogue import CATALOGUE
from haven.domain.controlplane import ServiceName
from haven.topology import openstack_topology
from haven.topology.impact import Effect, ServiceLoss, impact

MEASURED: dict[str, Any] = json.loads((Path(__file__).parent / "impact_lab_matrix.json").read_text())
LAB = openstack_topology(
    dataclasses.replace(spec, depends_on=tuple(ServiceName(d) for d in MEASURED["depends_on"][name]))
    if name in MEASURED["depends_on"]
    else spec
    for name, spec in CATALOGUE.items()
)
SERVICES = [name for name in MEASURED["services"] if not name.startswith("baseline")]


def test_every_operation_worked_with_nothing_stopped() -> None:
    for name in ("baseline", "baseline-after"):
        seen = MEASURED["services"][name]["ops"]
        assert {op: o["result"] for op, o in seen.items() if o["result"] == "fails"} == {}, name


@pytest.mark.parametrize("service", SERVICES)
def test_the_model_predicts_what_the_lab_showed(service: str) -> None:
    predicted = {v.name: v.effect for v in impact(LAB, [ServiceLoss(service, 0, 1)]).operations}
    wrong = {}
    why = {v.name: v.why for v in impact(LAB, [ServiceLoss(service, 0, 1)]).operations}
    for op, seen in MEASURED["services"][service]["ops"].items():
        if why[op]:
            # done another way once Nova counts the service down (a delete nova-api does itself): the
            # bench sends each request 1 s after the stop, before the lab's service_down_time (10 s,
            # haven.lab.nova), so it saw the first path wait: the request fails within its window
            if seen["result"] != "fails":
                wrong[op] = f"predicted {predicted[op].value} ({why[op]}), observed {seen['result']}"
            continue
        stops = predicted[op] is Effect.STOPS
        if stops != (seen["result"] == "fails"):
            wrong[op] = f"predicted {predicted[op].value}, observed {seen['result']} {seen['detail']}"
    assert wrong == {}
