"""OpenStackCloud: haven's Cloud protocol (and Nova's service state as a liveness channel) over Nova.

Called by the engine and the recovery steps exactly as they call the simulated
cloud. Every request runs in CallPool's worker threads (the event loop never blocks)
and every openstacksdk/keystoneauth error comes out as a haven CloudError. Nothing
here waits for an effect: evacuate returns once Nova accepted the call, and the
evacuate step verifies by polling get_server later (requeue, never sleep).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from haven.cloud.openstack import convert
from haven.cloud.openstack.backups import BackupApi, OpenStackBackups
from haven.cloud.openstack.calls import CallPool
from haven.cloud.openstack.nova import NovaApi
from haven.cloud.openstack.nova_clock import DATE_RESOLUTION_S, NovaClock
from haven.domain.cloud import Host, Server, ServerAction, ServerGroup, VmState
from haven.domain.errors import NotFound, PermanentError
from haven.domain.ids import HostName, ServerId
from haven.domain.liveness import BmcPower, ComputeServiceState, HostLiveness

# How much later than the truth a report's time may look: the Date is rounded down (up to 1 s) and
# Nova's updated_at has whole seconds, rounded to the nearest by MySQL (up to 0.5 s).
NOVA_REPORT_SLACK_S = DATE_RESOLUTION_S + 0.5
REPORTS_WHEN_BACK = 2  # updated_at moves of a forced-down service that mean its compute reports again
# The calls that issue evacuations (each one's instance-action count, then the evacuate itself) get a
# lane of their own this wide: a host's twenty evacuations are asked together, so every destination
# starts its rebuilds at once, instead of eight at a time behind reads in the shared pool (issue 15).
ISSUE_WORKERS = 32
RATIOS_TTL_S = 600.0  # allocation ratios change with a nova.conf edit and a restart: rarely
ACTIONS_SLACK_S = 5.0  # how much earlier than asked the changes-since filter reaches (clock offset error)
_RESET_STATES = {VmState.ACTIVE: "active", VmState.ERROR: "error"}


class OpenStackCloud:
    def __init__(self, api: NovaApi, pool: CallPool, issuing: CallPool | None = None) -> None:
        self._api = api
        self._pool = pool
        self._issuing = issuing or CallPool(max(ISSUE_WORKERS, pool.max_workers))
        self._forced: dict[HostName, tuple[str, int]] = {}  # forced-down host: last updated_at, moves
        # Each host's nova-compute service id (a UUID at 2.53, never reused), from any service list:
        # a PUT on the service needs no list of its own first; a 404 reads the id again.
        self._service_ids: dict[HostName, str] = {}
        self._ratios: dict[str, dict[str, float]] = {}  # by hypervisor hostname, from Placement
        self._ratios_at = -RATIOS_TTL_S
        self.nova_clock = NovaClock()  # Nova's clock against haven's, from each dated answer

    def close(self) -> None:
        self._pool.close()
        self._issuing.close()

    def backups(self) -> OpenStackBackups:
        """The backup port (Nova createBackup, Glance, Cinder) on this cloud's connection and pool."""
        return OpenStackBackups(BackupApi(self._api.connection), self._pool, actions=self.server_actions)

    # ---- hosts ----------------------------------------------------------------------------

    async def list_hosts(self) -> Sequence[Host]:
        services, hypervisors, aggregates = await asyncio.gather(
            self._pool.run("list compute services", self._api.compute_services),
            self._pool.run("list hypervisors", self._api.hypervisors),
            self._pool.run("list host aggregates", self._api.aggregates),
        )
        ratios = await self._allocation_ratios()
        by_host = {str((hv.get("service") or {}).get("host")): hv for hv in hypervisors}
        aggregate_of = convert.aggregate_of(aggregates)
        self._note_service_ids(services)
        hosts = []
        for service in services:
            name = str(service["host"])
            hv = by_host.get(name)
            hv_name = str((hv or {}).get("hypervisor_hostname", name))
            hosts.append(convert.host(service, hv, aggregate_of.get(name, ""), ratios.get(hv_name)))
        return hosts

    async def get_host(self, name: HostName) -> Host:
        for host in await self.list_hosts():
            if host.name == name:
                return host
        raise NotFound(f"compute host {name} not found")

    async def _allocation_ratios(self) -> Mapping[str, Mapping[str, float]]:
        """Placement's allocation ratios by hypervisor, re-read every RATIOS_TTL_S; {} without Placement."""
        if time.monotonic() - self._ratios_at < RATIOS_TTL_S:
            return self._ratios
        self._ratios_at = time.monotonic()
        if not await self._pool.run("find placement", self._api.has_placement):
            return self._ratios
        providers = await self._pool.run("list resource providers", self._api.resource_providers)
        inventories = await asyncio.gather(
            *(self._pool.run("read inventories", self._api.inventories, p["uuid"]) for p in providers)
        )
        self._ratios = {
            str(p["name"]): convert.allocation_ratios(inv)
            for p, inv in zip(providers, inventories, strict=True)
        }
        return self._ratios

    async def _service_id(self, host: HostName) -> str:
        services = await self._pool.run(f"find nova-compute of {host}", self._api.compute_services, host)
        if not services:
            raise NotFound(f"compute host {host} not found (no nova-compute service)")
        self._note_service_ids(services)
        return str(services[0]["id"])

    def _note_service_ids(self, services: Sequence[Mapping[str, Any]]) -> None:
        for s in services:
            if s.get("id") is not None and s.get("host"):
                self._service_ids[HostName(str(s["host"]))] = str(s["id"])

    async def _update_service(self, host: HostName, what: str, body: Mapping[str, Any]) -> None:
        """PUT ``body`` on the host's nova-compute, by the id a service list gave (read first if none).

        Nova's service ids are UUIDs, never reused: a known id names this host's service or none. If
        none (the service was deleted and registered again), Nova answers 404 and the id is read anew.
        """
        known = self._service_ids.get(host)
        if known is not None:
            try:
                await self._pool.run(what, self._api.update_service, known, body)
                return
            except NotFound:
                self._service_ids.pop(host, None)
        service_id = await self._service_id(host)
        await self._pool.run(what, self._api.update_service, service_id, body)

    async def force_down(self, host: HostName, down: bool) -> None:
        what = f"{'force down' if down else 'unset forced down of'} {host}"
        await self._update_service(host, what, {"forced_down": down})

    async def disable_service(self, host: HostName, reason: str) -> None:
        body = {"status": "disabled", "disabled_reason": reason}
        await self._update_service(host, f"disable nova-compute of {host}", body)

    async def enable_service(self, host: HostName) -> None:
        await self._update_service(host, f"enable nova-compute of {host}", {"status": "enabled"})

    # ---- servers --------------------------------------------------------------------------

    async def list_servers(self, host: HostName | None = None, *, groups: bool = True) -> Sequence[Server]:
        """Nova's server list (one request per page). Nova lists servers without their groups, so each
        one's ``group`` takes a read of every server group beside it; ``groups=False`` spares it (the
        verification's lists, and the plan, which reads the groups itself, need none)."""
        what = f"list servers on {host or 'every host'}"
        listed = self._pool.run(what, self._api.servers, host)
        if groups:
            bodies, every_group = await asyncio.gather(listed, self.list_server_groups())
        else:
            bodies, every_group = await listed, []
        if host is not None and not bodies:
            await self._service_id(host)  # Nova answers [] for an unknown host: say NotFound instead
        group_of = {member: g.id for g in every_group for member in g.members}
        return [convert.server(b, group_of.get(ServerId(str(b["id"])))) for b in bodies]

    async def get_server(self, server_id: ServerId) -> Server:
        return convert.server(await self._pool.run(f"show server {server_id}", self._api.server, server_id))

    async def list_server_groups(self) -> Sequence[ServerGroup]:
        bodies = await self._pool.run("list server groups", self._api.server_groups)
        return [convert.server_group(b) for b in bodies]

    async def evacuate(self, server_id: ServerId, target: HostName | None) -> None:
        where = f" to {target}" if target else ""
        await self._issuing.run(f"evacuate server {server_id}{where}", self._api.evacuate, server_id, target)

    async def reset_state(self, server_id: ServerId, state: VmState) -> None:
        nova_state = _RESET_STATES.get(state)
        if nova_state is None:
            raise PermanentError(f"Nova can reset a server only to active or error, not {state.value}")
        await self._action(server_id, f"reset to {nova_state}", {"os-resetState": {"state": nova_state}})

    async def stop_server(self, server_id: ServerId) -> None:
        await self._action(server_id, "stop", {"os-stop": None})

    async def start_server(self, server_id: ServerId) -> None:
        await self._action(server_id, "start", {"os-start": None})

    async def reboot_server(self, server_id: ServerId) -> None:
        await self._action(server_id, "hard reboot", {"reboot": {"type": "HARD"}})

    async def server_actions(self, server_id: ServerId, since: float) -> Sequence[ServerAction]:
        """Nova's instance actions that started at or after ``since``, oldest first, in haven's clock.

        ``since`` and each action's ``at`` are haven's (wall) clock: Nova's ``start_time`` is moved by
        the offset of Nova's clock measured from this answer's ``Date`` (haven.cloud.openstack.
        nova_clock: within about ±0.5 s), so a Nova clock minutes off hides nothing. The request's
        changes-since filter uses the offset measured before, reaching ACTIONS_SLACK_S earlier; with
        no offset known yet the list is asked unfiltered (Nova's newest 1,000) and filtered here.
        Without any ``Date`` from Nova, its times are taken as haven's (logged once).

        Nova lists newest first, and on MySQL/MariaDB its ``start_time`` has whole seconds, so two
        actions in one second tie on time: the list order, reversed, is the only true order.
        """
        reach = self.nova_clock.to_nova(since - ACTIONS_SLACK_S)
        stamp = None if reach is None else datetime.fromtimestamp(reach, UTC).replace(tzinfo=None).isoformat()
        what = f"list instance actions of server {server_id}"
        bodies, answered = await self._issuing.run(what, self._api.instance_actions, server_id, stamp)
        self.nova_clock.observe(answered, what)
        found = [convert.server_action(server_id, b) for b in reversed(bodies)]
        local = [dataclasses.replace(a, at=self.nova_clock.to_local(a.at)) for a in found]
        return [a for a in local if a.at >= since]

    async def _action(self, server_id: ServerId, what: str, body: Mapping[str, Any]) -> None:
        await self._pool.run(f"{what}: server {server_id}", self._api.server_action, server_id, body)

    # ---- LivenessSource: Nova's service state -------------------------------------------

    async def liveness_anomalies(self) -> Sequence[HostLiveness]:
        """Hosts whose nova-compute is down by Nova's account; the others are left out (healthy).

        This is one channel only (Nova's); haven.service.liveness adds the agent's and the BMC's.
        """
        return [
            HostLiveness(
                s.host,
                None,
                nova_up=False,
                nova_updated_at=s.updated_at,
                bmc=BmcPower.UNKNOWN,
                nova_now=s.nova_now,
                nova_time_slack_s=s.nova_time_slack_s,
            )
            for s in await self.compute_service_states()
            if not s.reporting
        ]

    async def compute_service_states(self) -> Sequence[ComputeServiceState]:
        """Every host's nova-compute by Nova's service list (one request), with its last report.

        Nova reports a forced-down service down whatever its compute does, so a forced-down host
        counts as reporting again once its ``updated_at`` moved REPORTS_WHEN_BACK times since haven
        first saw it forced down (a compute's report moves it; so does each PUT on the service, hence
        more than one): haven may then return it to service.

        Each state carries ``nova_now``, Nova's clock when it answered (the answer's ``Date``, whole
        seconds rounded down, so an age ``nova_now - updated_at`` is never overstated; see
        haven.cloud.openstack.nova_clock), or None when Nova sent no ``Date`` (logged once).
        """
        what = "list compute services"
        services, answered = await self._pool.run(what, self._api.compute_services_dated)
        self._note_service_ids(services)
        nova_now = self.nova_clock.observe(answered, what)
        states = []
        forced: dict[HostName, tuple[str, int]] = {}
        for s in services:
            host, updated = HostName(str(s["host"])), str(s.get("updated_at") or "")
            reporting = s.get("state") == "up"
            if s.get("forced_down"):
                last, moves = self._forced.get(host, (updated, 0))
                forced[host] = (updated, moves + (updated != last))
                reporting = forced[host][1] >= REPORTS_WHEN_BACK
            stamp = convert.timestamp(updated)
            states.append(
                ComputeServiceState(
                    host, reporting, bool(s.get("forced_down")), stamp, nova_now, NOVA_REPORT_SLACK_S
                )
            )
        self._forced = forced
        return states
