"""The measured impact matrix against haven's model (pure): each cell's prediction, and the disagreements.

Called by `haven drill controlplane-impact` (haven.cli.impact_drill), bench/impact.py (``--compare``)
and tests/topology/test_impact_matrix.py, so all three judge a cell the same way. The model is
haven.topology.impact for the service lost (every replica), over the catalogue with the lab's own
declarations (``LAB_DEPENDS_ON``), or the plain catalogue.

A cell agrees when the model says the operation stops and the user saw it fail, or the model says it
works or only degrades and the user saw it work (in time or slow). One exception, the same everywhere:
an operation the model says is done *another way once Nova counts the service down* (a verdict with a
``why``: Nova's local delete of a server whose compute is down) is expected to fail in the drill, which
sends every request about 1 s after the stop, before the lab's ``service_down_time`` (10 s): the first
path, which waits for the hung service, is what the user meets then.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from haven.controlplane.catalogue import CATALOGUE
from haven.domain.controlplane import ServiceName, ServiceSpec
from haven.topology import openstack_topology
from haven.topology.impact import Effect, ServiceLoss, Verdict, impact

# How the lab differs from the catalogue, declared as an operator would in haven.toml
# ([controlplane.services.keystone] depends_on = []): the lab's Keystone and Glance keep their data in
# SQLite files (haven.lab.keystone, haven.lab.glance), not in MariaDB; its Neutron is a stand-in
# (haven.lab.netstub) with no database, no bus and no token check.
LAB_DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "keystone": (),
    "glance-api": ("keystone",),
    "neutron-server": (),
}
BEFORE_DOWN = "sent before Nova counts the service down (service_down_time): the first path waits for it"


def lab_specs(depends_on: Mapping[str, Iterable[str]] | None = None) -> list[ServiceSpec]:
    """The catalogue with the lab's declarations (``depends_on``, default LAB_DEPENDS_ON) over it."""
    declared = LAB_DEPENDS_ON if depends_on is None else depends_on
    return [
        dataclasses.replace(spec, depends_on=tuple(ServiceName(d) for d in declared[name]))
        if name in declared
        else spec
        for name, spec in CATALOGUE.items()
    ]


def predictions(service: str, depends_on: Mapping[str, Iterable[str]] | None = None) -> dict[str, Verdict]:
    """The model's verdict on every operation with every replica of ``service`` lost.

    ``depends_on``: the declarations over the catalogue (default: the lab's; ``{}``: the plain catalogue).
    """
    topology = openstack_topology(lab_specs(depends_on))
    return {v.name: v for v in impact(topology, [ServiceLoss(service, 0, 1)]).operations}


def expected(verdict: Verdict) -> str:
    """What the drill should see of an operation with this verdict: "fails" or "works"."""
    if verdict.effect is Effect.STOPS or verdict.why:  # a fallback: not yet, see the module's note
        return "fails"
    return "works"


@dataclass(frozen=True)
class Cell:
    service: str
    operation: str
    seen: str  # works | slow | fails
    seconds: float
    detail: str
    predicted: str  # the model's effect (stops | degraded | works); "" for a baseline
    expected: str  # fails | works; "" for a baseline (every operation should work)
    note: str = ""

    @property
    def agrees(self) -> bool:
        if not self.expected:
            return self.seen != "fails"
        return (self.seen == "fails") == (self.expected == "fails")


def cells(raw: Mapping[str, Any], depends_on: Mapping[str, Iterable[str]] | None = None) -> list[Cell]:
    """Every observation of a run (bench/impact.py's or the drill's raw document), judged."""
    found = []
    for service, seen in raw["services"].items():
        pred = {} if service.startswith("baseline") else predictions(service, depends_on)
        for op in raw["operations"]:
            o = seen["ops"][op]
            v = pred.get(op)
            note = f"{v.why}; {BEFORE_DOWN}" if v is not None and v.why else ""
            found.append(Cell(
                service, op, o["result"], float(o["seconds"]), o.get("detail", ""),
                v.effect.value if v else "", expected(v) if v else "", note,
            ))  # fmt: skip
    return found


def observations(document: Mapping[str, Any]) -> dict[str, Any]:
    """The raw observations of a saved run: bench/impact.py's ``--save`` file as it is, or the drill's
    ``--json`` document (its matrix's ``seen``, ``seconds`` and ``detail``), so both can be compared again."""
    if "matrix" not in document:
        return dict(document)
    whole = document.get("whole_again", {})
    return {
        "operations": list(document["operations"]),
        "services": {
            service: {
                "whole_again": bool(whole.get(service, True)),
                "ops": {
                    op: {"result": c["seen"], "seconds": c["seconds"], "detail": c.get("detail", "")}
                    for op, c in row.items()
                },
            }
            for service, row in document["matrix"].items()
        },
        "depends_on": document.get("depends_on", {k: list(v) for k, v in LAB_DEPENDS_ON.items()}),
        **{k: document[k] for k in ("seconds", "load", "settings", "measured_at") if k in document},
    }


def matrix_json(
    raw: Mapping[str, Any], depends_on: Mapping[str, Iterable[str]] | None = None
) -> dict[str, Any]:
    """The drill's ``--json``: the matrix (service -> operation -> cell), the disagreements, the verdict."""
    judged = cells(raw, depends_on)
    matrix: dict[str, dict[str, Any]] = {}
    for c in judged:
        matrix.setdefault(c.service, {})[c.operation] = {
            "seen": c.seen, "seconds": c.seconds, "predicted": c.predicted, "expected": c.expected,
            "agrees": c.agrees, "detail": c.detail, "note": c.note,
        }  # fmt: skip
    wrong = [c for c in judged if not c.agrees]
    return {
        "operations": list(raw["operations"]),
        "services": [s for s in raw["services"] if not s.startswith("baseline")],
        "depends_on": {k: list(v) for k, v in (LAB_DEPENDS_ON if depends_on is None else depends_on).items()},
        "matrix": matrix,
        "whole_again": {s: bool(v.get("whole_again", True)) for s, v in raw["services"].items()},
        "disagreements": [
            {
                "service": c.service,
                "operation": c.operation,
                "predicted": c.predicted or "works",
                "expected": c.expected or "works",
                "seen": c.seen,
                "detail": c.detail,
            }
            for c in wrong
        ],
        "verdict": "agrees" if not wrong else "disagrees",
    }
