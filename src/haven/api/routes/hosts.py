"""``/v1/segments/{segment_id}/hosts``: the hosts of a failover segment.

Masakari: create answers 201, delete 204; a host name already in a segment is a 409;
changing or deleting a host while its segment is under recovery is a 409. A host is
addressed by its uuid (see haven.api.identity) and must belong to the segment in the
URL. Masakari also checks a new name against Nova's hypervisors; haven's API has no
cloud at hand and leaves that to the engine. Every change reloads membership.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from haven.api.auth import require_admin
from haven.api.context import ApiContext
from haven.api.microversion import APIVersion, api_version
from haven.api.paging import Page, page_query, refuse_unknown_marker
from haven.api.routes.segments import query_bool, refuse_under_recovery
from haven.api.schemas import HostCreate, HostUpdate, changes_of
from haven.api.views import host_view
from haven.domain.errors import Conflict
from haven.domain.ids import HostName
from haven.domain.incidents import SegmentHost

Json = dict[str, Any]
Version = Annotated[APIVersion, Depends(api_version)]
# The API's sort keys, and the host fields they sort by (the integer id is the stored number).
SORTABLE = {
    "id": "number",
    **{key: key for key in ("uuid", "name", "type", "control_attributes", "reserved", "on_maintenance")},
    "created_at": "created_at",
    "updated_at": "updated_at",
}
DEFAULT_ORDER = (("name", "asc"),)  # Masakari's is created_at desc: see haven.api.routes.segments


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(
        prefix="/v1/segments/{segment_id}/hosts", tags=["hosts"], dependencies=[Depends(require_admin)]
    )

    @routes.get("", summary="List the hosts of a segment")
    def list_hosts(
        segment_id: str,
        version: Version,
        paging: Page,
        name: Annotated[str | None, Query()] = None,
        type: Annotated[str | None, Query()] = None,
        control_attributes: Annotated[str | None, Query()] = None,
        on_maintenance: Annotated[str | None, Query(description="true/false, yes/no, on/off, 1/0")] = None,
        reserved: Annotated[str | None, Query(description="true/false, yes/no, on/off, 1/0")] = None,
    ) -> Json:
        given = {"name": name, "type": type, "control_attributes": control_attributes}
        filters: dict[str, object] = {key: value for key, value in given.items() if value is not None}
        for key, raw in (("on_maintenance", on_maintenance), ("reserved", reserved)):
            wanted = query_bool(key, raw)
            if wanted is not None:
                filters[key] = wanted
        segment = ctx.find_segment(segment_id)
        query = page_query(paging, SORTABLE, DEFAULT_ORDER)
        with refuse_unknown_marker():
            found = ctx.store.list_hosts_page(segment.id, query, **filters)
        return {"hosts": [host_view(h, segment, version) for h in found]}

    @routes.post("", status_code=HTTPStatus.CREATED, summary="Add a host to a segment")
    async def create_host(segment_id: str, body: HostCreate, version: Version) -> Json:
        segment = ctx.find_segment(segment_id)
        fields = body.host
        host = SegmentHost(
            name=HostName(fields.name),
            segment_id=segment.id,
            type=fields.type,
            control_attributes=fields.control_attributes,
            reserved=fields.reserved,
            on_maintenance=fields.on_maintenance,
        )
        try:
            added = ctx.store.add_host(host)
        except Conflict as exc:
            raise Conflict(f"Host with name {fields.name} already exists.") from exc
        ctx.intake.reload_membership()
        return {"host": host_view(added, segment, version)}

    @routes.get("/{host_id}", summary="Show a host")
    def show_host(segment_id: str, host_id: str, version: Version) -> Json:
        segment = ctx.find_segment(segment_id)
        return {"host": host_view(ctx.find_host(segment, host_id), segment, version)}

    @routes.put("/{host_id}", summary="Update a host")
    async def update_host(segment_id: str, host_id: str, body: HostUpdate, version: Version) -> Json:
        segment = ctx.find_segment(segment_id)
        host = ctx.find_host(segment, host_id)
        refuse_under_recovery(ctx, segment, "updated")
        changes = changes_of(body.host)
        try:
            updated = ctx.store.update_host(host.name, **changes)
        except Conflict as exc:
            raise Conflict(f"Host with name {changes.get('name')} already exists.") from exc
        ctx.intake.reload_membership()
        return {"host": host_view(updated, segment, version)}

    @routes.delete("/{host_id}", status_code=HTTPStatus.NO_CONTENT, summary="Remove a host from its segment")
    async def delete_host(segment_id: str, host_id: str) -> Response:
        segment = ctx.find_segment(segment_id)
        host = ctx.find_host(segment, host_id)
        refuse_under_recovery(ctx, segment, "deleted")
        ctx.store.delete_host(host.name)
        ctx.intake.reload_membership()
        return Response(status_code=HTTPStatus.NO_CONTENT)

    return routes
