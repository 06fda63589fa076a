"""A page of a list, as the store answers it: order, marker and limit (Masakari's list semantics).

Built by haven.api.paging from a request's ``sort_key``/``sort_dir``/``marker``/``limit`` and handed
to the store, which filters, orders and cuts in SQL (haven.store.listing), so a 10,000-host segment
is never read whole to show 1,000 of its hosts. Field names are the domain objects' own (``number``
is the integer ``id`` the API shows); ties are always broken by the object's uuid, so a marker
resumes at the same place.
"""

from __future__ import annotations

from dataclasses import dataclass

from haven.domain.errors import NotFound

ASC, DESC = "asc", "desc"


@dataclass(frozen=True, slots=True)
class Marker:
    """The last item a client saw: one of ``ids`` (its stored id or uuid, in any form) or ``number``."""

    ids: tuple[str, ...]
    number: int | None = None


@dataclass(frozen=True, slots=True)
class PageQuery:
    order: tuple[tuple[str, str], ...] = ()  # (field, "asc" | "desc"), most significant first
    limit: int | None = None  # None: every matching item
    marker: Marker | None = None


class MarkerNotFound(NotFound):
    """The marker names no item of the filtered list (Masakari answers 400)."""
