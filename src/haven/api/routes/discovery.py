"""Version discovery (``GET /``, ``GET /v1``) and the liveness probe (``GET /healthz``).

keystoneauth and openstacksdk read ``GET /`` to learn the microversion range before
they send ``OpenStack-API-Version``; Masakari serves it without authentication and
keeps ``GET /v1`` behind keystone. ``/healthz`` is for load balancers and supervisors:
it answers 200 when the store can be read, 503 otherwise.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from haven.api.auth import require_admin
from haven.api.context import ApiContext
from haven.api.microversion import MAX_VERSION, MIN_VERSION

Json = dict[str, Any]


def _version(request: Request) -> Json:
    return {
        "id": "v1.0",
        "status": "CURRENT",
        "version": str(MAX_VERSION),
        "min_version": str(MIN_VERSION),
        "updated": "2016-07-01T11:33:21Z",
        "links": [{"rel": "self", "href": f"{str(request.base_url).rstrip('/')}/v1/"}],
    }


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["versions"])

    @routes.get("/", summary="List API versions (no authentication)")
    def list_versions(request: Request) -> Json:
        return {"versions": [_version(request)]}

    @routes.get("/v1", summary="Show API v1", dependencies=[Depends(require_admin)])
    @routes.get("/v1/", include_in_schema=False, dependencies=[Depends(require_admin)])
    def show_version(request: Request) -> Json:
        version = _version(request)
        version["links"].append(
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"}
        )
        version["media-types"] = [
            {"base": "application/json", "type": "application/vnd.openstack.masakari+json;version=1"}
        ]
        return {"version": version}

    @routes.get("/healthz", summary="Liveness: the API answers and its store can be read")
    def healthz() -> Json:
        ctx.store.list_segments()  # StoreUnavailable becomes a 503 through haven.api.errors
        return {"status": "ok", "time": ctx.clock.now()}

    return routes
