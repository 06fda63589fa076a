"""Custom recovery: an external system claims a notify-mode notification, reports progress, ends it.

Called by the API (``/v1/notifications/{id}/claim|progress|finish|fail``) through the
engine, which owns one ``CustomRecovery`` and hands it its event sink, so webhooks and
bus publishers hear of claims and progress like any other engine event. A notification
can be claimed when it is still open and was left to others: its segment was in notify
mode when it opened, or the VM it is about carries ``HA_Mode=notify``. Once finished or
failed it is terminal: the engine neither resumes it nor counts it against a new report.
Every call is kept in the notification's audit trail (steps of kind ``external``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from haven.domain.clock import Clock
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.domain.ids import NotificationId
from haven.domain.incidents import RECOVERY_SUMMARY_KEY, Notification, NotificationStatus
from haven.store import Store

CLAIM, PROGRESS, FINISH, FAIL = "claim", "progress", "finish", "fail"


class CustomRecovery:
    def __init__(self, store: Store, clock: Clock, emit: EventSink) -> None:
        self._store, self._clock, self._emit = store, clock, emit

    def claim(self, notification_id: NotificationId, owner: str, message: str = "") -> Notification:
        """``owner`` takes the notification (status running); Conflict if someone else holds it."""
        entry = {"event": CLAIM, "message": message or f"claimed by {owner}"}
        claimed = self._store.claim_notification(notification_id, owner, entry, now=self._clock.now())
        self._tell(EventKind.NOTIFICATION_CLAIMED, claimed, {"owner": owner, "message": entry["message"]})
        return claimed

    def progress(
        self, notification_id: NotificationId, owner: str, message: str, percentage: float | None = None
    ) -> Notification:
        entry: dict[str, Any] = {"event": PROGRESS, "message": message}
        if percentage is not None:
            entry["percentage"] = percentage
        noted = self._store.report_on_claim(notification_id, owner, entry, now=self._clock.now())
        self._tell(EventKind.NOTIFICATION_PROGRESS, noted, {"owner": owner, **entry})
        return noted

    def finish(self, notification_id: NotificationId, owner: str, message: str = "") -> Notification:
        entry = {"event": FINISH, "message": message or f"recovered by {owner}", "percentage": 100.0}
        return self._close(notification_id, owner, entry, NotificationStatus.FINISHED)

    def fail(self, notification_id: NotificationId, owner: str, reason: str) -> Notification:
        entry = {"event": FAIL, "message": reason}
        return self._close(notification_id, owner, entry, NotificationStatus.FAILED)

    def _close(
        self,
        notification_id: NotificationId,
        owner: str,
        entry: Mapping[str, Any],
        status: NotificationStatus,
    ) -> Notification:
        current = self._store.get_notification(notification_id)
        summary = dict(current.payload.get(RECOVERY_SUMMARY_KEY) or {})
        summary["external"] = {"owner": owner, "outcome": status.value, "message": entry["message"]}
        payload = {**current.payload, RECOVERY_SUMMARY_KEY: summary}
        closed = self._store.report_on_claim(
            notification_id, owner, entry, status=status, payload=payload, now=self._clock.now()
        )
        detail = {"status": status.value, "owner": owner, "message": entry["message"], "external": True}
        self._tell(EventKind.NOTIFICATION_FINISHED, closed, detail)
        return closed

    def _tell(self, kind: EventKind, notification: Notification, detail: Mapping[str, Any]) -> None:
        self._emit(
            EngineEvent(
                kind,
                self._clock.now(),
                notification.hostname,
                notification.segment_id,
                notification.id,
                detail,
            )
        )
