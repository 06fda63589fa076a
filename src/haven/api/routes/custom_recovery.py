"""Custom recovery (haven's extension): an external system claims a notification, reports, ends it.

    POST /v1/notifications/{id}/claim     {"claim":    {"owner": "...", "message": "..."}}
    POST /v1/notifications/{id}/progress  {"progress": {"owner": "...", "message": "...", "percentage": 40}}
    POST /v1/notifications/{id}/finish    {"finish":   {"owner": "...", "message": "..."}}
    POST /v1/notifications/{id}/fail      {"fail":     {"owner": "...", "reason": "..."}}

Admin only. Each answers 200 with the notification as show does. Only notifications
left to others can be claimed: opened in a notify-mode segment, or about a VM whose
metadata says ``HA_Mode=notify``; anything else, a notification already claimed by
another owner, or one no longer open is a 409. Progress, finish and fail need the
claim's owner. Unknown id 404, bad body 400 naming the field. The work is done by the
engine's ``custom`` (haven.recovery.custom), which also tells the event sink.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from haven.api.auth import require_admin
from haven.api.context import ApiContext
from haven.api.microversion import APIVersion, api_version
from haven.api.routes.notifications import shown
from haven.api.schemas import ClaimBody, FailBody, FinishBody, ProgressBody

Json = dict[str, Any]
Version = Annotated[APIVersion, Depends(api_version)]


def router(ctx: ApiContext) -> APIRouter:
    routes = APIRouter(
        prefix="/v1/notifications", tags=["custom recovery"], dependencies=[Depends(require_admin)]
    )

    @routes.post("/{notification_id}/claim", summary="Claim a notify-mode notification (haven)")
    async def claim(notification_id: str, body: ClaimBody, version: Version) -> Json:
        target = ctx.find_notification(notification_id)
        claimed = ctx.intake.custom.claim(target.id, body.claim.owner, body.claim.message)
        return {"notification": shown(ctx, claimed, version)}

    @routes.post("/{notification_id}/progress", summary="Report progress on a claimed notification (haven)")
    async def progress(notification_id: str, body: ProgressBody, version: Version) -> Json:
        target = ctx.find_notification(notification_id)
        fields = body.progress
        noted = ctx.intake.custom.progress(target.id, fields.owner, fields.message, fields.percentage)
        return {"notification": shown(ctx, noted, version)}

    @routes.post("/{notification_id}/finish", summary="Finish a claimed notification (haven)")
    async def finish(notification_id: str, body: FinishBody, version: Version) -> Json:
        target = ctx.find_notification(notification_id)
        finished = ctx.intake.custom.finish(target.id, body.finish.owner, body.finish.message)
        return {"notification": shown(ctx, finished, version)}

    @routes.post("/{notification_id}/fail", summary="Fail a claimed notification, with a reason (haven)")
    async def fail(notification_id: str, body: FailBody, version: Version) -> Json:
        target = ctx.find_notification(notification_id)
        failed = ctx.intake.custom.fail(target.id, body.fail.owner, body.fail.reason)
        return {"notification": shown(ctx, failed, version)}

    return routes
