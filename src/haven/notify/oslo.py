"""oslo.messaging, imported without its dependencies' deprecation warnings (used by haven.notify.rabbit).

Importing oslo.messaging imports oslo.service's default backend, which imports
eventlet, oslo_utils' eventletutils and oslo_service's eventlet_backdoor; each
warns on import that it is deprecated. haven uses none of them (its sends run in
plain threads); oslo.service's threading backend would need cotyledon, which is
not installed. pyproject's pytest filterwarnings names the same three.
"""

from __future__ import annotations

import warnings

EVENTLET_WARNINGS = (
    r"\s*Eventlet is deprecated",
    r"eventletutils module is deprecated",
    r"The 'oslo_service.eventlet_backdoor' module usage is deprecated",
)

with warnings.catch_warnings():
    for message in EVENTLET_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=Warning)
    import oslo_messaging  # type: ignore[import-untyped]

__all__ = ["oslo_messaging"]
