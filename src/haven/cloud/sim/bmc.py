"""The simulated hosts' BMCs: power status and power requests, and their faults.

A mixin of SimCloud (kept apart so each module has one job). SimFencer calls the
status and the requests; drills and the fault explorer make a BMC unreachable, slow
(a power-off applied late) or stale (answering the power state of a while ago).

What no BMC fault here does: invent power OFF for a host that was never off. A BMC
that lies so cannot be defended against by anyone who trusts a BMC (fencing is the
BMC's word that the host is off), so the simulator does not offer it. A stale BMC
answers only states the host really had, a little late.
"""

from __future__ import annotations

from collections.abc import Callable

from haven.cloud.sim.state import SimHost
from haven.cloud.sim.timings import SimTimings
from haven.domain.clock import Clock
from haven.domain.errors import TemporaryError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower


class SimBmcs:
    """BMC status, requests and faults; SimCloud provides the state these declare."""

    clock: Clock
    timings: SimTimings

    # Provided by SimCloud.
    def _catch_up(self) -> None:
        raise NotImplementedError

    def _at(self, when: float, action: Callable[[], None]) -> None:
        raise NotImplementedError

    def _host(self, name: HostName) -> SimHost:
        raise NotImplementedError

    def _power_on(self, h: SimHost) -> None:
        raise NotImplementedError

    def _power_off(self, h: SimHost, by_fault: bool) -> None:
        raise NotImplementedError

    # ---- used by SimFencer ------------------------------------------------------------------

    def bmc_power_state(self, host: HostName) -> BmcPower:
        h = self._host(host)
        if not self._bmc_answers(h):
            return BmcPower.UNKNOWN
        powered = _powered_at(h, self.clock.now() - h.bmc_stale_for_s) if h.bmc_stale_for_s > 0 else h.powered
        return BmcPower.ON if powered else BmcPower.OFF

    def bmc_request_power(self, host: HostName, on: bool) -> None:
        self._catch_up()
        h = self._host(host)
        if not self._bmc_answers(h):
            raise TemporaryError(f"BMC of {host} did not answer", delay=1.0)
        action = (lambda: self._power_on(h)) if on else (lambda: self._power_off(h, by_fault=False))
        delay = h.bmc_apply_delay_s if h.bmc_apply_delay_s is not None else self.timings.bmc_power_off_s
        self._at(self.clock.now() + delay, action)

    # ---- faults (used by drills and the explorer) ---------------------------------------------

    def set_bmc(
        self,
        host: HostName,
        reachable: bool = True,
        apply_delay_s: float | None = None,
        stale_for_s: float = 0.0,
    ) -> None:
        """The BMC's faults, all at once (the defaults undo them).

        ``reachable=False``: requests raise TemporaryError and the status is UNKNOWN. ``apply_delay_s``:
        a slow BMC accepts a request and applies it that long after (instead of the usual
        ``timings.bmc_power_off_s``). ``stale_for_s``: the status answers the power state the host had
        that many seconds ago (never a state it did not have; see the module docstring).
        """
        self._catch_up()
        h = self._host(host)
        h.bmc_reachable, h.bmc_apply_delay_s, h.bmc_stale_for_s = reachable, apply_delay_s, stale_for_s

    # ---- internals ------------------------------------------------------------------------------

    @staticmethod
    def _bmc_answers(h: SimHost) -> bool:
        return h.bmc_reachable and (not h.observer_cut or h.observer_reaches_bmc)

    def _note_power(self, h: SimHost) -> None:
        """Keep the host's power history, for a stale BMC's answers."""
        h.power_changes.append((self.clock.now(), h.powered))


def _powered_at(h: SimHost, when: float) -> bool:
    """Whether the host was powered at ``when`` (it was as it is now before any recorded change)."""
    state = None
    for at, powered in h.power_changes:
        if at > when:
            if state is None:
                state = not powered  # before its first change, the host was the other way
            break
        state = powered
    return h.powered if state is None else state
