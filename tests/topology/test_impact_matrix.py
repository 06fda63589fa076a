"""haven's impact model against the matrices measured on the real lab (the drill or bench/impact.py).

Each ``impact_lab_matrix*.json`` is one run's saved observations: for each lab service SIGSTOPped, each
user operation's result (works / slow / fails) as a user saw it, and how the lab is declared where it
differs from the catalogue (its Keystone and Glance keep their data in SQLite). ``impact_lab_matrix.json``:
`haven drill controlplane-impact --cloud lab --operation-timeout 60` run whole on 2026-12-07 (load
16-37); ``impact_lab_matrix_2026-12-06.json``: bench/impact.py's run of 2026-12-06 (load 5-9). The
model's prediction for each service lost must agree with every observation of both: an operation it says
stops failed, one it says works (or only degrades) worked, or for the cells whose outcome depends on when
or where the request is handled, got no answer in time. Each cell is judged by haven.drill.impact_matrix,
as `haven drill controlplane-impact` and `bench/impact.py --compare` judge it, so the three cannot
disagree. Pure: no lab runs here. When the lab changes, run the drill again and replace the file
(docs/controlplane.md, "Impact: the measured matrix").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from haven.drill.impact_matrix import (
    LAB_DEPENDS_ON,
    LAB_PROCESS_CACHES,
    cells,
    matrix_json,
    observations,
    predictions,
)
from haven.topology.impact import Effect

HERE = Path(__file__).parent
RUNS: dict[str, dict[str, Any]] = {
    path.stem: observations(json.loads(path.read_text()))
    for path in sorted(HERE.glob("impact_lab_matrix*.json"))
}
MEASURED = RUNS["impact_lab_matrix_2026-12-06"]
CELLS = [
    (run, name) for run, raw in RUNS.items() for name in raw["services"] if not name.startswith("baseline")
]


def test_both_saved_runs_are_read() -> None:
    assert set(RUNS) == {"impact_lab_matrix", "impact_lab_matrix_2026-12-06"}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_operation_worked_with_nothing_stopped(run: str) -> None:
    for name in ("baseline", "baseline-after"):
        seen = RUNS[run]["services"][name]["ops"]
        assert {op: o["result"] for op, o in seen.items() if o["result"] == "fails"} == {}, name


@pytest.mark.parametrize("run", sorted(RUNS))
def test_the_saved_run_was_declared_as_the_drill_declares_the_lab(run: str) -> None:
    assert {k: tuple(v) for k, v in RUNS[run]["depends_on"].items()} == LAB_DEPENDS_ON


@pytest.mark.parametrize(("run", "service"), CELLS)
def test_the_model_predicts_what_the_lab_showed(run: str, service: str) -> None:
    judged = [c for c in cells(RUNS[run]) if c.service == service]
    assert len(judged) == len(RUNS[run]["operations"])
    wrong = {
        c.operation: f"predicted {c.predicted} (expected {c.expected}), observed {c.seen} {c.detail}"
        for c in judged
        if not c.agrees
    }
    assert wrong == {}


def test_a_delete_on_a_hung_compute_is_degraded_and_may_get_no_answer_when_sent_at_once() -> None:
    # Nova deletes the server itself (local delete) once it counts the compute down, after
    # service_down_time; a delete nova-api handles before then is cast to the compute and waits for it
    # (the saved run, at a load of 5-9: "not gone within 45 s"). Which one happens depends on the load.
    verdict = predictions("nova-compute")["server-delete"]
    assert verdict.effect is Effect.DEGRADED and verdict.why
    cell = next(c for c in cells(MEASURED) if (c.service, c.operation) == ("nova-compute", "server-delete"))
    assert (cell.predicted, cell.expected, cell.seen, cell.either, cell.agrees) == (
        "degraded", "works", "fails", True, True,
    )  # fmt: skip
    assert "service_down_time" in cell.note and cell.detail.startswith("TimeoutError")


def test_with_rabbitmq_hung_a_delete_handled_late_is_done_locally_and_works() -> None:
    # The whole run of 2026-12-07 (load 16-32): nova-api took the DELETE 13 s after RabbitMQ was
    # stopped, found compute-1 down (its reports go through the conductor over the bus; the lab's
    # service_down_time is 10 s), logged "instance's host compute-1 is down, deleting from database" and
    # answered 204: the delete worked. The saved run (load 5-9) sent it in time to be cast: no answer.
    worked = {"result": "works", "seconds": 13.1, "detail": ""}
    unanswered = {"result": "fails", "seconds": 20.1, "detail": "ConnectTimeout: Request to x timed out"}
    refused = {"result": "fails", "seconds": 0.2, "detail": "HttpError: Internal Server Error (HTTP 500)"}
    for seen, agrees in ((worked, True), (unanswered, True), (refused, False)):
        raw = {"operations": ["server-delete"], "services": {"rabbitmq": {"ops": {"server-delete": seen}}}}
        (cell,) = cells(raw)
        assert (cell.predicted, cell.either, cell.agrees) == ("degraded", True, agrees), seen
        assert "conductor over RabbitMQ" in cell.note


def test_the_plain_catalogue_disagrees_where_the_lab_differs_from_it() -> None:
    # With Keystone and Glance on MariaDB (the catalogue), a stopped MariaDB would stop tokens and
    # images; the lab keeps them in SQLite, and its Neutron stand-in checks no token.
    doc = matrix_json(MEASURED, depends_on={})
    assert doc["verdict"] == "disagrees"
    assert sorted((d["service"], d["operation"]) for d in doc["disagreements"]) == [
        ("keystone", "server-list"), ("keystone", "server-show"),
        ("mariadb", "image-list"), ("mariadb", "image-upload"), ("mariadb", "token-issue"),
    ]  # fmt: skip
    assert matrix_json(MEASURED)["verdict"] == "agrees"


def test_the_drills_json_document_is_compared_as_the_raw_observations_are() -> None:
    # bench/impact.py --compare reads either its own --save file or the drill's --json document
    document = matrix_json(MEASURED)
    assert observations(MEASURED) == MEASURED
    assert cells(observations(document)) == cells(MEASURED)
    assert matrix_json(observations(document))["disagreements"] == document["disagreements"]


def _keystone_row(**seen: str) -> dict[str, Any]:
    """A run with Keystone stopped: each named operation failed with that detail, the others worked."""
    ops = ["token-issue", "server-show", "flavor-list", "image-list"]
    row = {op: {"result": "fails" if op in seen else "works", "seconds": 60.0 if op in seen else 0.1,
                "detail": seen.get(op, "")} for op in ops}  # fmt: skip
    return {"operations": ops, "services": {"keystone": {"ops": row}}}


def test_keystone_down_on_the_labs_two_nova_api_workers_works_or_gets_no_answer() -> None:
    # Measured 2026-12-07 (docs/controlplane.md): with Keystone SIGSTOPped, requests with one token
    # were answered at once by the nova-api worker that had validated it; those the other worker took
    # waited for Keystone (each gunicorn worker keeps keystonemiddleware's in-process cache, no memcached).
    assert LAB_PROCESS_CACHES == {"nova-api": 2}
    timeout = "ConnectTimeout: Request to http://127.0.0.1:1/v2.1/servers/x timed out"
    raw = _keystone_row(**{"token-issue": timeout, "server-show": timeout, "flavor-list": timeout})
    judged = {c.operation: c for c in cells(raw)}
    assert all(c.agrees for c in judged.values())
    assert judged["server-show"].either and "2 gunicorn workers" in judged["server-show"].note
    assert not judged["token-issue"].either  # it stops: no token is issued without Keystone
    assert [(d["operation"]) for d in matrix_json(raw)["unanswered"]] == [
        "server-show",
        "flavor-list",
    ]
    # an API with one process (Glance) shares nothing by chance: its failure is a disagreement
    assert not cells(_keystone_row(**{"image-list": timeout}))[3].agrees
    # and without the lab's per-process caches (a shared memcached) a timeout disagrees too
    assert not next(c for c in cells(raw, process_caches={}) if c.operation == "server-show").agrees


def test_an_answered_error_with_keystone_down_is_no_per_worker_cache_miss() -> None:
    # a worker that misses the cache waits for Keystone; a 401 or a 500 answered is something else
    raw = _keystone_row(**{"server-show": "Unauthorized: The request you have made requires authentication"})
    cell = next(c for c in cells(raw) if c.operation == "server-show")
    assert cell.either and not cell.agrees
