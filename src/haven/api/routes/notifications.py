"""``/v1/notifications``: failure reports in (from masakari-monitors or people), and their progress out.

Create answers 202, as Masakari does, after these checks in Masakari's order: a host
name in no segment is a 400; a host on maintenance is a 409; an identical open
notification (the engine's ``submit`` returns None) is a 409. The notification itself
is opened by the engine through ``intake.submit``, on the event loop. Masakari's
``generated_time`` is validated but the engine stamps its own clock's time.
Show adds ``recovery_workflow_details`` from microversion 1.1, and (haven's extension, any
microversion) ``haven_recovery``: the mode it was opened in, who claimed it, haven's summary.
The claim, progress, finish and fail routes live in haven.api.routes.custom_recovery.
The list is filtered, ordered and paged in SQL (haven.store.notification_listing), as segments
and hosts are: ties go by uuid ascending, and a marker (uuid or integer id) must be in the
filtered list, else a 400.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from haven.api.auth import require_admin
from haven.api.context import ApiContext
from haven.api.errors import ApiError
from haven.api.identity import candidates, legacy_host_uuid
from haven.api.microversion import WORKFLOW_DETAILS, APIVersion, api_version
from haven.api.paging import Page, page_query, refuse_unknown_marker
from haven.api.schemas import NotificationCreate
from haven.api.views import haven_recovery_view, notification_view
from haven.api.workflow import workflow_details
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName
from haven.domain.incidents import Notification, NotificationStatus, NotificationType

Json = dict[str, Any]
Version = Annotated[APIVersion, Depends(api_version)]
# The API's sort keys, and the notification fields the store sorts by (the integer id is its number).
SORTABLE = {
    "id": "number",
    "notification_uuid": "id",
    "generated_time": "generated_at",
    **{key: key for key in ("type", "hostname", "source_host_uuid", "status", "created_at", "updated_at")},
}
# Masakari's default (created_at desc); Masakari then adds id desc, haven's ties go by uuid ascending.
DEFAULT_ORDER = (("created_at", "desc"),)


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return epoch_seconds(value)
    except ValueError as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, "Invalid generated-since value") from exc


def epoch_seconds(text: str) -> float:
    """An ISO 8601 time as epoch seconds; a time without a zone is UTC, as Masakari's are."""
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def shown(ctx: ApiContext, notification: Notification, version: APIVersion) -> Json:
    """A notification as show answers it (also after a claim, progress, finish or fail)."""
    uuids = ctx.host_uuids({notification.hostname})
    view = notification_view(notification, uuids.get(notification.hostname))
    view["haven_recovery"] = haven_recovery_view(notification)
    if version >= WORKFLOW_DETAILS:
        view["recovery_workflow_details"] = workflow_details(ctx.store.list_steps(notification.id))
    return view


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(
        prefix="/v1/notifications", tags=["notifications"], dependencies=[Depends(require_admin)]
    )

    @routes.get("", summary="List notifications")
    def list_notifications(
        paging: Page,
        status: Annotated[str | None, Query()] = None,
        type: Annotated[str | None, Query()] = None,
        source_host_uuid: Annotated[str | None, Query()] = None,
        generated_since: Annotated[str | None, Query(alias="generated-since")] = None,
    ) -> Json:
        since = _since(generated_since)
        if (status is not None and status not in set(NotificationStatus)) or (
            type is not None and type not in set(NotificationType)
        ):
            return {"notifications": []}  # Masakari filters on the value as it is: nothing matches
        query = page_query(paging, SORTABLE, DEFAULT_ORDER)
        with refuse_unknown_marker():
            found = ctx.store.list_notifications_page(
                query,
                statuses=None if status is None else [NotificationStatus(status)],
                type=None if type is None else NotificationType(type),
                generated_since=since,
                source_host_uuids=None if source_host_uuid is None else candidates(source_host_uuid),
                unheld_uuid=legacy_host_uuid,
            )
        return {"notifications": [notification_view(n, host_uuid) for n, host_uuid in found]}

    @routes.post("", status_code=HTTPStatus.ACCEPTED, summary="Report a failure")
    async def create_notification(body: NotificationCreate) -> Json:
        fields = body.notification
        try:
            host = ctx.store.get_host(HostName(fields.hostname))
        except NotFound as exc:
            raise ApiError(
                HTTPStatus.BAD_REQUEST, f"Host with name {fields.hostname} could not be found."
            ) from exc
        if host.on_maintenance:
            raise Conflict(
                f"Notification received from host {host.name} of type '{fields.type.value}' is ignored "
                "as the host is already under maintenance."
            )
        generated_at = epoch_seconds(fields.generated_time)  # already checked by the schema
        opened = ctx.intake.submit(fields.type, host.name, dict(fields.payload), generated_at)
        if opened is None:
            raise Conflict(
                f"Notification received from host {host.name} of type '{fields.type.value}' is duplicate."
            )
        return {"notification": notification_view(opened, host.uuid)}

    @routes.get("/{notification_id}", summary="Show a notification (with its recovery from 1.1)")
    def show_notification(notification_id: str, version: Version) -> Json:
        return {"notification": shown(ctx, ctx.find_notification(notification_id), version)}

    return routes
