"""``/v1/haven/drills``: run a drill through the API and read back the last reports (admin only).

A drill runs on its own fresh simulated cloud in virtual time, never on the cloud
the engine watches, with the same code and the same report as ``haven drill --json``.
It is CPU work, so it runs in a worker thread (its own event loop there) and the
API keeps answering meanwhile; one drill at a time (another request gets a 409),
and the cloud's size is bounded by ``DrillLimits`` (a 400 naming the limit). The
last ``DrillLimits.keep`` reports are kept in memory (they are gone after a restart).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from haven.api.auth import require_admin
from haven.api.context import ApiContext, DrillLimits
from haven.api.errors import ApiError
from haven.api.views import timestamp
from haven.drill.run import DrillOptions, run_drill
from haven.drill.scenarios import SCENARIOS

DRILLS_PATH = "/v1/haven/drills"
MAX_SEED = 2**63 - 1


class DrillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(description=f"one of: {', '.join(SCENARIOS)}")
    hosts: int = Field(30, ge=1, description="hypervisors in the simulated cloud (the server bounds it)")
    vms: int = Field(300, ge=0, description="VMs in the simulated cloud (the server bounds it)")
    seed: int = Field(1, ge=0, le=MAX_SEED, description="the same seed gives the same cloud and failure")
    ha_fraction: float = Field(1 / 3, ge=0, le=1, description="share of VMs with HA_Enabled")


class DrillSummary(BaseModel):
    id: str
    created_at: str | None
    scenario: str
    hosts: int
    vms: int
    seed: int
    verdict: str


class Drill(DrillSummary):
    report: dict[str, Any] = Field(description="the same JSON as `haven drill SCENARIO --json`")


class DrillList(BaseModel):
    drills: list[DrillSummary]


def check_request(body: DrillRequest, limits: DrillLimits) -> None:
    """400 for a scenario haven does not know or a cloud beyond the server's bounds."""
    if body.scenario not in SCENARIOS:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            f"Unknown scenario {body.scenario!r}; known scenarios: {', '.join(SCENARIOS)}.",
        )
    for field, value, limit in (("hosts", body.hosts, limits.max_hosts), ("vms", body.vms, limits.max_vms)):
        if value > limit:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                f"Invalid input for field/attribute {field}. {value} is more than this server's drill "
                f"limit of {limit}; run larger drills with `haven drill` on a machine of your own.",
            )


def _run_in_thread(options: DrillOptions) -> dict[str, Any]:
    # A loop of its own in the worker thread: the drill's virtual clock never touches the API's loop.
    return asyncio.run(run_drill(options)).to_dict()


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["haven"], dependencies=[Depends(require_admin)])
    limits = ctx.drill_limits
    kept: OrderedDict[str, Drill] = OrderedDict()  # oldest first
    running = asyncio.Lock()

    @routes.post(
        DRILLS_PATH,
        status_code=HTTPStatus.CREATED,
        summary="Run a drill on a fresh simulated cloud in virtual time (never the live one)",
        responses={409: {"description": "another drill is running"}},
    )
    async def run(body: DrillRequest, response: Response) -> Drill:
        check_request(body, limits)
        if running.locked():
            raise ApiError(HTTPStatus.CONFLICT, "A drill is already running; try again when it has finished.")
        async with running:
            created = timestamp(ctx.clock.now())
            options = DrillOptions(
                body.scenario, hosts=body.hosts, vms=body.vms, seed=body.seed, ha_fraction=body.ha_fraction
            )
            report = await asyncio.to_thread(_run_in_thread, options)
        drill = Drill(
            id=uuid.uuid4().hex,
            created_at=created,
            scenario=body.scenario,
            hosts=report["hosts"],
            vms=report["vms"],
            seed=body.seed,
            verdict=report["verdict"],
            report=report,
        )
        kept[drill.id] = drill
        while len(kept) > limits.keep:
            kept.popitem(last=False)
        response.headers["Location"] = f"{DRILLS_PATH}/{drill.id}"
        return drill

    @routes.get(DRILLS_PATH, summary="The last drills run through the API, newest first")
    def list_drills() -> DrillList:
        return DrillList(
            drills=[DrillSummary(**d.model_dump(exclude={"report"})) for d in reversed(kept.values())]
        )

    @routes.get(DRILLS_PATH + "/{drill_id}", summary="One drill and its report")
    def show_drill(drill_id: str) -> Drill:
        drill = kept.get(drill_id)
        if drill is None:
            raise ApiError(
                HTTPStatus.NOT_FOUND,
                f"No drill with id {drill_id} found (only the last {limits.keep} are kept).",
            )
        return drill

    return routes
