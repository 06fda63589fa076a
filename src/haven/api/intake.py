"""What the API needs from the engine: a way in for notifications, and word that segments changed.

The running engine (``haven.service.engine.Engine``) satisfies this protocol; the API never
reaches further into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from haven.domain.ids import HostName
from haven.domain.incidents import Notification, NotificationType
from haven.recovery.custom import CustomRecovery


class NotificationIntake(Protocol):
    # Custom recovery: external systems claim notify-mode notifications and report on them.
    custom: CustomRecovery

    def submit(
        self,
        type_: NotificationType,
        host: HostName,
        payload: Mapping[str, Any],
        generated_at: float | None = None,
    ) -> Notification | None:
        """Open a notification; None when an identical one is already open (a duplicate).

        ``generated_at`` is when the monitor saw the failure (epoch seconds); default: now.
        """
        ...

    def reload_membership(self) -> None:
        """Segments or their hosts changed in the store: re-read which host belongs where."""
        ...
