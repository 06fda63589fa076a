"""GET /v1/notifications filters, orders and pages in SQL, and answers what it answered before.

Masakari (openstack/masakari): masakari/api/openstack/ha/notifications.py ``index`` reads
source_host_uuid, type, status and generated-since, limit and marker, sort_key and sort_dir (default
created_at desc); masakari/db/sqlalchemy/api.py ``notifications_get_all_by_filters`` filters and
pages in the query (``paginate_query``). The reference here is the route as it was before, in
Python: every matching notification's view built, then haven.api.paging.page.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from haven.api.identity import legacy_host_uuid, same_uuid
from haven.api.paging import PageRequest, page
from haven.api.routes.notifications import DEFAULT_ORDER, SORTABLE, epoch_seconds
from haven.api.views import notification_view
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import Notification, NotificationStatus, NotificationType, Segment, SegmentHost
from haven.store import Store
from store.builders import insert_all

NAMES = [f"compute-{i:02d}" for i in range(16)]
HELD = 12  # compute-12 .. compute-15: names no segment holds any more (their uuid is uuid5 of the name)
COUNT = 2500


def make(i: int) -> Notification:
    """Ties on every key (a few values each), times on whole milliseconds as the API shows them."""
    created = 1_800_000_000.0 + (i % 97) * 0.5
    return Notification(
        id=NotificationId(str(uuid.uuid4())),
        type=list(NotificationType)[(i // 2) % 3],
        hostname=HostName(NAMES[(i * 7) % len(NAMES)]),
        status=list(NotificationStatus)[i % len(NotificationStatus)],
        payload={"event": "STOPPED", "n": i},
        generated_at=created - (i % 5) * 0.25,
        created_at=created,
        updated_at=created + (i % 3),
    )


@pytest.fixture
def crowd(store: Store) -> list[Notification]:
    segment = Segment(SegmentId(uuid.uuid4().hex), "rack-1")
    store.create_segment(segment)
    store.add_hosts(
        [SegmentHost(HostName(name), segment.id, uuid=str(uuid.uuid4())) for name in NAMES[:HELD]]
    )
    made = [make(i) for i in range(COUNT)]
    insert_all(store, made)
    return made


def reference(store: Store, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The list as the route answered it before (filters, views, then haven.api.paging.page)."""
    status, type_ = params.get("status"), params.get("type")
    if (status is not None and status not in set(NotificationStatus)) or (
        type_ is not None and type_ not in set(NotificationType)
    ):
        return []
    since = params.get("generated-since")
    uuids = {h.name: h.uuid for h in store.list_hosts()}
    matching = [
        n
        for n in store.list_notifications()
        if (status is None or n.status.value == status)
        and (type_ is None or n.type.value == type_)
        and (since is None or n.generated_at >= epoch_seconds(since))
    ]
    views = [notification_view(n, uuids.get(n.hostname)) for n in matching]
    if "source_host_uuid" in params:
        views = [v for v in views if same_uuid(params["source_host_uuid"], v["source_host_uuid"])]
    keys, dirs = params.get("sort_key", []), params.get("sort_dir", [])
    request = PageRequest(
        params.get("limit"),
        params.get("marker"),
        tuple([keys] if isinstance(keys, str) else keys),
        tuple([dirs] if isinstance(dirs, str) else dirs),
    )
    return page(views, request, set(SORTABLE), DEFAULT_ORDER, uuid_key="notification_uuid")


def reference_all(store: Store, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every page of the reference in turn (a page holds at most 1000)."""
    whole: list[dict[str, Any]] = []
    while True:
        got = reference(store, {**params, **({"marker": whole[-1]["notification_uuid"]} if whole else {})})
        whole.extend(got)
        if len(got) < 1000:
            return whole


async def listed(client: httpx.AsyncClient, params: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await client.get("/v1/notifications", params=params)
    assert answer.status_code == 200, (params, answer.text)
    found: list[dict[str, Any]] = answer.json()["notifications"]
    return found


async def test_pages_of_2500_are_read_with_statements_that_each_carry_a_limit(
    client: httpx.AsyncClient, store: Store, crowd: list[Notification]
) -> None:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = store._engine  # the only way to see the SQL haven sends
    event.listen(engine, "before_cursor_execute", seen)
    try:
        walked: list[dict[str, Any]] = []
        marker: str | None = None
        while True:
            params = {} if marker is None else {"marker": marker}
            got = await listed(client, params)
            walked.extend(got)
            if len(got) < 1000:
                break
            marker = str(got[-1]["id"])  # openstacksdk pages with the integer id
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert len(walked) == COUNT and walked == reference_all(store, {})
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    # Three pages: the first one statement, each later one the marker's row, then the page.
    assert len(reads) == 5 and all("LIMIT" in s for s in reads), reads


QUERIES: list[dict[str, Any]] = [
    {"limit": 7},
    {"sort_key": "created_at", "sort_dir": "asc", "limit": 50},
    {"sort_dir": "asc", "limit": 50},  # a direction alone applies to the default key
    {"sort_key": "id", "sort_dir": "asc"},
    {"sort_key": "notification_uuid", "limit": 20},
    {"sort_key": ["status", "hostname"], "sort_dir": ["asc", "desc"], "limit": 300},
    {"sort_key": ["type", "generated_time", "updated_at"], "sort_dir": "asc"},
    {"sort_key": "source_host_uuid", "sort_dir": "asc", "limit": 500},
    {"sort_key": ["source_host_uuid", "created_at"], "sort_dir": ["desc", "asc"]},
    {"status": "error"},
    {"status": "new", "type": "VM", "sort_key": "generated_time"},
    {"type": "PROCESS", "generated-since": "2027-01-15T08:00:20"},
    {"generated-since": "2027-01-15T08:00:20.250000+00:00", "sort_key": "hostname", "sort_dir": "asc"},
    {"status": "sleeping"},
    {"type": "NOT_A_TYPE", "marker": "no-such-marker"},  # nothing matches: an empty list, as before
    {"limit": 0},  # 0: an empty page, as Masakari
    {"limit": 5000},
]


async def test_filters_sorts_and_limits_answer_as_the_python_reference(
    client: httpx.AsyncClient, store: Store, crowd: list[Notification]
) -> None:
    for params in QUERIES:  # one store of 2,500 for all (a parametrized test would fill one each)
        assert await listed(client, params) == reference(store, params), params


async def test_source_host_and_markers_answer_as_the_python_reference(
    client: httpx.AsyncClient, store: Store, crowd: list[Notification]
) -> None:
    held = store.get_host(HostName("compute-03")).uuid
    nobody = str(uuid.uuid4())
    for source in (held, uuid.UUID(held).hex, legacy_host_uuid("compute-14"), nobody):
        params: dict[str, Any] = {"source_host_uuid": source, "sort_key": "created_at", "sort_dir": "asc"}
        first = await listed(client, {**params, "limit": 10})
        assert first == reference(store, {**params, "limit": 10})
        assert bool(first) is (source != nobody)
        if first:
            for marker in (first[-1]["notification_uuid"], str(first[-1]["id"])):
                after = {**params, "marker": marker, "limit": 25}
                assert await listed(client, after) == reference(store, after)
    ordered = {"sort_key": ["status", "source_host_uuid"], "sort_dir": ["desc", "asc"], "limit": 400}
    whole = reference_all(store, {k: v for k, v in ordered.items() if k != "limit"})
    assert len(whole) == COUNT
    for cut in (399, 1111, 2498):  # markers deep in the list, by uuid and by integer id
        for marker in (whole[cut]["notification_uuid"], str(whole[cut]["id"])):
            after = {**ordered, "marker": marker}
            assert await listed(client, after) == reference(store, after) == whole[cut + 1 : cut + 401]


async def test_a_bad_marker_or_sort_is_a_400_naming_the_problem(
    client: httpx.AsyncClient, store: Store, crowd: list[Notification]
) -> None:
    unknown = str(uuid.uuid4())
    vm = next(n for n in crowd if n.type is NotificationType.VM)
    refused: list[tuple[dict[str, Any], str]] = [
        ({"marker": unknown}, f"Marker {unknown} could not be found."),
        ({"marker": "12345"}, "Marker 12345 could not be found."),
        ({"marker": vm.id, "type": "PROCESS"}, f"Marker {vm.id} could not be found."),  # not in the list
        (
            {"sort_key": "payload"},
            "Sort key 'payload' is not one of created_at, generated_time, hostname, id",
        ),
        ({"sort_key": "id", "sort_dir": ["asc", "desc"]}, "More sort directions than sort keys"),
        ({"generated-since": "soon"}, "Invalid generated-since value"),
    ]
    for params, message in refused:
        answer = await client.get("/v1/notifications", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert message in answer.json()["badRequest"]["message"], answer.text
    sideways = await client.get("/v1/notifications", params={"sort_dir": "sideways"})
    assert sideways.status_code == 400 and "sort_dir" in sideways.text
