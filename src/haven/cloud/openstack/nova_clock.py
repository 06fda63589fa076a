"""Nova's clock as haven measures it: the HTTP ``Date`` of Nova's answers against haven's wall clock.

Called by OpenStackCloud on every dated read (the service list each engine pass, instance actions).
Why it exists: Nova stamps ``updated_at`` and instance actions' ``start_time`` with its own clock,
and a Nova clock seconds behind or ahead of haven's would otherwise make a live host look dead, or
hide an action asked of a server. Two uses:

- ``nova_now`` of a reading is the ``Date`` itself. ``Date`` has whole seconds and is rounded down,
  so Nova's true time was in [Date, Date + 1): a report's age ``Date - updated_at`` is at most 1 s
  (plus the answer's travel time) younger than it really is, never older. The rounding can delay a
  dead host's confirmation by under a second; it cannot make a live host look dead.
- ``offset`` (Nova's clock minus haven's) converts instance-action times into haven's clock. It is
  ``Date + 0.5 - arrival``: within about ±0.5 s (plus the answer's travel time) of the truth.

No ``Date`` (a proxy that strips it): ``nova_now`` is None and ``offset`` stays as last measured, or
unknown; the callers then fall back to haven's own clock, and this is logged once.
"""

from __future__ import annotations

import logging

from haven.cloud.openstack import convert
from haven.cloud.openstack.nova import Stamp

log = logging.getLogger("haven.cloud.openstack")

DATE_RESOLUTION_S = 1.0  # an HTTP Date has whole seconds


class NovaClock:
    """The last measured offset of Nova's clock from haven's; fed by every dated answer."""

    def __init__(self) -> None:
        self.offset: float | None = None  # Nova's clock minus haven's; None until a Date was seen
        self._missing_logged = False

    def observe(self, stamp: Stamp, what: str) -> float | None:
        """Nova's time at the answer (its ``Date``, rounded down), or None without one; updates ``offset``."""
        nova_now = convert.http_date(stamp.date)
        if nova_now is None:
            if not self._missing_logged:
                self._missing_logged = True
                log.warning(
                    "Nova's answer to %s has no readable Date header (%r): Nova's times are compared "
                    "with haven's own clock, so a skew between the two clocks is not corrected",
                    what,
                    stamp.date,
                )
            return None
        self.offset = nova_now + DATE_RESOLUTION_S / 2 - stamp.received_at
        return nova_now

    def to_nova(self, local: float) -> float | None:
        """A time of haven's clock by Nova's, or None while the offset is unknown."""
        return None if self.offset is None else local + self.offset

    def to_local(self, nova: float) -> float:
        """A time of Nova's clock by haven's (unchanged while the offset is unknown)."""
        return nova if self.offset is None else nova - self.offset
