"""Everything a step handler may touch, handed in explicitly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from haven.cloud.base import Cloud
from haven.domain.cloud import Server
from haven.domain.errors import NotFound
from haven.domain.ids import HostName, ServerId
from haven.domain.incidents import Notification, Step
from haven.domain.liveness import BmcPower
from haven.domain.settings import RecoverySettings
from haven.fencing.base import Fencer
from haven.recovery.targets import TargetBook
from haven.safety import Action, Answer, Decision
from haven.store import Store


class AskPolicy(Protocol):
    """haven.safety's answer for one step of a notification.

    ``waited_s``: how long the step has waited for an answer other than HOLD; ``bmc_answered_at``:
    for a fence retried after its BMC did not answer, when the BMC answered again.
    """

    def __call__(
        self, action: Action, host: HostName, waited_s: float = 0.0, bmc_answered_at: float | None = None
    ) -> Decision: ...


def _allow_nothing(
    action: Action, host: HostName, waited_s: float = 0.0, bmc_answered_at: float | None = None
) -> Decision:
    return Decision(Answer.HOLD, "no safety policy was given to this step")


def _persist_nowhere(step: Step, detail: Mapping[str, Any]) -> None:
    raise RuntimeError("no store to record an issued call in: refusing to make the call")


@dataclass(frozen=True, slots=True)
class StepContext:
    cloud: Cloud
    fencer: Fencer
    store: Store
    settings: RecoverySettings
    now: float
    notification: Notification
    host_is_healthy: Callable[[HostName], bool]
    targets: TargetBook
    epoch: int | None = None  # the leader's epoch: its writes outside the step's commits carry it too
    # haven.safety's answer for this notification: asked before every fence, evacuation and disable.
    authorize: AskPolicy = _allow_nothing
    # Commits a step's detail at once (before a call that is not idempotent: the *issued* marker).
    persist: Callable[[Step, Mapping[str, Any]], None] = _persist_nowhere
    # BMC readings made during this batch, so many evacuations off one host ask its BMC once.
    power_seen: dict[HostName, BmcPower] = field(default_factory=dict)
    # Nova's server list per host, read once for the whole batch: twenty evacuations off one host
    # (issuing, then verifying each tick) read one list or three, not twenty servers one by one.
    listed: dict[HostName, asyncio.Task[dict[ServerId, Server]]] = field(default_factory=dict)

    async def power_status(self, host: HostName) -> BmcPower:
        if host not in self.power_seen:
            self.power_seen[host] = await self.fencer.power_status(host)
        return self.power_seen[host]

    async def server(self, server_id: ServerId, hosts: Sequence[HostName | None]) -> Server:
        """The server as Nova lists it now on the first of ``hosts`` that holds it, else read alone.

        Each host's list is asked once per batch and shared by every step of the batch; a server on
        none of them (Nova's scheduler sent it elsewhere) is read by itself, so it is never missed.
        A listed server's ``group`` may be None (the lists are asked without groups).
        A NotFound from Nova (the server is gone) is raised as ``get_server`` raises it.
        """
        for host in dict.fromkeys(h for h in hosts if h is not None):
            if host not in self.listed:
                self.listed[host] = asyncio.ensure_future(self._servers_on(host))
            with contextlib.suppress(NotFound):  # a host Nova does not know lists nothing
                found = (await asyncio.shield(self.listed[host])).get(server_id)
                if found is not None:
                    return found
        return await self.cloud.get_server(server_id)

    async def _servers_on(self, host: HostName) -> dict[ServerId, Server]:
        # No step reading servers here looks at their group: a driver need not read the groups.
        return {s.id: s for s in await self.cloud.list_servers(host, groups=False)}

    def update_member(self, host: HostName, **changes: object) -> None:
        """Record a change to a segment host; a host outside every segment has nothing to record."""
        with contextlib.suppress(NotFound):
            self.store.update_host(host, epoch=self.epoch, **changes)

    async def service_enabled_before(self, host: HostName) -> bool:
        """Was the compute service enabled before haven touched it? (A re-run sees haven's own mark.)"""
        state = await self.cloud.get_host(host)
        return state.service_enabled or state.disabled_reason.startswith(HAVEN_MARK)


HAVEN_MARK = "haven:"  # every disabled_reason haven writes starts so, to tell its own disables apart
