"""The engine's return path: hosts haven disabled come back into service once healthy again.

Owned by haven.service.engine.Engine: ``note`` hears every finished step (a host force_down or
disable_service by haven joins the path, whichever way it later comes back), ``run`` is called on
each detection pass while the engine acts. Only what haven did is undone: force_down is cleared,
and the service is enabled only if it was enabled before haven disabled it and the host is not a
reserved one. A host haven took out is on maintenance (haven.recovery.maintenance); with
``return_to_service = "masakari"`` it waits here until an operator clears on_maintenance, as
Masakari leaves a recovered host to its operators; with "automatic" haven returns it once it is
healthy and clears the flag itself (if haven set it). ``clear_incident_alerts`` is shared with
the engine's intake (a new incident makes the last one's alerts history).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from haven.cloud.base import Cloud
from haven.domain.clock import Clock
from haven.domain.errors import CloudError, NotFound
from haven.domain.events import EngineEvent, EventKind, EventSink
from haven.domain.ids import HostName
from haven.domain.incidents import AlertKind, SegmentHost, StepState
from haven.domain.settings import RecoverySettings
from haven.recovery.maintenance import last_haven_disable, maintenance_is_havens
from haven.recovery.workflows import DISABLE_SERVICE, FORCE_DOWN
from haven.store import Store

# Alerts about one recovery of a host; cleared when the host is back or a new incident opens.
INCIDENT_ALERTS = (AlertKind.FENCE_FAILED, AlertKind.UNPLACED, AlertKind.RECOVERY_FAILED)


def clear_incident_alerts(store: Store, host: HostName, now: float, epoch: int | None) -> None:
    for kind in INCIDENT_ALERTS:
        store.clear_alerts(now=now, kind=kind, host=host, epoch=epoch)


class HostReturn:
    """The hosts haven disabled and owes a return to service."""

    def __init__(
        self, cloud: Cloud, store: Store, clock: Clock, settings: RecoverySettings, emit: EventSink
    ) -> None:
        self._cloud, self._store, self._clock, self._settings = cloud, store, clock, settings
        self._emit = emit
        self._returning: set[HostName] = set()

    def load(self, members: Sequence[SegmentHost]) -> set[HostName]:
        """Hosts haven disabled (a host failure or a process failure) come back through this one
        path, which also clears force_down; returns those disabled for a process failure."""
        self._returning = {h.name for h in members if h.disabled_by_haven}
        process_failures: set[HostName] = set()
        for host in sorted(self._returning):
            last = last_haven_disable(self._store, host)
            if last is not None and last.kind == DISABLE_SERVICE:
                process_failures.add(host)
        return process_failures

    def note(self, event: EngineEvent) -> None:
        """Every host haven disables joins the return path, whichever way it later comes back."""
        detail = event.detail
        if (
            event.kind is EventKind.STEP_FINISHED
            and detail.get("kind") in (FORCE_DOWN, DISABLE_SERVICE)
            and detail.get("state") == StepState.DONE.value
            and event.host is not None
        ):
            self._returning.add(event.host)

    async def run(
        self,
        now: float,
        epoch: int | None,
        busy: Collection[HostName],
        is_healthy: Callable[[HostName], bool],
        is_acting: Callable[[], bool],
    ) -> None:
        """Return every healthy host haven owes a return that no open notification is about."""
        for host in sorted(self._returning):
            if not is_acting():
                return  # leadership lost mid-pass: no further effect
            if not is_healthy(host) or host in busy:
                continue  # cheap checks first: dead hosts wait here on every pass
            member = self._owed(host)
            if member is None:
                self._returning.discard(host)  # haven left it alone (say, an operator had disabled it)
                continue
            if member.on_maintenance and self._settings.return_to_service == "masakari":
                continue  # an operator ends the maintenance (Masakari's runbook); then haven returns it
            if epoch is not None:
                self._store.fence(epoch)  # a deposed leader must not touch the cloud either
            await self._return(host, now, epoch)

    async def _return(self, host: HostName, now: float, epoch: int | None) -> None:
        try:
            state = await self._cloud.get_host(host)
            if state.forced_down:
                await self._cloud.force_down(host, False)
                state = await self._cloud.get_host(host)
        except CloudError:
            # Nova did not answer, or refused (it keeps a host forced down until its restarted
            # compute has cleaned up its evacuations): look again next pass.
            return
        if not state.service_up:
            return  # nova-compute has not reported yet; look again next pass
        last = last_haven_disable(self._store, host)
        was_enabled = last is None or bool(last.detail.get("service_enabled_before", True))
        if was_enabled and not self._store.get_host(host).reserved:  # _owed found it just now
            await self._cloud.enable_service(host)
        automatic = self._settings.return_to_service == "automatic"
        ended = automatic and maintenance_is_havens(self._store, host)
        maintenance = {"on_maintenance": False} if ended else {}  # haven's own, and it ends it
        self._store.update_host(host, disabled_by_haven=False, epoch=epoch, **maintenance)
        clear_incident_alerts(self._store, host, now, epoch)
        self._returning.discard(host)
        detail = {"enabled": was_enabled, "maintenance_ended": ended}
        self._emit(EngineEvent(EventKind.HOST_RETURNED, now, host, detail=detail))

    def _owed(self, host: HostName) -> SegmentHost | None:
        """The host if haven still owes it a return (None: not, or no longer, in any segment)."""
        try:
            member = self._store.get_host(host)
        except NotFound:
            return None
        return member if member.disabled_by_haven else None
