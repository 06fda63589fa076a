"""Masakari list semantics: filters happen before, then sort, marker and limit.

Masakari pages with ``limit`` (at most 1000; absent means 1000; 0 an empty page, as Masakari's
database layer answers whatever its docstring says), ``marker`` (the
uuid of the last item seen; an unknown marker is a 400) and repeated ``sort_key`` /
``sort_dir`` pairs. Segments, hosts and notifications are filtered, ordered and cut in SQL:
``page_query`` checks the request and turns it into the store's haven.domain.listing.PageQuery,
and ``refuse_unknown_marker`` turns the store's MarkerNotFound into Masakari's 400. The vmoves
of one notification are few: their route builds the views of every matching one and ``page``
orders and cuts them. Ties are broken by uuid either way, so
that a marker always resumes at the same place.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import Depends, Query

from haven.api.errors import ApiError
from haven.api.identity import candidates
from haven.domain.listing import Marker, MarkerNotFound, PageQuery

MAX_LIMIT = 1000
Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int | None = None
    marker: str | None = None
    sort_keys: Sequence[str] = field(default_factory=tuple)
    sort_dirs: Sequence[str] = field(default_factory=tuple)


def page_request(
    limit: Annotated[
        int | None, Query(ge=0, description="at most this many (absent or above 1000: 1000; 0: none)")
    ] = None,
    marker: Annotated[str | None, Query(description="uuid (or id) of the last item already seen")] = None,
    sort_key: Annotated[list[str] | None, Query()] = None,
    sort_dir: Annotated[list[Literal["asc", "desc"]] | None, Query()] = None,
) -> PageRequest:
    return PageRequest(limit, marker, tuple(k.strip() for k in sort_key or ()), tuple(sort_dir or ()))


Page = Annotated[PageRequest, Depends(page_request)]


def _order(
    request: PageRequest, sortable: Collection[str], default: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    if not request.sort_keys:
        if request.sort_dirs:
            return [(key, request.sort_dirs[0]) for key, _ in default]
        return list(default)
    unknown = [key for key in request.sort_keys if key not in sortable]
    if unknown:
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            f"Invalid input for field/attribute sort_key. Sort key {unknown[0]!r} is not one of "
            f"{', '.join(sorted(sortable))}",
        )
    if len(request.sort_dirs) > len(request.sort_keys):
        raise ApiError(
            HTTPStatus.BAD_REQUEST,
            "Invalid input for field/attribute sort_dir. More sort directions than sort keys were given",
        )
    fill = request.sort_dirs[0] if request.sort_dirs else "desc"
    dirs = list(request.sort_dirs) + [fill] * (len(request.sort_keys) - len(request.sort_dirs))
    return list(zip(request.sort_keys, dirs, strict=True))


def _sort_value(item: Json, key: str) -> tuple[bool, Any]:
    value = item.get(key)
    return (value is None, "" if value is None else value)


def _by(key: str) -> Callable[[Json], tuple[bool, Any]]:
    return lambda item: _sort_value(item, key)


def page(
    items: list[Json],
    request: PageRequest,
    sortable: Collection[str],
    default: Sequence[tuple[str, str]],
    uuid_key: str = "uuid",
) -> list[Json]:
    """``items`` sorted, resumed after the marker and cut at the limit."""
    order = _order(request, sortable, default)
    # Without any order asked for or by default, the caller's order stands.
    ordered = sorted(items, key=lambda item: str(item.get(uuid_key, ""))) if order else list(items)
    for key, direction in reversed(order):
        ordered.sort(key=_by(key), reverse=direction == "desc")
    if request.marker is not None:
        marker = request.marker
        at = next(
            (i for i, item in enumerate(ordered) if marker in (item.get(uuid_key), str(item.get("id")))),
            None,
        )
        if at is None:
            raise ApiError(HTTPStatus.BAD_REQUEST, f"Marker {request.marker} could not be found.")
        ordered = ordered[at + 1 :]
    limit = MAX_LIMIT if request.limit is None else min(request.limit, MAX_LIMIT)
    return ordered[:limit]


def page_query(
    request: PageRequest, sortable: Mapping[str, str], default: Sequence[tuple[str, str]]
) -> PageQuery:
    """The store's page query for ``request``: ``sortable`` maps the API's sort keys to fields."""
    order = _order(request, sortable.keys(), default)
    marker = None
    if request.marker is not None:
        number = int(request.marker) if request.marker.isdecimal() else None
        marker = Marker(tuple(candidates(request.marker)), number)
    limit = MAX_LIMIT if request.limit is None else min(request.limit, MAX_LIMIT)
    return PageQuery(tuple((sortable[key], direction) for key, direction in order), limit, marker)


@contextmanager
def refuse_unknown_marker() -> Iterator[None]:
    """The store found no item for the marker: a 400, as Masakari answers (MarkerNotFound)."""
    try:
        yield
    except MarkerNotFound as exc:
        raise ApiError(HTTPStatus.BAD_REQUEST, str(exc)) from exc
