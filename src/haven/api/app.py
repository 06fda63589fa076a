"""``create_app``: the REST API as one FastAPI application, for ``haven serve`` and the tests.

Layers of a request, outermost first: ``AuthGate`` (401 unless the path is open),
``MicroversionMiddleware`` (400/406 for a bad ``OpenStack-API-Version`` on /v1, and the
echo), ``ProjectScope`` (Masakari's ``/v1/<project_id>/segments...`` form, see
haven.api.project_scope), then FastAPI routing with haven.api.errors mapping every error to Masakari's
fault body. OpenAPI is served at ``/openapi.json``; the interactive docs are off.
"""

from __future__ import annotations

from fastapi import FastAPI

from haven.api import errors
from haven.api.auth import Authenticator, AuthGate, LocalTokenAuthenticator
from haven.api.context import ApiContext, DrillLimits
from haven.api.intake import NotificationIntake
from haven.api.microversion import MAX_VERSION, MicroversionMiddleware
from haven.api.project_scope import ProjectScope
from haven.api.routes import (
    custom_recovery,
    discovery,
    haven_alertmanager,
    haven_audit,
    haven_backups,
    haven_drills,
    haven_explanations,
    haven_impact,
    haven_status,
    hosts,
    notifications,
    segments,
    vmoves,
)
from haven.domain.clock import Clock
from haven.service.metrics import HavenMetrics
from haven.service.status import Leadership, SingleNodeLeadership
from haven.store import Store


def create_app(
    store: Store,
    intake: NotificationIntake,
    token: str,
    clock: Clock,
    *,
    authenticator: Authenticator | None = None,
    leadership: Leadership | None = None,
    metrics: HavenMetrics | None = None,
    drill_limits: DrillLimits | None = None,
) -> FastAPI:
    """The API over ``store`` and the engine's ``intake``; ``token`` is the local admin token.

    ``authenticator`` replaces the local token (a Keystone one, later); ``token`` is then unused.
    ``metrics`` is the engine's (fed by its events); without it /metrics has the store's gauges only.
    """
    gate = authenticator if authenticator is not None else LocalTokenAuthenticator(token)
    leadership = leadership if leadership is not None else SingleNodeLeadership()
    ctx = ApiContext(
        store,
        intake,
        clock,
        leadership=leadership,
        metrics=metrics if metrics is not None else HavenMetrics(store, leadership),
        drill_limits=drill_limits if drill_limits is not None else DrillLimits(),
    )
    app = FastAPI(
        title="haven",
        summary="OpenStack instance HA: Masakari's v1 API",
        version=f"1.0 (microversions up to {MAX_VERSION})",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    errors.install(app)
    app.add_middleware(ProjectScope)  # after the microversion check, as in Masakari's Resource
    app.add_middleware(MicroversionMiddleware)
    app.add_middleware(AuthGate, authenticator=gate)  # added last: runs first
    for build in (discovery.router, segments.router, hosts.router, notifications.router, vmoves.router):
        app.include_router(build(ctx))
    for build in (haven_status.router, haven_drills.router, haven_explanations.router, haven_impact.router):
        app.include_router(build(ctx))
    app.include_router(haven_alertmanager.router(ctx))  # Alertmanager's webhook (attach_alertmanager)
    app.include_router(haven_backups.router(ctx))  # haven's own: scheduled backups, restores
    app.include_router(haven_audit.router(ctx))  # the failure-domain audit (serve attaches its sources)
    app.include_router(custom_recovery.router(ctx))  # haven's extension: claim, progress, finish, fail
    return app
