"""The Cloud protocol: everything the engine reads from or does to a cloud.

Drivers translate their own errors into haven.domain.errors at this boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from haven.domain.cloud import Host, Server, ServerAction, ServerGroup, VmState
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import HostLiveness


class Cloud(Protocol):
    async def list_hosts(self) -> Sequence[Host]: ...

    async def get_host(self, name: HostName) -> Host: ...

    async def list_servers(self, host: HostName | None = None, *, groups: bool = True) -> Sequence[Server]:
        """Servers on ``host``, or every server when ``host`` is None.

        ``groups=False``: the caller needs no ``Server.group``; a driver may leave it None and spare
        the cloud the read it takes (Nova lists servers without their groups).
        """
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

    # Guest recovery (a VM crashed or its watchdog fired). Each returns once Nova accepted the
    # request; the effect shows later in the server's task_state, vm_state and power_state.

    async def stop_server(self, server_id: ServerId) -> None:
        """Nova's os-stop (allowed from active, error): power the guest off, vm_state stopped."""
        ...

    async def start_server(self, server_id: ServerId) -> None:
        """Nova's os-start (the server must be stopped): power the guest on, vm_state active."""
        ...

    async def reboot_server(self, server_id: ServerId) -> None:
        """Nova's reboot with type HARD (allowed from active, stopped, error, paused): power cycle."""
        ...

    async def server_actions(self, server_id: ServerId, since: float) -> Sequence[ServerAction]:
        """Nova's os-instance-actions of the server that started at or after ``since`` (epoch s).

        Steps read it before acting, so an action asked once (before a crash of the engine) is not
        asked again: a hard reboot, for one, leaves no other trace in the server's state.
        """
        ...


class LivenessSource(Protocol):
    async def liveness_anomalies(self) -> Sequence[HostLiveness]:
        """Readings of every host where some channel is not plainly healthy.

        Healthy hosts are left out, so a detection pass costs O(anomalies).
        """
        ...


class CloudProxy:
    """A Cloud that passes every call on to another; wrappers override only what they watch or guard.

    Used by the executor's leadership guard (haven.recovery.guard) and the drills' BMC witness
    (haven.drill.witness).
    """

    def __init__(self, cloud: Cloud) -> None:
        self._cloud = cloud

    async def list_hosts(self) -> Sequence[Host]:
        return await self._cloud.list_hosts()

    async def get_host(self, name: HostName) -> Host:
        return await self._cloud.get_host(name)

    async def list_servers(self, host: HostName | None = None, *, groups: bool = True) -> Sequence[Server]:
        return await self._cloud.list_servers(host, groups=groups)

    async def get_server(self, server_id: ServerId) -> Server:
        return await self._cloud.get_server(server_id)

    async def list_server_groups(self) -> Sequence[ServerGroup]:
        return await self._cloud.list_server_groups()

    async def server_actions(self, server_id: ServerId, since: float) -> Sequence[ServerAction]:
        return await self._cloud.server_actions(server_id, since)

    async def force_down(self, host: HostName, down: bool) -> None:
        await self._cloud.force_down(host, down)

    async def disable_service(self, host: HostName, reason: str) -> None:
        await self._cloud.disable_service(host, reason)

    async def enable_service(self, host: HostName) -> None:
        await self._cloud.enable_service(host)

    async def evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        await self._cloud.evacuate(server_id, target)

    async def reset_state(self, server_id: ServerId, state: VmState) -> None:
        await self._cloud.reset_state(server_id, state)

    async def stop_server(self, server_id: ServerId) -> None:
        await self._cloud.stop_server(server_id)

    async def start_server(self, server_id: ServerId) -> None:
        await self._cloud.start_server(server_id)

    async def reboot_server(self, server_id: ServerId) -> None:
        await self._cloud.reboot_server(server_id)
