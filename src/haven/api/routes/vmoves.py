"""``/v1/notifications/{notification_id}/vmoves`` (microversion 1.3): one entry per VM evacuation.

Below 1.3 these paths do not exist (404, as Masakari answers for a method outside the
requested version). Only host failure notifications move VMs: any other type is a 400.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from haven.api.auth import require_admin
from haven.api.context import ApiContext
from haven.api.errors import ApiError
from haven.api.identity import same_uuid
from haven.api.microversion import VMOVES, APIVersion, api_version
from haven.api.paging import Page, page
from haven.api.workflow import vmoves
from haven.domain.errors import NotFound
from haven.domain.incidents import Notification, NotificationType

Json = dict[str, Any]
SORTABLE = frozenset(
    {
        "id",
        "uuid",
        "instance_uuid",
        "instance_name",
        "source_host",
        "dest_host",
        "start_time",
        "end_time",
        "status",
        "type",
        "created_at",
        "updated_at",
    }
)
DEFAULT_ORDER: tuple[tuple[str, str], ...] = ()  # the order the plan made them in


def _vmove_version(version: Annotated[APIVersion, Depends(api_version)]) -> None:
    if version < VMOVES:
        raise ApiError(HTTPStatus.NOT_FOUND, "The resource could not be found.")


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(
        prefix="/v1/notifications/{notification_id}/vmoves",
        tags=["vmoves"],
        dependencies=[Depends(require_admin), Depends(_vmove_version)],
    )

    def host_notification(notification_id: str) -> Notification:
        notification = ctx.find_notification(notification_id)
        if notification.type is not NotificationType.COMPUTE_HOST:
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                f"Notification {notification_id} is of type {notification.type.value}: "
                "only COMPUTE_HOST notifications move VMs.",
            )
        return notification

    @routes.get("", summary="List the VM moves of a host failure")
    def list_vmoves(
        notification_id: str,
        paging: Page,
        status: Annotated[str | None, Query()] = None,
        type: Annotated[str | None, Query()] = None,
    ) -> Json:
        notification = host_notification(notification_id)
        found = [
            move
            for move in vmoves(notification, ctx.store.list_steps(notification.id))
            if (status is None or move["status"] == status) and (type is None or move["type"] == type)
        ]
        return {"vmoves": page(found, paging, SORTABLE, DEFAULT_ORDER)}

    @routes.get("/{vmove_id}", summary="Show one VM move")
    def show_vmove(notification_id: str, vmove_id: str) -> Json:
        notification = host_notification(notification_id)
        for move in vmoves(notification, ctx.store.list_steps(notification.id)):
            if same_uuid(vmove_id, move["uuid"]):
                return {"vmove": move}
        raise NotFound(f"VM move {vmove_id} of notification {notification_id} could not be found.")

    return routes
