"""A simulated Nova boot pipeline for canaries, over the simulated cloud's hosts (or any Cloud's).

The CanaryCloud port's simulated side, for tests and the embedded default: a boot accepted by the API
goes through scheduling, block devices, spawning, running and ACTIVE, each after its own duration on the
injected clock; a delete takes ``delete_s``. Scheduling picks a host of the zone whose nova-compute is up,
enabled and not forced down, as the cloud reports it now, or fails with NoValidHost. Faults are injected
per phase: a delay (``slow``), a Nova fault (``fail``), the API or the identity service down.

``servers`` is the ground truth tests judge from: every canary server that exists, whatever haven thinks.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from haven.canary.model import RUNNING, Found, Phase, ServerView
from haven.cloud.base import Cloud
from haven.domain.clock import Clock
from haven.domain.errors import NotFound, PermanentError, TemporaryError

# How long each phase takes, after the previous one, in seconds.
DEFAULT_TIMINGS: Mapping[Phase, float] = {
    Phase.SCHEDULED: 0.5,
    Phase.IMAGE: 1.0,
    Phase.SPAWNED: 2.0,
    Phase.ACTIVE: 0.5,
}
_TASK_BEFORE: Mapping[Phase, str] = {
    Phase.SCHEDULED: "scheduling",
    Phase.IMAGE: "block_device_mapping",
    Phase.SPAWNED: "spawning",
    Phase.ACTIVE: "spawning",
}
_ORDER = (Phase.SCHEDULED, Phase.IMAGE, Phase.SPAWNED, Phase.ACTIVE)


@dataclass
class SimServer:
    id: str
    name: str
    zone: str
    metadata: Mapping[str, str]
    created_at: float
    reach: dict[Phase, float]  # when each phase is reached
    host: str | None = None
    fault: str = ""
    fails_at: float | None = None  # ERROR from then on
    deleted_at: float | None = None


@dataclass
class SimCanaryCloud:
    cloud: Cloud
    clock: Clock
    timings: dict[Phase, float] = field(default_factory=lambda: dict(DEFAULT_TIMINGS))
    delete_s: float = 0.5
    servers: dict[str, SimServer] = field(default_factory=dict)
    extra: dict[Phase, float] = field(default_factory=dict)  # injected delays
    faults: dict[Phase, str] = field(default_factory=dict)  # injected faults: "Exception: message"
    api_down: bool = False
    image: str = "active"  # the canary image's status in the simulated Glance ("missing": deleted)
    image_data_error: str = ""  # the simulated Glance's download fails with this ("": it serves the data)
    image_bytes: int = 1024  # what its download serves (0: Glance's 204 for data gone from its store)
    compute_to_image_s: float = 0.0  # Nova's API waits this long on Glance (a slow link between the two)
    api_delay_s: float = (
        0.0  # Nova's API itself this slow on each server list and image lookup (a loaded host)
    )
    request_timeout_s: float = 10.0  # the canary's client gives up on a request after this long
    room: int = 1  # the allocation candidates the simulated Placement offers (0: full, NoValidHost)
    identity_down: bool = False
    booted: int = 0
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    # ---- fault injection ----------------------------------------------------------------------------

    def slow(self, phase: Phase, extra_s: float) -> None:
        self.extra[phase] = extra_s

    def fail(self, phase: Phase, fault: str) -> None:
        self.faults[phase] = fault

    def heal(self) -> None:
        self.extra.clear()
        self.faults.clear()
        self.api_down = self.identity_down = False
        self.image = "active"
        self.image_data_error = ""
        self.image_bytes = 1024
        self.compute_to_image_s = 0.0
        self.api_delay_s = 0.0
        self.room = 1

    def existing(self) -> list[SimServer]:
        """The canary servers that exist now (ground truth)."""
        now = self.clock.now()
        return [s for s in self.servers.values() if s.deleted_at is None or s.deleted_at > now]

    # ---- the port -------------------------------------------------------------------------------------

    async def zones(self) -> Sequence[str]:
        self._api()  # Nova's service list, served by its API
        return sorted({h.zone for h in await self.cloud.list_hosts()})

    async def boot(
        self, name: str, zone: str, flavor: str, image: str, network: str, metadata: Mapping[str, str]
    ) -> str:
        self._api()
        if self.compute_to_image_s:  # Nova's API asks Glance for the image (twice) before it answers
            waited = min(2 * self.compute_to_image_s, self.request_timeout_s)
            await self.clock.sleep_until(self.clock.now() + waited)
            if waited >= self.request_timeout_s:
                raise TemporaryError(f"boot canary {name}: Request to nova-api /v2.1/servers timed out", 1.0)
        if self.image != "active":  # Nova's API checks the image before it accepts the boot
            raise PermanentError(f"Image {image} is not active (it is {self.image}). (HTTP 400)")
        now = self.clock.now()
        server = SimServer(f"sim-canary-{next(self._ids)}", name, zone, dict(metadata), now, {})
        at = now
        for phase in _ORDER:
            at += self.timings[phase] + self.extra.get(phase, 0.0)
            if phase in self.faults:
                server.fails_at, server.fault = at, self.faults[phase]
                break
            server.reach[phase] = at
        hosts = [
            h for h in await self.cloud.list_hosts()
            if h.zone == zone and h.service_up and h.service_enabled and not h.forced_down
        ]  # fmt: skip
        if not hosts or self.room == 0:
            scheduled = now + self.timings[Phase.SCHEDULED] + self.extra.get(Phase.SCHEDULED, 0.0)
            server.reach = {}
            server.fails_at, server.fault = scheduled, "NoValidHost: No valid host was found. "
        else:
            server.host = sorted(hosts, key=lambda h: h.name)[self.booted % len(hosts)].name
        self.booted += 1
        self.servers[server.id] = server
        return server.id

    async def look(self, server_id: str) -> ServerView:
        self._api()
        server = self._existing(server_id)
        now = self.clock.now()
        reached = [p for p in _ORDER if server.reach.get(p, float("inf")) <= now]
        host = server.host if reached else None
        if server.fails_at is not None and server.fails_at <= now:
            return ServerView("ERROR", None, host, 0, server.fault)
        if Phase.ACTIVE in reached:
            return ServerView("ACTIVE", None, host, RUNNING)
        waiting = next(p for p in _ORDER if p not in reached)
        power = RUNNING if Phase.SPAWNED in reached else 0
        return ServerView("BUILD", _TASK_BEFORE[waiting], host, power)

    async def delete(self, server_id: str) -> None:
        self._api()
        server = self.servers.get(server_id)
        if server is not None and server.deleted_at is None:
            server.deleted_at = self.clock.now() + self.delete_s

    async def find(self, prefix: str, tag_key: str) -> Sequence[Found]:
        self._api()
        return [
            Found(s.id, s.name, s.metadata[tag_key])
            for s in self.existing()
            if s.name.startswith(prefix) and tag_key in s.metadata
        ]

    async def issue_token(self) -> None:
        if self.identity_down:
            raise TemporaryError("Keystone: connection refused", 1.0)

    async def list_servers(self) -> int:
        self._api()
        if self.api_delay_s:
            await self.clock.sleep_until(self.clock.now() + self.api_delay_s)
        return len(self.existing())

    async def endpoints(self) -> Mapping[str, str]:
        return {}  # the simulated cloud has no service catalog

    async def probe_endpoint(self, url: str, timeout_s: float) -> None:
        raise NotFound(f"no endpoint {url} on the simulated cloud")

    async def services(self) -> Sequence[tuple[str, str, str, float | None, str]]:
        return [
            ("nova-compute", h.name, h.zone, None, _state(h.service_up and not h.forced_down,
                                                           h.service_enabled, h.disabled_reason))
            for h in await self.cloud.list_hosts()
        ]  # fmt: skip

    async def image_status(self, image: str) -> str:
        return self.image

    async def image_data(self, image: str) -> int:
        if self.image != "active":
            raise TemporaryError(f"image {image} is {self.image}: no data to download", 1.0)
        if self.image_data_error:
            raise TemporaryError(self.image_data_error, 1.0)
        return self.image_bytes

    async def image_via_compute(self, image: str) -> None:
        self._api()
        if self.compute_to_image_s or self.api_delay_s:
            await self.clock.sleep_until(self.clock.now() + self.compute_to_image_s + self.api_delay_s)
        if self.image != "active":
            raise NotFound(f"image {image}: {self.image}")

    async def placement_room(self, flavor: str) -> int:
        return self.room

    def close(self) -> None:
        pass

    def _api(self) -> None:
        if self.api_down:
            raise TemporaryError("nova-api: 503 Service Unavailable", 1.0)

    def _existing(self, server_id: str) -> SimServer:
        server = self.servers.get(server_id)
        if server is None or (server.deleted_at is not None and server.deleted_at <= self.clock.now()):
            raise NotFound(f"no server {server_id}")
        return server


def _state(up: bool, enabled: bool, reason: str | None) -> str:
    if not up:
        return "down"
    return "up" if enabled else f"disabled: {reason or 'no reason given'}"
