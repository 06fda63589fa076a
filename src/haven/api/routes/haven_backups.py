"""``/v1/haven/backups`` and ``/v1/haven/recovery-points``: scheduled backups over HTTP.

Not Masakari's: under ``/v1/haven/``. Reads are for readers and admins; taking a backup now and
restoring are for admins only (haven.api.policy). The reads come from the store (any engine, a
follower too) and page as Masakari's lists do (``limit``, ``marker``: a record's id, ``sort_key``,
``sort_dir``; haven.api.paging). A backup now or a restore uses the BackupService ``haven serve``
attached (``attach_backups``): its record is committed before the cloud is asked, and the leader's
rounds carry it on. Without ``[backups]`` enabled they are a 409 naming the setting; on a follower a
503 naming this engine as not the leader (nothing asked of the cloud, nothing recorded). The bodies are
what ``haven backups list --json`` prints (haven.cli.backups.record_json's fields).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette

from haven.api.auth import require_policy
from haven.api.context import ApiContext
from haven.api.errors import ApiError
from haven.api.paging import Page, page
from haven.backups.runner import newest_good
from haven.backups.serving import BackupService
from haven.domain.backups import BackupRecord, BackupState, RestorePurpose, RestoreRecord
from haven.domain.errors import NotFound, UserError
from haven.domain.ids import ServerId

STATE_KEY = "haven_backups"
BACKUPS_PATH = "/v1/haven/backups"
RESTORES_PATH = "/v1/haven/backups/restores"
RECOVERY_POINTS_PATH = "/v1/haven/recovery-points"
BACKUP_SORTABLE = ("created_at", "slot", "server_id", "server_name", "state", "completed_at")
POINT_SORTABLE = ("recovery_point", "server_id", "server_name", "age_s", "drilled_at")
Json = dict[str, Any]


class BackupNow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_id: str = Field(min_length=1, max_length=255, description="the server to back up now")


class RestoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    server_id: str = Field(min_length=1, max_length=255, description="the server the backup is of")
    at: datetime | None = Field(
        None, description="the newest good backup taken at or before this time (ISO 8601; no zone: UTC)"
    )
    as_new: str | None = Field(
        None, min_length=1, max_length=255, description="boot a new server of this name (absent: rebuild)"
    )
    networks: Literal["none"] | list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        None,
        max_length=32,
        description=(
            'with as_new: the networks (names or ids) the new server boots on, or "none" (no network); '
            "absent: the original server's networks (while it exists; else those recorded with the backup)"
        ),
    )


def attach_backups(app: object, service: BackupService | None) -> None:
    """Give the routes haven serve's backup service (None: backups are off in haven.toml).

    ``app`` is the API application (``uvicorn.Config.app``, typed loosely there).
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"backups attach to the API's Starlette application, not {type(app).__name__}")
    setattr(app.state, STATE_KEY, service)


def record_json(record: BackupRecord | RestoreRecord) -> Json:
    doc = dataclasses.asdict(record)
    return {k: (v.value if hasattr(v, "value") else v) for k, v in doc.items()}


def _service(request: Request) -> BackupService:
    service = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(service, BackupService):
        raise ApiError(
            HTTPStatus.CONFLICT,
            "Scheduled backups are not enabled on this server: set [backups] enabled = true in haven.toml "
            "and restart haven serve.",
        )
    return service


def _leading(ctx: ApiContext) -> None:
    """Backups and restores are asked of the cloud by the leader only: a follower refuses, changing
    nothing (its passes do not run, and its calls would race the leader's)."""
    if not ctx.leadership.is_leader():
        raise ApiError(
            HTTPStatus.SERVICE_UNAVAILABLE,
            f"This engine ({ctx.leadership.identity}) is not the leader: only the leader takes backups "
            "and restores. Send the request to the leader's API (GET /v1/haven/status on each engine "
            "shows is_leader), or retry once this engine leads.",
        )


def _bad(exc: UserError, status: HTTPStatus = HTTPStatus.BAD_REQUEST) -> ApiError:
    return ApiError(status, f"{exc.message} ({exc.hint})" if exc.hint else exc.message)


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(tags=["haven"], dependencies=[Depends(require_policy)])

    @routes.get(BACKUPS_PATH, summary="Backups, newest first: all, or one server's; by state")
    def list_backups(
        paging: Page,
        server: Annotated[str | None, Query(description="a server id")] = None,
        state: Annotated[
            str | None, Query(description=f"one of {', '.join(s.value for s in BackupState)}")
        ] = None,
    ) -> Json:
        if state is not None and state not in {s.value for s in BackupState}:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                f"Invalid input for field/attribute state. {state!r} is not one of "
                f"{', '.join(s.value for s in BackupState)}.",
            )
        records = ctx.store.backups_of(server) if server else ctx.store.backups_relevant(0.0)
        items = [record_json(r) for r in records if state is None or r.state.value == state]
        found = page(items, paging, BACKUP_SORTABLE, [("created_at", "desc")], uuid_key="id")
        return {"backups": found}

    @routes.post(
        BACKUPS_PATH,
        status_code=HTTPStatus.ACCEPTED,
        summary="Back a server up now, outside its schedule (admin); the backup is then in flight",
        responses={
            404: {"description": "no such server"},
            409: {"description": "one is in flight, or the cloud refused it"},
            503: {"description": "this engine is not the leader"},
        },
    )
    async def backup_now(body: BackupNow, request: Request) -> Json:
        service = _service(request)
        _leading(ctx)
        try:
            await service.port.get_target(ServerId(body.server_id))
        except NotFound:
            raise ApiError(
                HTTPStatus.NOT_FOUND,
                f"No server with id {body.server_id} found; GET {RECOVERY_POINTS_PATH} lists them.",
            ) from None
        try:
            record = await service.runner.backup_now(ServerId(body.server_id))
        except UserError as exc:  # one is in flight, or the cloud refused it (the record kept, failed)
            raise _bad(exc, HTTPStatus.CONFLICT) from None
        return {"backup": record_json(record)}

    @routes.post(
        RESTORES_PATH,
        status_code=HTTPStatus.ACCEPTED,
        summary="Restore a server from its newest good backup at a time: rebuilt in place or as a new server",
        responses={503: {"description": "this engine is not the leader"}},
    )
    async def restore(body: RestoreRequest, request: Request) -> Json:
        service = _service(request)
        _leading(ctx)
        at = body.at
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        try:
            networks = [] if body.networks == "none" else body.networks
            record = await service.restorer.restore(
                body.server_id, at.timestamp() if at is not None else None, body.as_new, networks
            )
        except UserError as exc:
            raise _bad(exc) from None
        return {"restore": record_json(record)}

    @routes.get(RESTORES_PATH, summary="Restores and restore drills, newest first")
    def list_restores(
        paging: Page, server: Annotated[str | None, Query(description="a server id")] = None
    ) -> Json:
        items = [record_json(r) for r in ctx.store.list_restores() if server is None or r.server_id == server]
        return {"restores": page(items, paging, ("created_at", "state"), [("created_at", "desc")], "id")}

    @routes.get(
        RECOVERY_POINTS_PATH,
        summary="Each backed-up server's recovery point (newest good backup) and its latest restore drill",
    )
    def recovery_points(
        paging: Page, server: Annotated[str | None, Query(description="a server id")] = None
    ) -> Json:
        now = ctx.clock.now()
        records = ctx.store.backups_of(server) if server else ctx.store.backups_relevant(0.0)
        by_server: dict[str, list[BackupRecord]] = {}
        for r in records:
            by_server.setdefault(r.server_id, []).append(r)
        drills: dict[str, RestoreRecord] = {}
        for d in ctx.store.list_restores():
            if d.purpose is RestorePurpose.DRILL and not d.state.in_flight:
                drills[d.server_id] = d  # oldest first: the last one stays
        items = []
        for server_id, mine in by_server.items():
            best = newest_good(mine)
            drill = drills.get(server_id)
            items.append({
                "id": server_id, "server_id": server_id, "server_name": mine[-1].server_name,
                "recovery_point": best.created_at if best else None, "backup_id": best.id if best else None,
                "age_s": now - best.created_at if best else None,
                "drilled_at": drill.created_at if drill else None,
                "drill_state": drill.state.value if drill else None,
                "drilled_recovery_point": drill.recovery_point if drill else None,
            })  # fmt: skip
        found = page(items, paging, POINT_SORTABLE, [("server_id", "asc")], uuid_key="id")
        return {"recovery_points": found}

    return routes
