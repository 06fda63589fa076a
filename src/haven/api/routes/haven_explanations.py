"""haven's explanations and canaries over HTTP: ``GET /v1/haven/explanations[/{id}]``, ``/v1/haven/canaries``.

Not Masakari's: under ``/v1/haven/``, for readers and admins (haven.api.policy), with the same
authentication as every other route. The bodies are what ``haven explain --json`` and ``haven canary
--json`` print (haven.diagnosis.records.record_json, haven.canary.model.run_json), newest first.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from haven.api.auth import require_policy
from haven.api.context import ApiContext
from haven.canary.model import run_json
from haven.canary.runner import recent_runs
from haven.diagnosis.records import ExplanationState, record_json

EXPLANATIONS_PATH = "/v1/haven/explanations"
EXPLANATION_PATH = "/v1/haven/explanations/{explanation_id:path}"  # ids hold ':' (canary:az1-...)
CANARIES_PATH = "/v1/haven/canaries"
Limit = Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")]


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["haven"], dependencies=[Depends(require_policy)])

    @routes.get(
        EXPLANATIONS_PATH, summary="Explanations of failed boots, recoveries and canaries, newest first"
    )
    def explanations(state: ExplanationState | None = None, limit: Limit = 50) -> dict[str, Any]:
        records = ctx.store.list_explanations(state=state, limit=limit)
        return {"explanations": [record_json(r) for r in records]}

    @routes.get(EXPLANATION_PATH, summary="One explanation with its ranked causes and their evidence")
    def explanation(explanation_id: str) -> dict[str, Any]:
        return {"explanation": record_json(ctx.store.get_explanation(explanation_id))}

    @routes.get(CANARIES_PATH, summary="Canary boots with each phase's time, newest first")
    def canaries(limit: Limit = 20) -> dict[str, Any]:
        return {"canaries": [run_json(r) for r in recent_runs(ctx.store, limit)]}

    return routes
