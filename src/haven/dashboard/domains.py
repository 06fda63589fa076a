"""``FailureDomains``: each host's zone and rack (its aggregate) as the cloud says, for the dashboard's map.

``haven serve`` hands over the hosts it listed at start-up; after that the map is read from the cloud
again when a page opens (at most every ``REFRESH_S``) and, at once, when segments or their hosts change
(the engine's ``segments_changed``, after an API write): a host added to a zone or moved to another
rack, or put in a segment created after start-up, shows on the map without a restart. A read that
fails or takes longer than ``READ_TIMEOUT_S`` keeps the last map, and the log says so (once until a
read succeeds again). One read at a time: pages that ask while one runs take its answer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

from haven.domain.cloud import Host
from haven.domain.errors import HavenError
from haven.domain.ids import HostName
from haven.domain.waiting import within

log = logging.getLogger(__name__)

REFRESH_S = 30.0  # a page opening reads the cloud again when the map is older than this
READ_TIMEOUT_S = 5.0

HostsReader = Callable[[], Awaitable[Sequence[Host]]]  # the cloud's list_hosts


class FailureDomains(Mapping[HostName, tuple[str, str]]):
    """host: (zone, rack), as the cloud last answered; ``refresh`` reads it again (``read``: None, never)."""

    def __init__(
        self,
        known: Mapping[HostName, tuple[str, str]] | None = None,
        read: HostsReader | None = None,
        *,
        refresh_s: float = REFRESH_S,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        self._map = dict(known or {})
        self._read = read
        self._refresh_s, self._timeout_s = refresh_s, timeout_s
        self._read_at = time.monotonic() if known is not None else -math.inf  # when the last read began
        self._lock = asyncio.Lock()
        self._failing = False

    @classmethod
    def of(
        cls,
        hosts: Iterable[Host],
        read: HostsReader | None = None,
        *,
        refresh_s: float = REFRESH_S,
        timeout_s: float = READ_TIMEOUT_S,
    ) -> FailureDomains:
        """From the hosts the cloud listed (haven serve's start-up read)."""
        found = {h.name: (h.zone, h.aggregate) for h in hosts}
        return cls(found, read, refresh_s=refresh_s, timeout_s=timeout_s)

    def __getitem__(self, host: HostName) -> tuple[str, str]:
        return self._map[host]

    def __iter__(self) -> Iterator[HostName]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    async def refresh(self, max_age_s: float | None = None) -> bool:
        """Read the cloud's hosts again unless a read began within ``max_age_s`` (None: ``refresh_s``;
        a page's stream, after ``segments_changed``: the time since the event); whether the map changed."""
        if self._read is None:
            return False
        asked = time.monotonic()
        age = self._refresh_s if max_age_s is None else max_age_s
        if self._read_at > asked - age:
            return False
        async with self._lock:
            if self._read_at > asked - age:  # another page's read began meanwhile: its answer stands
                return False
            self._read_at = time.monotonic()
            try:
                hosts = await within(self._read(), self._timeout_s)
            except (HavenError, TimeoutError) as exc:
                if not self._failing:
                    log.warning("dashboard: the cloud's hosts could not be read again for the map "
                                "(zones and racks as last read): %s", exc or "timed out")  # fmt: skip
                self._failing = True
                return False
            self._failing = False
            found = {h.name: (h.zone, h.aggregate) for h in hosts}
            changed, self._map = found != self._map, found
            return changed
