"""Everything a step handler may touch, handed in explicitly."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass, field

from haven.cloud.base import Cloud
from haven.domain.errors import NotFound
from haven.domain.ids import HostName
from haven.domain.incidents import Notification
from haven.domain.settings import RecoverySettings
from haven.fencing.base import Fencer
from haven.store import Store


@dataclass(frozen=True, slots=True)
class Claim:
    vcpus: int = 0
    ram_mb: int = 0
    disk_gb: int = 0

    def __add__(self, other: Claim) -> Claim:
        return Claim(self.vcpus + other.vcpus, self.ram_mb + other.ram_mb, self.disk_gb + other.disk_gb)


@dataclass(frozen=True, slots=True)
class StepContext:
    cloud: Cloud
    fencer: Fencer
    store: Store
    settings: RecoverySettings
    now: float
    notification: Notification
    host_is_healthy: Callable[[HostName], bool]
    # Resources that planned evacuations will take on each target but have not been issued yet,
    # so that plans made side by side (a rack's hosts) do not all pick the same emptiest hosts.
    pending_claims: Mapping[HostName, Claim] = field(default_factory=dict)

    def update_member(self, host: HostName, **changes: object) -> None:
        """Record a change to a segment host; a host outside every segment has nothing to record."""
        with contextlib.suppress(NotFound):
            self.store.update_host(host, **changes)
