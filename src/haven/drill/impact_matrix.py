"""The measured impact matrix against haven's model (pure): each cell's prediction, and the disagreements.

Called by `haven drill controlplane-impact` (haven.cli.impact_drill), bench/impact.py (``--compare``)
and tests/topology/test_impact_matrix.py, so all three judge a cell the same way. The model is
haven.topology.impact for the service lost (every replica), over the catalogue with the lab's own
declarations (``LAB_DEPENDS_ON``), or the plain catalogue.

A cell agrees when the model says the operation stops and the user saw it fail, or the model says it
works or only degrades and the user saw it work (in time or slow). One rule for the cells whose outcome
depends on what the drill does not control, the same everywhere: seen working, or failing for want of
an answer (a timeout: the request waited for the stopped service), they agree; failing any other way
(an error answered) they do not. They are:
- an operation the model says is done *another way once Nova counts the service down* (a verdict with a
  ``why``: Nova's local delete of a server whose compute is down, or whose computes' reports stop with
  the conductor or RabbitMQ): the drill sends every request about 1 s after the stop, but when nova-api
  handles it depends on the machine's load: before the lab's ``service_down_time`` (10 s) it takes the
  first path and waits for the hung service (the saved run of 2026-12-06, at a load of 5-9), after it the
  local delete answers (the whole run of 2026-12-07, load 16-32: 13 s for a DELETE with RabbitMQ hung);
- an operation the model says is *degraded only because a token cache's backing service is lost*
  (Keystone, behind keystonemiddleware's cache) and that goes through an API the lab runs in several
  processes each with its own in-process token cache (``LAB_PROCESS_CACHES``: the lab has no memcached):
  it works on the process that validated the token and gets no answer from the others, which wait for
  Keystone. A deployment with memcached behind keystonemiddleware, as the install guide and the
  deployment tools configure it, shares the cache between processes and replicas.
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
from haven.topology.openstack import CACHES, OPERATIONS

# How the lab differs from the catalogue, declared as an operator would in haven.toml
# ([controlplane.services.keystone] depends_on = []): the lab's Keystone and Glance keep their data in
# SQLite files (haven.lab.keystone, haven.lab.glance), not in MariaDB; its Neutron is a stand-in
# (haven.lab.netstub) with no database, no bus and no token check.
LAB_DEPENDS_ON: dict[str, tuple[str, ...]] = {
    "keystone": (),
    "glance-api": ("keystone",),
    "neutron-server": (),
}
BEFORE_DOWN = (
    "handled before Nova counts the service down (service_down_time), the first path waits for it: "
    "works or no answer"
)
# The lab's APIs that run several processes, each keeping keystonemiddleware's token cache in its own
# memory (no memcached_servers: keystonemiddleware warns "the in-process cache causes inconsistent
# results"): nova-api, 2 gunicorn workers (haven.lab.nova.start_api). Measured 2026-12-07 with Keystone
# SIGSTOPped: 6 of 8 requests with one token answered in <= 0.16 s, all by the worker that had validated
# it; the other 2 were taken by the other worker and answered only after Keystone was continued (25.0 s
# and 16.9 s in nova-api's log). Placement and Glance run one process each, the Neutron stand-in checks
# no token.
LAB_PROCESS_CACHES: dict[str, int] = {"nova-api": 2}
PER_PROCESS = (
    "the lab's {api} keeps validated tokens per process ({n} gunicorn workers, no memcached): it works on "
    "the worker that validated the token and waits for {lost} on the others"
)
_NO_ANSWER = ("ConnectTimeout", "ReadTimeout", "TimeoutError")  # keystoneauth's and the drill's timeouts


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


def per_process(
    service: str, operation: str, verdict: Verdict, caches: Mapping[str, int] | None = None
) -> str:
    """The note when ``verdict`` is degraded only because ``service`` backs a token cache the lab keeps
    per process in an API of ``operation`` (``caches``, default LAB_PROCESS_CACHES); else ""."""
    caches = LAB_PROCESS_CACHES if caches is None else caches
    path = OPERATIONS.get(operation)
    if verdict.effect is not Effect.DEGRADED or verdict.why or verdict.because != (service,) or path is None:
        return ""
    for api in path.calls:
        if caches.get(api, 1) > 1 and (api, service) in CACHES and (api, service) not in path.uncached:
            return PER_PROCESS.format(api=api, n=caches[api], lost=service)
    return ""


def expected(verdict: Verdict) -> str:
    """What the drill should see of an operation with this verdict: "fails" or "works" (a fallback's
    "works" may also be no answer, see the module's note)."""
    return "fails" if verdict.effect is Effect.STOPS else "works"


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
    either: bool = False  # works, or no answer: when or where the request is handled decides (the note)

    @property
    def agrees(self) -> bool:
        if not self.expected:
            return self.seen != "fails"
        if self.either and self.seen == "fails":
            return self.detail.startswith(_NO_ANSWER)
        return (self.seen == "fails") == (self.expected == "fails")


def cells(
    raw: Mapping[str, Any],
    depends_on: Mapping[str, Iterable[str]] | None = None,
    process_caches: Mapping[str, int] | None = None,
) -> list[Cell]:
    """Every observation of a run (bench/impact.py's or the drill's raw document), judged.

    ``process_caches``: the APIs run with a token cache per process (default LAB_PROCESS_CACHES)."""
    found = []
    for service, seen in raw["services"].items():
        pred = {} if service.startswith("baseline") else predictions(service, depends_on)
        for op in raw["operations"]:
            o = seen["ops"][op]
            v = pred.get(op)
            shared = per_process(service, op, v, process_caches) if v is not None else ""
            note = f"{v.why}; {BEFORE_DOWN}" if v is not None and v.why else shared
            found.append(Cell(
                service, op, o["result"], float(o["seconds"]), o.get("detail", ""),
                v.effect.value if v else "", expected(v) if v else "", note, bool(note),
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
        # cells the model calls degraded seen failing for want of an answer, which the rule accepts
        "unanswered": [
            {"service": c.service, "operation": c.operation, "detail": c.detail, "note": c.note}
            for c in judged
            if c.either and c.seen == "fails" and c.agrees
        ],
        "verdict": "agrees" if not wrong else "disagrees",
    }
