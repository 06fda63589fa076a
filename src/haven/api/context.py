"""What the routes share: the store, the engine's intake, the clock, and lookups by Masakari refs.

``create_app`` builds one ``ApiContext`` and hands it to each router factory in
``haven.api.routes``. The lookups turn the uuid in a URL into a domain object, raising
haven's NotFound (a 404 through haven.api.errors) with Masakari's wording.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from haven.api.identity import candidates
from haven.api.intake import NotificationIntake
from haven.domain.clock import Clock
from haven.domain.errors import NotFound
from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import UNFINISHED_STATUSES, Notification, Segment, SegmentHost
from haven.drill.limits import API_DRILL_LIMITS
from haven.service.metrics import HavenMetrics
from haven.service.status import Leadership, SingleNodeLeadership
from haven.store import Store

# Masakari's "segment under recovery" (is_failover_segment_under_recovery): an errored
# recovery is retried, so it counts too.
UNDER_RECOVERY = UNFINISHED_STATUSES


@dataclass(frozen=True, slots=True)
class DrillLimits:
    """Bounds on drills run through the API, so one request cannot occupy the server for long.

    The defaults are haven.drill.limits.API_DRILL_LIMITS (where the CLI's bounds are too).
    """

    max_hosts: int = API_DRILL_LIMITS.max_hosts
    max_vms: int = API_DRILL_LIMITS.max_vms
    keep: int = 20  # reports kept for GET /v1/haven/drills (oldest dropped first)


@dataclass(frozen=True, slots=True)
class ApiContext:
    store: Store
    intake: NotificationIntake
    clock: Clock
    # haven's own resources (/v1/haven/..., /metrics)
    leadership: Leadership = field(default_factory=SingleNodeLeadership)
    metrics: HavenMetrics | None = None  # None: the routes build one over the store (state gauges only)
    drill_limits: DrillLimits = field(default_factory=DrillLimits)

    def find_segment(self, ref: str) -> Segment:
        for candidate in candidates(ref):
            try:
                segment = self.store.get_segment(candidate)
            except NotFound:
                continue
            if segment.id == candidate:  # the store also matches names; a URL names the uuid
                return segment
        raise NotFound(f"Failover segment {ref} could not be found.")

    def find_host(self, segment: Segment, ref: str) -> SegmentHost:
        try:
            return self.store.get_host_by_uuid(segment.id, candidates(ref))
        except NotFound:
            raise NotFound(f"Host {ref} could not be found in failover segment {segment.name}.") from None

    def host_uuids(self, names: Collection[str]) -> dict[str, str]:
        """The uuids of the hosts named (those a segment still holds): one read for a list of them."""
        if len(names) == 1:
            (name,) = names
            try:
                return {name: self.store.get_host(HostName(name)).uuid}
            except NotFound:
                return {}
        return {h.name: h.uuid for h in self.store.list_hosts() if h.name in names}

    def find_notification(self, ref: str) -> Notification:
        for candidate in candidates(ref):
            try:
                return self.store.get_notification(NotificationId(candidate))
            except NotFound:
                continue
        raise NotFound(f"No notification with id {ref} found.")

    def recoveries_in(self, segment: Segment) -> list[str]:
        """Ids of the segment's notifications still under recovery (Masakari refuses changes then)."""
        members = {host.name for host in self.store.list_hosts(segment.id)}
        return [
            n.id
            for n in self.store.list_notifications(statuses=UNDER_RECOVERY)
            if n.segment_id == segment.id or n.hostname in members
        ]
