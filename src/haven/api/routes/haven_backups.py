"""``/v1/haven/backups`` and ``/v1/haven/recovery-points``: scheduled backups over HTTP.

Not Masakari's: under ``/v1/haven/``. Reads are for readers and admins; taking a backup now and
restoring are for admins only (haven.api.policy). The reads come from the store (any engine, a
follower too); a backup now or a restore uses the BackupService ``haven serve`` attached
(``attach_backups``): without ``[backups]`` enabled they are a 409 naming the setting.
"""

from __future__ import annotations

from starlette.applications import Starlette

from haven.backups.serving import BackupService

STATE_KEY = "haven_backups"


def attach_backups(app: object, service: BackupService | None) -> None:
    """Give the routes haven serve's backup service (None: backups are off in haven.toml).

    ``app`` is the API application (``uvicorn.Config.app``, typed loosely there).
    """
    if not isinstance(app, Starlette):
        raise TypeError(f"backups attach to the API's Starlette application, not {type(app).__name__}")
    setattr(app.state, STATE_KEY, service)
