"""haven's own read-outs: ``GET /v1/haven/status`` (the engine's status) and ``GET /metrics`` (Prometheus).

Not part of Masakari's API: everything haven adds lives under ``/v1/haven/`` (a name
Masakari's resources cannot take) or at ``/metrics``, Prometheus' conventional path.

``/v1/haven/status`` needs a token with the admin or reader role (``require_reader``,
defined here so the Masakari routes' policy stays in haven.api.auth). ``/metrics``
is open, like ``/healthz``: it carries only aggregate counts (no host names, ids or
secrets), Prometheus 2.x cannot send haven's ``X-Auth-Token`` header, and the API
listens on 127.0.0.1 unless ``--bind`` says otherwise (see the README).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from haven.api.auth import _STATE_KEY as PRINCIPAL_KEY  # where the AuthGate puts the caller
from haven.api.auth import ADMIN, Principal
from haven.api.context import ApiContext
from haven.api.errors import ApiError
from haven.service.metrics import CONTENT_TYPE, HavenMetrics
from haven.service.status import leader_dict, status_summary

READER_ROLES = frozenset({ADMIN, "reader"})
STATUS_PATH = "/v1/haven/status"


def require_reader(request: Request) -> Principal:
    """FastAPI dependency: the caller, who must hold the admin or the reader role."""
    principal = request.scope.get("state", {}).get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise ApiError(HTTPStatus.UNAUTHORIZED, "The request you have made requires authentication.")
    if not principal.roles & READER_ROLES:
        raise ApiError(HTTPStatus.FORBIDDEN, "Policy doesn't allow this operation to be performed.")
    return principal


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
        dependencies=[Depends(require_reader)],
    )
    def engine_status() -> EngineStatus:
        body: dict[str, Any] = {
            "leader": leader_dict(ctx.leadership),
            "time": ctx.clock.now(),
            **status_summary(ctx.store).to_dict(),
        }
        return EngineStatus.model_validate(body)

    @routes.get(
        "/metrics",
        summary="Prometheus metrics in the text exposition format (no authentication)",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}}},
    )
    def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return routes
