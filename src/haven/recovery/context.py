"""Everything a step handler may touch, handed in explicitly."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from haven.cloud.base import Cloud
from haven.domain.errors import NotFound
from haven.domain.ids import HostName
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

    async def power_status(self, host: HostName) -> BmcPower:
        if host not in self.power_seen:
            self.power_seen[host] = await self.fencer.power_status(host)
        return self.power_seen[host]

    def update_member(self, host: HostName, **changes: object) -> None:
        """Record a change to a segment host; a host outside every segment has nothing to record."""
        with contextlib.suppress(NotFound):
            self.store.update_host(host, epoch=self.epoch, **changes)

    async def service_enabled_before(self, host: HostName) -> bool:
        """Was the compute service enabled before haven touched it? (A re-run sees haven's own mark.)"""
        state = await self.cloud.get_host(host)
        return state.service_enabled or state.disabled_reason.startswith(HAVEN_MARK)


HAVEN_MARK = "haven:"  # every disabled_reason haven writes starts so, to tell its own disables apart
