"""``/v1/segments``: failover segments (list, create, show, update, delete).

Masakari: create answers 201, delete 204; a duplicate name is a 409; changing or
deleting a segment while one of its notifications is new, running or in error is a
409. ``enabled`` exists from microversion 1.2. Every change is followed by
``intake.reload_membership()`` so the engine sees the new membership at once.

haven's extension ``haven_mode`` (automatic, notify, dry_run; any microversion) is
shown on every segment and may be set on create and update. Changing only the mode is
allowed while a recovery runs in the segment: a notification keeps the mode it was
opened in, so the change applies to failures reported from then on.
"""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from haven.api.auth import require_admin
from haven.api.context import ApiContext
from haven.api.errors import ApiError
from haven.api.microversion import SEGMENT_ENABLED, APIVersion, api_version
from haven.api.paging import Page, page_query, refuse_unknown_marker
from haven.api.schemas import SegmentCreate, SegmentUpdate, changes_of, parse_bool
from haven.api.views import segment_view
from haven.domain.errors import Conflict
from haven.domain.ids import SegmentId
from haven.domain.incidents import Segment, SegmentMode

Json = dict[str, Any]
Version = Annotated[APIVersion, Depends(api_version)]
# The API's sort keys, and the segment fields they sort by (the integer id is the stored number).
SORTABLE = {
    "id": "number",
    "uuid": "id",
    **{key: key for key in ("name", "description", "recovery_method", "service_type", "enabled")},
    "created_at": "created_at",
    "updated_at": "updated_at",
}
# Masakari's default is created_at desc; haven's stays by name, as before segments kept their
# creation time (those made together at first start share one).
DEFAULT_ORDER = (("name", "asc"),)


def query_bool(field: str, value: str | None) -> bool | None:
    if value is None:
        return None
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"Invalid value for {field}: {exc}") from exc


def refuse_enabled_before_1_2(sent: dict[str, Any], version: APIVersion) -> None:
    if "enabled" in sent and version < SEGMENT_ENABLED:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            "Invalid input for field/attribute segment.enabled. "
            f"Additional properties are not allowed in microversion {version} (enabled needs 1.2)",
        )


def refuse_under_recovery(ctx: ApiContext, segment: Segment, action: str) -> None:
    busy = ctx.recoveries_in(segment)
    if busy:
        raise Conflict(
            f"Failover segment {segment.name} can't be {action} as it is in-use to process "
            f"notifications ({', '.join(busy[:5])})."
        )


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(prefix="/v1/segments", tags=["segments"], dependencies=[Depends(require_admin)])

    @routes.get("", summary="List failover segments")
    def list_segments(
        version: Version,
        paging: Page,
        recovery_method: Annotated[str | None, Query()] = None,
        service_type: Annotated[str | None, Query()] = None,
        enabled: Annotated[str | None, Query(description="true/false, yes/no, on/off, 1/0")] = None,
    ) -> Json:
        filters: dict[str, object] = {}
        wanted_enabled = query_bool("enabled", enabled)
        if wanted_enabled is not None:
            filters["enabled"] = wanted_enabled
        if recovery_method is not None:
            filters["recovery_method"] = recovery_method
        if service_type is not None:
            filters["service_type"] = service_type
        query = page_query(paging, SORTABLE, DEFAULT_ORDER)
        with refuse_unknown_marker():
            found = ctx.store.list_segments_page(query, **filters)
        return {"segments": [segment_view(s, version) for s in found]}

    @routes.post("", status_code=HTTPStatus.CREATED, summary="Create a failover segment")
    async def create_segment(body: SegmentCreate, version: Version) -> Json:
        fields = body.segment
        refuse_enabled_before_1_2(changes_of(fields), version)
        segment = Segment(
            id=SegmentId(uuid.uuid4().hex),
            name=fields.name,
            recovery_method=fields.recovery_method,
            service_type=fields.service_type,
            enabled=True if fields.enabled is None else fields.enabled,
            description=fields.description or "",
            mode=fields.haven_mode or SegmentMode.AUTOMATIC,
        )
        try:
            created = ctx.store.create_segment(segment)
        except Conflict as exc:
            raise Conflict(f"Failover segment with name {fields.name} already exists.") from exc
        ctx.intake.reload_membership()
        return {"segment": segment_view(created, version)}

    @routes.get("/{segment_id}", summary="Show a failover segment")
    def show_segment(segment_id: str, version: Version) -> Json:
        return {"segment": segment_view(ctx.find_segment(segment_id), version)}

    @routes.put("/{segment_id}", summary="Update a failover segment")
    async def update_segment(segment_id: str, body: SegmentUpdate, version: Version) -> Json:
        changes = changes_of(body.segment)
        refuse_enabled_before_1_2(changes, version)
        segment = ctx.find_segment(segment_id)
        if set(changes) - {"haven_mode"}:  # a mode change alone affects only failures reported later
            refuse_under_recovery(ctx, segment, "updated")
        if "haven_mode" in changes:
            changes["mode"] = changes.pop("haven_mode")
        if "description" in changes:
            changes["description"] = changes["description"] or ""
        try:
            updated = ctx.store.update_segment(segment.id, **changes)
        except Conflict as exc:
            raise Conflict(f"Failover segment with name {changes.get('name')} already exists.") from exc
        ctx.intake.reload_membership()
        return {"segment": segment_view(updated, version)}

    @routes.delete("/{segment_id}", status_code=HTTPStatus.NO_CONTENT, summary="Delete a failover segment")
    async def delete_segment(segment_id: str) -> Response:
        segment = ctx.find_segment(segment_id)
        refuse_under_recovery(ctx, segment, "deleted")
        ctx.store.delete_segment(segment.id)  # the store refuses too, should a recovery start meanwhile
        ctx.intake.reload_membership()
        return Response(status_code=HTTPStatus.NO_CONTENT)

    return routes
