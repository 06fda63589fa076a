"""The list of notifications filtered, ordered and paged in SQL (both backends), against a Python reference.

Masakari's behaviour this follows (openstack/masakari, masakari/db/sqlalchemy/api.py
``notifications_get_all_by_filters``): the filters (source_host_uuid, type, status, generated-since)
then ``paginate_query`` (sort keys, a marker row, a limit) in the query; a marker naming no row is
``MarkerNotFound``. haven's differences (ties by uuid ascending, the marker must be in the filtered
list, the integer id a hash of the uuid) are the ones segments and hosts already have.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event

from haven.domain.ids import HostName, NotificationId, public_number
from haven.domain.incidents import Notification, NotificationStatus, NotificationType
from haven.domain.listing import ASC, DESC, Marker, MarkerNotFound, PageQuery
from haven.store import Store
from haven.store.notification_listing import SORTABLE

from .builders import host, insert_all, segment

HELD = 12  # h-00 .. h-11 are hosts of a segment; h-12 .. h-15 are names no segment holds any more
NAMES = [f"h-{i:02d}" for i in range(16)]
STATUSES = list(NotificationStatus)
TYPES = list(NotificationType)


def unheld_uuid(name: str) -> str:
    """What the API shows for a name no segment holds (uuid5 of the name); any function will do here."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, name))


def make(i: int) -> Notification:
    """Many ties on every key: a few values of each, times on whole milliseconds."""
    created = 1_800_000_000.0 + (i % 23) * 0.5
    return Notification(
        id=NotificationId(str(uuid.uuid4())),
        type=TYPES[(i // 2) % len(TYPES)],
        hostname=HostName(NAMES[(i * 7) % len(NAMES)]),
        status=STATUSES[i % len(STATUSES)],
        payload={"n": i},
        generated_at=created - (i % 5) * 0.25,
        created_at=created,
        updated_at=created + (i % 3),
    )


@pytest.fixture
def filled(store: Store) -> tuple[Store, list[Notification], dict[str, str]]:
    rack = store.create_segment(segment())
    store.add_hosts([host(name, rack) for name in NAMES[:HELD]])
    made = [make(i) for i in range(240)]
    insert_all(store, made)
    uuids = {str(h.name): h.uuid for h in store.list_hosts()}
    return store, made, uuids


def reference(
    made: list[Notification],
    uuids: dict[str, str],
    order: tuple[tuple[str, str], ...],
    keep: Callable[[Notification], bool] = lambda n: True,
) -> list[str]:
    """The ids in the order the API's Python paging gave: keys in turn, ties by uuid ascending."""

    def value(n: Notification, field: str) -> Any:
        if field == "number":
            return public_number(n.id)
        if field == "source_host_uuid":
            return uuids.get(n.hostname) or unheld_uuid(n.hostname)
        found = getattr(n, field)
        return getattr(found, "value", found)

    ordered = sorted((n for n in made if keep(n)), key=lambda n: n.id)
    for field, direction in reversed(order):
        ordered.sort(key=lambda n, f=field: value(n, f), reverse=direction == DESC)  # type: ignore[misc]
    return [n.id for n in ordered]


def walk(store: Store, order: tuple[tuple[str, str], ...], size: int, **filters: Any) -> Iterator[str]:
    """Every page in turn, resuming after the last one's uuid and its integer id alternately."""
    marker = None
    for turn in itertools.count():
        page = store.list_notifications_page(
            PageQuery(order, size, marker), unheld_uuid=unheld_uuid, **filters
        )
        yield from (n.id for n, _ in page)
        if len(page) < size:
            return
        last = page[-1][0].id
        marker = Marker((last,)) if turn % 2 else Marker((str(public_number(last)),), public_number(last))


ORDERS = [
    *(((field, direction),) for field in sorted(SORTABLE) for direction in (ASC, DESC)),
    (("status", ASC), ("created_at", DESC)),
    (("type", DESC), ("source_host_uuid", ASC), ("generated_at", DESC)),
]


def test_every_sort_key_and_direction_pages_as_the_python_reference(
    filled: tuple[Store, list[Notification], dict[str, str]],
) -> None:
    store, made, uuids = filled
    for order in ORDERS:
        assert list(walk(store, order, 37)) == reference(made, uuids, order), order


def test_filters_match_the_python_reference(filled: tuple[Store, list[Notification], dict[str, str]]) -> None:
    store, made, uuids = filled
    since = make(0).created_at + 4.0
    held, unheld, unknown = "h-03", "h-14", [str(uuid.uuid4())]
    cases: list[tuple[dict[str, Any], Callable[[Notification], bool]]] = [
        ({"statuses": [NotificationStatus.ERROR]}, lambda n: n.status is NotificationStatus.ERROR),
        ({"type": NotificationType.VM}, lambda n: n.type is NotificationType.VM),
        ({"generated_since": since}, lambda n: n.generated_at >= since),
        ({"source_host_uuids": [uuids[held]]}, lambda n: n.hostname == held),
        ({"source_host_uuids": [uuid.UUID(uuids[held]).hex]}, lambda n: False),  # the forms are the caller's
        ({"source_host_uuids": [unheld_uuid(unheld)]}, lambda n: n.hostname == unheld),
        ({"source_host_uuids": unknown}, lambda n: False),
        (
            {
                "statuses": [NotificationStatus.NEW],
                "type": NotificationType.COMPUTE_HOST,
                "generated_since": since,
            },
            lambda n: (
                n.status is NotificationStatus.NEW
                and n.type is NotificationType.COMPUTE_HOST
                and n.generated_at >= since
            ),
        ),
    ]
    order = (("source_host_uuid", DESC), ("created_at", ASC))
    for filters, keep in cases:
        expected = reference(made, uuids, order, keep)
        assert list(walk(store, order, 5, **filters)) == expected, filters
        assert bool(expected) is (next(iter(filters.values())) not in ([uuid.UUID(uuids[held]).hex], unknown))


def test_each_notification_comes_with_the_uuid_of_the_host_holding_its_name(
    filled: tuple[Store, list[Notification], dict[str, str]],
) -> None:
    store, _, uuids = filled
    page = store.list_notifications_page(PageQuery(limit=1000), unheld_uuid=unheld_uuid)
    assert len(page) == 240
    assert {(n.hostname, host_uuid) for n, host_uuid in page} == {
        (name, uuids.get(name)) for name in NAMES
    }  # None: no segment holds the name


def test_a_marker_outside_the_filtered_list_or_unknown_is_marker_not_found(
    filled: tuple[Store, list[Notification], dict[str, str]],
) -> None:
    store, made, _ = filled
    vm = next(n for n in made if n.type is NotificationType.VM)
    for marker in (Marker((vm.id,)), Marker(("7",), 7), Marker((str(uuid.uuid4()),))):
        with pytest.raises(MarkerNotFound, match="could not be found"):
            store.list_notifications_page(
                PageQuery((), 10, marker), type=NotificationType.COMPUTE_HOST, unheld_uuid=unheld_uuid
            )
    with pytest.raises(ValueError, match="cannot sort notifications by 'payload'"):
        store.list_notifications_page(PageQuery((("payload", ASC),)), unheld_uuid=unheld_uuid)


def test_every_statement_of_a_page_carries_its_limit(store: Store) -> None:
    rack = store.create_segment(segment())
    store.add_hosts([host(name, rack) for name in NAMES[:HELD]])
    made = [make(i) for i in range(2500)]
    insert_all(store, made)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "notifications" in statement:
            statements.append(statement)

    wanted = [n for n in made if n.status is NotificationStatus.NEW and n.hostname == "h-02"]
    middle = sorted(wanted, key=lambda n: public_number(n.id))[len(wanted) // 2]
    engine = store._engine  # the only way to see the SQL the store sends
    event.listen(engine, "before_cursor_execute", seen)
    try:
        first = store.list_notifications_page(
            PageQuery((("created_at", DESC),), 1000), unheld_uuid=unheld_uuid
        )
        number = Marker((str(public_number(middle.id)),), public_number(middle.id))
        after = store.list_notifications_page(
            PageQuery((("number", ASC),), 1000, number),
            statuses=[NotificationStatus.NEW],
            generated_since=0.0,
            source_host_uuids=[store.get_host(HostName("h-02")).uuid],
            unheld_uuid=unheld_uuid,
        )
        plain = list(statements)
        store.list_notifications_page(PageQuery((("source_host_uuid", ASC),), 10), unheld_uuid=unheld_uuid)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(first) == 1000 and len(after) == len(wanted) - len(wanted) // 2 - 1 > 0
    assert len(plain) == 3 and all("LIMIT" in s for s in plain)  # page; marker row, page
    # Sorting by source_host_uuid first reads the names no segment holds (a DISTINCT, at most one per name).
    distinct, *paged = statements[3:]
    assert "DISTINCT" in distinct and len(paged) == 1 and "LIMIT" in paged[0]
