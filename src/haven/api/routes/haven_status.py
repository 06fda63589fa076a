"""haven's own read-outs: ``GET /v1/haven/status`` (the engine's status) and ``GET /metrics`` (Prometheus).

Not part of Masakari's API: everything haven adds lives under ``/v1/haven/`` (a name
Masakari's resources cannot take) or at ``/metrics``, Prometheus' conventional path.

``/v1/haven/status`` needs a token with the admin or reader role (its rule is in the
policy table, haven.api.policy, with every other route's). ``/metrics``
is open, like ``/healthz``: it carries only aggregate counts (no host names, ids or
secrets), Prometheus 2.x cannot send haven's ``X-Auth-Token`` header, and the API
listens on 127.0.0.1 unless ``--bind`` says otherwise (see the README).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from haven.api.auth import Principal, require_policy
from haven.api.context import ApiContext
from haven.service.metrics import CONTENT_TYPE, HavenMetrics
from haven.service.release import release_segment
from haven.service.status import leader_dict, status_summary

STATUS_PATH = "/v1/haven/status"
RELEASE_PATH = "/v1/haven/segments/{segment_id}/release"
Caller = Annotated[Principal, Depends(require_policy)]


class ReleaseBody(BaseModel):
    reason: str = Field("", max_length=255, description="why: kept in the audit record")


class ReleaseView(BaseModel):
    segment_id: str
    segment: str
    hosts: list[str]
    by: str
    reason: str
    at: float


class Leader(BaseModel):
    identity: str
    backend: str
    is_leader: bool


class AlertView(BaseModel):
    kind: str
    host: str | None
    segment_id: str | None
    message: str
    raised_at: float


class HoldView(BaseModel):
    segment_id: str | None
    since: float
    reason: str


class EngineStatus(BaseModel):
    """What ``haven status --json`` prints, plus who leads and when this was read."""

    leader: Leader
    time: float
    segments: int
    hosts_by_condition: dict[str, int]
    notifications_by_status: dict[str, int]
    alerts: list[AlertView]
    holds: list[HoldView]


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["haven"])
    metrics = ctx.metrics if ctx.metrics is not None else HavenMetrics(ctx.store, ctx.leadership)

    @routes.get(
        STATUS_PATH,
        summary="The engine's status: leader, hosts by condition, notifications by status, alerts, holds",
        dependencies=[Depends(require_policy)],
    )
    def engine_status() -> EngineStatus:
        body: dict[str, Any] = {
            "leader": leader_dict(ctx.leadership),
            "time": ctx.clock.now(),
            **status_summary(ctx.store).to_dict(),
        }
        return EngineStatus.model_validate(body)

    @routes.post(
        RELEASE_PATH,
        summary="Release a segment held by the observer gate or its fence budget (admin; audited)",
        status_code=200,
    )
    def release(segment_id: str, body: ReleaseBody, who: Caller) -> ReleaseView:
        by = f"user {who.user_id}" + (f" of project {who.project_id}" if who.project_id else "") + " (API)"
        done = release_segment(ctx.store, segment_id, by, body.reason, ctx.clock.now())
        return ReleaseView.model_validate(done.to_dict())

    @routes.get(
        "/metrics",
        summary="Prometheus metrics in the text exposition format (no authentication)",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return routes
