"""``GET /v1/haven/audit``: what one failure domain's loss would break; ``haven audit --json``'s body.

Registered by haven.api.app; its policy (reader) is in haven.api.policy. The layout is read at each
request from haven serve's own sources (haven.audit.sources): its store (segments, recorded replicas),
its cloud (capacities, servers, racks; the live simulated cloud, or Nova) and its haven.toml
(``[controlplane]``, ``[stateful.*]``, ``[recovery]``), which serve attaches (``attach_audit``); the pure
audit (haven.audit.findings) judges. No Ceph here (nothing in haven.toml names its outputs: the CLI
takes recorded files). Without attached sources (an app built without serve) a 409 says so; a cloud
that does not answer is a 503 naming the cloud's error. Nothing is changed.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.applications import Starlette

from haven.api.auth import require_policy
from haven.api.context import ApiContext
from haven.api.errors import ApiError
from haven.audit.findings import audit, audit_json
from haven.audit.sources import AuditSources, read_layout
from haven.domain.errors import CloudError

STATE_KEY = "haven_audit"
AUDIT_PATH = "/v1/haven/audit"


class FindingView(BaseModel):
    kind: str = Field(description="bunched, quorum, capacity, ceph_rule or ceph_osd")
    subject: str = Field(description="the service, cluster, segment, CRUSH rule or host it is about")
    detail: str = Field(description="what one failure domain's loss would break, with the numbers")
    fix: str = Field(description="what to change")


class CheckedView(BaseModel):
    domains: list[str] = Field(description="the failure domains known: controllers' and racks (aggregates)")
    services: list[str] = Field(description="control-plane services whose replicas were checked")
    clusters: list[str] = Field(description="quorum clusters checked: [stateful.*] and quorum services")
    segments: list[str] = Field(description="segments whose N+1 capacity was asked of the recovery planner")
    ceph: bool = Field(description="whether Ceph's OSD tree and CRUSH rules were checked")


class AuditView(BaseModel):
    findings: list[FindingView] = Field(description="every finding; none: each checked domain can be lost")
    ceph: bool = Field(description="as checked.ceph")
    checked: CheckedView = Field(description="what was looked at")


def attach_audit(app: object, sources: AuditSources | None) -> None:
    """Give the route haven serve's cloud and haven.toml (the store is the API's own)."""
    if not isinstance(app, Starlette):
        raise TypeError(f"the audit attaches to the API's Starlette application, not {type(app).__name__}")
    setattr(app.state, STATE_KEY, sources)


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["haven"])

    @routes.get(
        AUDIT_PATH,
        summary="Failure domains: bunched replicas, quorum a domain would break, N+1 capacity per segment",
        dependencies=[Depends(require_policy)],
        responses={
            HTTPStatus.CONFLICT: {
                "description": "this API was started without haven serve's cloud and config"
            },
            HTTPStatus.SERVICE_UNAVAILABLE: {"description": "the cloud did not answer"},
        },
    )
    async def audit_now(request: Request) -> AuditView:
        sources = getattr(request.app.state, STATE_KEY, None)
        if not isinstance(sources, AuditSources):
            raise ApiError(
                HTTPStatus.CONFLICT,
                "the audit needs haven serve's cloud and haven.toml, and this API was started without them",
            )
        try:
            layout = await read_layout(ctx.store, sources)
        except CloudError as exc:
            raise ApiError(HTTPStatus.SERVICE_UNAVAILABLE, f"the cloud did not answer: {exc}") from exc
        found = await asyncio.to_thread(audit, layout)  # the planner's runs: off the engine's event loop
        return AuditView.model_validate(audit_json(layout, found))

    return routes
