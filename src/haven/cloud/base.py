"""The Cloud protocol: everything the engine reads from or does to a cloud.

Drivers translate their own errors into haven.domain.errors at this boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from haven.domain.cloud import Host, Server, ServerGroup, VmState
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import HostLiveness


class Cloud(Protocol):
    async def list_hosts(self) -> Sequence[Host]: ...

    async def get_host(self, name: HostName) -> Host: ...

    async def list_servers(self, host: HostName | None = None) -> Sequence[Server]:
        """Servers on ``host``, or every server when ``host`` is None."""
        ...

    async def get_server(self, server_id: ServerId) -> Server: ...

    async def list_server_groups(self) -> Sequence[ServerGroup]: ...

    async def force_down(self, host: HostName, down: bool) -> None: ...

    async def disable_service(self, host: HostName, reason: str) -> None: ...

    async def enable_service(self, host: HostName) -> None: ...

    async def evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        """Ask the cloud to rebuild the server elsewhere; returns once accepted."""
        ...

    async def reset_state(self, server_id: ServerId, state: VmState) -> None: ...


class LivenessSource(Protocol):
    async def liveness_anomalies(self) -> Sequence[HostLiveness]:
        """Readings of every host where some channel is not plainly healthy.

        Healthy hosts are left out, so a detection pass costs O(anomalies).
        """
        ...
