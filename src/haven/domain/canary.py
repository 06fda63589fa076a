"""What a canary's cloud port says about a server: shared by haven.canary and its drivers (haven.cloud).

Pure: frozen dataclasses only.
"""

from __future__ import annotations

from dataclasses import dataclass

RUNNING = 1  # Nova's power_state for a running guest


@dataclass(frozen=True, slots=True)
class ServerView:
    """What the cloud says about a canary server at one poll."""

    status: str  # BUILD, ACTIVE, ERROR, ...
    task_state: str | None = None
    host: str | None = None
    power_state: int = 0
    fault: str = ""  # Nova's fault message, with the exception's name when known


@dataclass(frozen=True, slots=True)
class Found:
    """A canary server found in the cloud (by name prefix and tag), for orphan cleaning."""

    id: str
    name: str
    tag: str  # its CANARY_TAG metadata value
