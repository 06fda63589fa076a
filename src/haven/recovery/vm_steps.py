"""The step of a VM notification: is this VM left to its owner (``HA_Mode=notify``)?

Called by the executor (and by the dry-run step). haven has no guest recovery of its
own yet, so the answer decides only whether the notification is handed to the VM's
owner, to be claimed through the API, or ignored.
"""

from __future__ import annotations

from typing import Any

from haven.domain.cloud import HA_MODE_KEY, HA_MODE_NOTIFY
from haven.domain.errors import NotFound
from haven.domain.ids import ServerId
from haven.domain.incidents import Notification, Step
from haven.recovery.context import StepContext
from haven.recovery.outcome import Outcome, done

OWNER_KEY = "left_to_owner"


async def owner_of(notification: Notification, ctx: StepContext) -> dict[str, Any]:
    """What the cloud says of the notification's VM: its id and name, and whether its owner recovers it."""
    server_id = ServerId(str(notification.payload.get("instance_uuid", "")))
    try:
        server = await ctx.cloud.get_server(server_id)
    except NotFound:
        return {"server": server_id, "name": "", OWNER_KEY: False, "note": "the VM does not exist"}
    return {"server": server.id, "name": server.name, OWNER_KEY: server.left_to_owner}


async def check_owner(step: Step, ctx: StepContext) -> Outcome:
    found = await owner_of(ctx.notification, ctx)
    if found[OWNER_KEY]:
        found["note"] = f"left to its owner ({HA_MODE_KEY}={HA_MODE_NOTIFY}): haven does not act on it"
    else:
        found.setdefault("note", "haven has no guest recovery yet: the notification is ignored")
    return done(found)
