"""Liveness on a real cloud: the agents' channels (etcd leases), Nova's service state and the BMCs.

Who calls it: ``haven serve --cloud NAME`` (haven.cli.clouds) and the drills on a real cloud, both
through the one entry point::

    async with open_real_liveness(config, cloud, fencer) as liveness:
        engine = Engine(cloud, liveness, fencer, ...)   # liveness.liveness_anomalies() each pass

``config`` is the HavenConfig (``[coordination] url`` / ``--coordination``, ``[liveness]``),
``cloud`` the OpenStack driver (anything with ``compute_service_states()``), ``fencer`` the
engine's Fencer. With a coordination URL, a ``HostLeaseView`` mirrors every agent's heartbeat
leases in a background task owned by the context (cancelled, and its etcd client closed, on
exit); without one the source is Nova's service state alone, exactly as before.

What one pass reads (``liveness_anomalies``; the detector, haven.detection, judges):
- Nova's service list (one request, as before) and the lease view (in memory, no I/O).
- A host whose agent beats on the management channel is alive. If Nova nevertheless says its
  nova-compute is down (and haven did not force it down), and the agent has been beating for
  ``process_grace_s`` (a host that just came back, its agent beating within seconds, needs a while
  for nova-compute to start and report), it is reported with ``failed_processes={"nova-compute"}``:
  the engine's PROCESS path (disable with a reason, no evacuation, enable again once the service
  reports up). The agent's own PROCESS notification (through the API, within its
  ``process_interval_s``) reports the same failure sooner; the engine drops a duplicate while the
  first is open, and disabling (or enabling) a service twice changes nothing.
- A host whose management lease vanished is silent: its BMC is read (``fencer.power_status``,
  at most ``bmc_concurrency`` at once, ``bmc_timeout_s`` each; no answer -> ``BmcPower.UNKNOWN``),
  and so the BMC is read only for silent hosts: a pass costs O(anomalies) requests.
- A host whose agent never beat while the view ran has ``agent_seen`` None ("not configured"):
  when Nova says its nova-compute is down, its BMC is read, and the detector declares it dead only
  if the BMC reports power off (Nova's word alone cannot tell a hung host from a crashed
  nova-compute, and fencing a live host is the worse mistake).

Two clocks: Nova stamps ``updated_at`` with its own clock. Every reading carries ``nova_now``,
Nova's clock when it answered the service list (``ComputeServiceState.nova_now``, from the answer's
HTTP ``Date``), so the detector judges a report's age in Nova's own time, whatever the skew
between Nova's clock and haven's. ``Date`` has whole seconds, rounded down: an age comes out at
most 1 s younger, never older, so the rounding cannot make a live host look dead (and the
detector's grace, seconds, dwarfs it). Without a ``Date``, ``nova_now`` is None and the detector
compares ``updated_at`` with haven's clock, as before.

When did a vanished lease last beat? etcd deletes a lease's key no earlier than its TTL after
the last refresh, so the last heartbeat was at most ``vanished - ttl``; the first heartbeat
missed was at most one ``beat_interval_s`` later. That moment is the channel's ``seen`` time:
a dead host is confirmed a grace period after its first missed beat, instead of after Nova's
``service_down_time``, and a nova-compute report before its power loss never counts as "later".
(An agent stopped cleanly revokes its lease at once; its silence then looks a TTL older than it
is, which matters only if its BMC also reports power off or Nova also says down.)

The observer problem: while the lease view is not in sync with etcd (etcd unreachable, or
re-syncing after a restart), lease silence proves nothing. Every host is then judged as if it had
no agent (Nova alone, as before the agent existed) until the view is in sync again; nothing is
declared dead because a lease went quiet while etcd could not be watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from haven.coordination import EtcdClient, parse_etcd_url
from haven.coordination.leases import ChannelHeartbeat, HostLeaseView
from haven.domain.errors import HavenError
from haven.domain.ids import HostName
from haven.domain.liveness import BmcPower, ComputeServiceState, HostLiveness
from haven.domain.waiting import within
from haven.fencing.base import Fencer
from haven.service.config import HavenConfig, LivenessConfig

log = logging.getLogger("haven.liveness")

NOVA_COMPUTE = "nova-compute"


class NovaServices(Protocol):
    """What the source needs of the cloud driver (haven.cloud.openstack.OpenStackCloud has it).

    Every state of one answer carries the same ``nova_now`` (Nova's clock when it answered; None
    when unknown) besides ``updated_at`` (Nova's clock too).
    """

    async def compute_service_states(self) -> Sequence[ComputeServiceState]: ...


class LeaseReadings(Protocol):
    """What the source needs of haven.coordination.leases.HostLeaseView (a fake in unit tests)."""

    @property
    def synced(self) -> bool: ...

    def snapshot(self) -> dict[str, dict[str, ChannelHeartbeat]]: ...


@dataclass(frozen=True, slots=True)
class AgentChannels:
    """Which lease channels count: the management network's, and optionally a second network's."""

    management: str = "management"
    second: str | None = None


def channel_seen(
    beat: ChannelHeartbeat | None, now: float, synced: bool, beat_interval_s: float
) -> float | None:
    """When the channel was last known to beat: now while its lease lives, else its first missed beat."""
    if beat is None:
        return None
    if beat.alive:
        return now if synced else beat.last_heartbeat
    return beat.last_heartbeat - beat.ttl_s + beat_interval_s


def combine(
    services: Sequence[ComputeServiceState],
    agents: Mapping[str, Mapping[str, ChannelHeartbeat]],
    synced: bool,
    now: float,
    channels: AgentChannels,
    beat_interval_s: float,
    process_grace_s: float = 0.0,
    nova_overdue_s: float | None = None,
) -> tuple[list[HostLiveness], list[HostName]]:
    """The pure part of a pass: readings (BMC still ON) and the silent hosts whose BMC must be read.

    ``agents`` is the lease view's snapshot; ``synced`` False means it cannot vouch for anything,
    so every host is then judged by Nova alone. ``now`` is haven's clock; every reading also
    carries its service's ``nova_now`` (Nova's clock), so ``nova_updated_at`` is judged in Nova's.
    With ``nova_overdue_s``, a host whose agent beats but whose nova-compute has not reported for
    that long is news too (before Nova counts it down): reports lost for several such hosts at once
    tell the detector that Nova's silence about a powered host is no evidence (the control plane).
    """
    nova = {s.host: s for s in services}
    readings: list[HostLiveness] = []
    silent: list[HostName] = []
    for host in sorted(nova):  # an agent of a host Nova does not know is no host of this cloud
        service = nova[host]
        beats = agents.get(host, {}) if synced else {}
        mgmt, second = beats.get(channels.management), beats.get(channels.second or "")
        nova_up, nova_at = service.reporting, service.updated_at
        if mgmt is None and second is None:
            if not nova_up:  # no agent: Nova and the BMC (dead only once the BMC reports power off)
                readings.append(HostLiveness(host, None, nova_up=False, nova_updated_at=nova_at,
                                             bmc=BmcPower.UNKNOWN, nova_now=service.nova_now,
                                             nova_time_slack_s=service.nova_time_slack_s))  # fmt: skip
                silent.append(host)
            continue
        agent_seen = channel_seen(mgmt, now, synced, beat_interval_s)
        second_seen = channel_seen(second, now, synced, beat_interval_s)
        mgmt_alive = mgmt is not None and mgmt.alive
        failed: frozenset[str] = frozenset()
        settled = mgmt is not None and (mgmt.alive_since is None or now - mgmt.alive_since >= process_grace_s)
        if mgmt_alive and settled and not nova_up and not service.forced_down:
            failed = frozenset({NOVA_COMPUTE})  # the host beats, its nova-compute does not report
        elif mgmt_alive and not _overdue(service, now, nova_overdue_s):
            continue  # plainly alive (or just back, or forced down by haven and on its way back): not news
        reading = HostLiveness(host, agent_seen, second_seen, nova_up=nova_up, nova_updated_at=nova_at,
                               bmc=BmcPower.ON, failed_processes=failed,
                               nova_now=service.nova_now,
                               nova_time_slack_s=service.nova_time_slack_s)  # fmt: skip
        readings.append(reading)
        if not mgmt_alive and not (second is not None and second.alive):
            silent.append(host)
    return readings, silent


def _overdue(service: ComputeServiceState, now: float, after_s: float | None) -> bool:
    """Whether the service's last report is older than ``after_s``, on Nova's own clock."""
    if after_s is None or service.updated_at is None or service.forced_down:
        return False
    nova_now = service.nova_now if service.nova_now is not None else now
    return nova_now - service.updated_at > after_s


class RealCloudLiveness:
    """A LivenessSource: Nova's service state, the agents' leases (when a view is given) and the BMCs."""

    def __init__(
        self,
        nova: NovaServices,
        fencer: Fencer,
        view: LeaseReadings | None = None,
        settings: LivenessConfig | None = None,
        beat_interval_s: float = 1.0,
        wall_clock: Callable[[], float] = time.time,
        nova_overdue_s: float | None = None,
    ) -> None:
        """``nova_overdue_s``: a report older than this (Nova's report interval plus the grace) is late."""
        self._nova, self._fencer, self._view = nova, fencer, view
        self._nova_overdue_s = nova_overdue_s
        self.settings = settings or LivenessConfig()
        self._channels = AgentChannels(self.settings.management_channel, self.settings.second_channel or None)
        self._beat_interval_s = beat_interval_s
        self._clock = wall_clock
        self._bmc_slots = asyncio.Semaphore(self.settings.bmc_concurrency)
        self._was_synced: bool | None = None  # for logging the changes only

    @property
    def view(self) -> LeaseReadings | None:
        return self._view

    def heartbeats(self) -> dict[str, dict[str, ChannelHeartbeat]]:
        """Every agent's channels and last heartbeat (empty without coordination), for display."""
        return self._view.snapshot() if self._view is not None else {}

    async def liveness_anomalies(self) -> Sequence[HostLiveness]:
        services = await self._nova.compute_service_states()  # a CloudError: the engine looks again later
        synced = self._view is not None and self._view.synced
        if self._view is not None and synced != self._was_synced:
            if synced:
                log.info("agent heartbeats: in sync with etcd; the agents' channels count")
            elif self._was_synced:
                log.warning(
                    "agent heartbeats: lost sync with etcd; hosts are judged by Nova alone until back"
                )
            self._was_synced = synced
        agents = self._view.snapshot() if self._view is not None and synced else {}
        now, grace = self._clock(), self.settings.process_grace_s
        readings, silent = combine(
            services, agents, synced, now, self._channels, self._beat_interval_s, grace, self._nova_overdue_s
        )
        if not silent:
            return readings
        powers = dict(zip(silent, await asyncio.gather(*(self._bmc(h) for h in silent)), strict=True))
        return [dataclasses.replace(r, bmc=powers[r.host]) if r.host in powers else r for r in readings]

    async def _bmc(self, host: HostName) -> BmcPower:
        async with self._bmc_slots:
            try:
                return await within(self._fencer.power_status(host), self.settings.bmc_timeout_s)
            except (HavenError, TimeoutError) as exc:
                log.debug("BMC of %s: no answer (%s)", host, exc)
                return BmcPower.UNKNOWN


@contextlib.asynccontextmanager
async def open_real_liveness(
    config: HavenConfig, cloud: NovaServices, fencer: Fencer
) -> AsyncIterator[RealCloudLiveness]:
    """The liveness source for a real cloud; its lease watch runs while the context is open.

    Without ``config.coordination.url``: Nova's service state alone (no etcd, no task).
    """
    detection = config.engine.detection
    beat = detection.heartbeat_interval_s
    overdue = detection.nova_report_interval_s + detection.grace_s
    url = config.coordination.url
    if not url:
        yield RealCloudLiveness(cloud, fencer, None, config.liveness, beat, nova_overdue_s=overdue)
        return
    endpoint = parse_etcd_url(url)
    client = EtcdClient(endpoint.http_url, display_url=endpoint.url)
    view = HostLeaseView(client, cluster=config.coordination.cluster)
    task = asyncio.create_task(view.run(), name="haven-lease-view")
    try:
        yield RealCloudLiveness(cloud, fencer, view, config.liveness, beat, nova_overdue_s=overdue)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()
