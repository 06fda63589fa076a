"""Segments and hosts: their own uuid, their record times, and lists paged in SQL (both backends).

Masakari's behaviour these follow (openstack/masakari):
- masakari/db/sqlalchemy/models.py: hosts have a ``uuid`` column of their own and every row a
  ``created_at`` (set on insert) and ``updated_at`` (set on update, null before), from oslo.db's
  TimestampMixin; masakari/ha/api.py ``HostAPI.update_host`` renames the same row, so its uuid stays.
- masakari/db/sqlalchemy/api.py ``host_get_all_by_filters``/``failover_segment_get_all_by_filters``:
  filters, then ``paginate_query`` (sort keys, a marker row, a limit) in SQL; an unknown marker is
  ``MarkerNotFound``.
"""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from haven.domain.ids import HostName, public_number
from haven.domain.listing import ASC, DESC, Marker, MarkerNotFound, PageQuery
from haven.store import Store, migrate

from .builders import host, segment


def test_a_host_keeps_its_uuid_across_a_rename(store: Store) -> None:
    rack = store.create_segment(segment())
    added = store.add_host(host("compute-1", rack, uuid=""))  # "": the store gives one
    assert uuid.UUID(added.uuid).version == 4
    renamed = store.update_host(HostName("compute-1"), name="compute-1b")
    assert renamed.uuid == added.uuid
    assert store.get_host_by_uuid(rack.id, [added.uuid]).name == "compute-1b"
    with pytest.raises(TypeError, match="uuid"):
        store.update_host(HostName("compute-1b"), uuid=str(uuid.uuid4()))


def test_created_at_is_set_on_insert_and_updated_at_on_each_change(store_url: str) -> None:
    times = itertools.count(1000.0, 10.0)
    with Store.open(store_url, wall_clock=lambda: next(times)) as store:
        rack = store.create_segment(segment())
        assert (rack.created_at, rack.updated_at) == (1000.0, None)
        added = store.add_host(host("compute-1", rack))
        assert (added.created_at, added.updated_at) == (1010.0, None)
        store.add_hosts([host("compute-2", rack)])
        assert store.get_host(HostName("compute-2")).created_at == 1020.0
        changed = store.update_host(HostName("compute-1"), on_maintenance=True)
        assert (changed.created_at, changed.updated_at) == (1010.0, 1030.0)
        assert store.get_host(HostName("compute-1")).updated_at == 1030.0
        renamed = store.update_segment(rack.id, name="rack-one")
        assert (renamed.created_at, renamed.updated_at) == (1000.0, 1040.0)
        assert store.get_segment(rack.id).updated_at == 1040.0


def _walk(store: Store, segment_id: str, order: tuple[tuple[str, str], ...], size: int) -> list[str]:
    """Every page of the segment's hosts in ``order``, following the marker; their names."""
    seen: list[str] = []
    marker = None
    while True:
        page = store.list_hosts_page(segment_id, PageQuery(order, size, marker))  # type: ignore[arg-type]
        seen.extend(h.name for h in page)
        if len(page) < size:
            return seen
        marker = Marker((page[-1].uuid,))


@pytest.mark.parametrize(
    "order",
    [
        (),
        (("name", DESC),),
        (("reserved", ASC), ("name", DESC)),
        (("updated_at", ASC),),  # NULLs (never changed) last
        (("updated_at", DESC), ("on_maintenance", ASC)),  # NULLs first
        (("number", ASC),),
    ],
)
def test_pages_follow_the_marker_through_ties_and_nulls_without_loss_or_repeat(
    store: Store, order: tuple[tuple[str, str], ...]
) -> None:
    rack = store.create_segment(segment())
    store.add_hosts([host(f"c-{i:03d}", rack, reserved=i % 3 == 0) for i in range(40)])
    for i in range(0, 40, 4):  # some changed (updated_at set, some equal), the rest never
        store.update_host(HostName(f"c-{i:03d}"), on_maintenance=i % 8 == 0)
    whole = [h.name for h in store.list_hosts_page(rack.id, PageQuery(order))]
    assert sorted(whole) == sorted(f"c-{i:03d}" for i in range(40))
    assert _walk(store, rack.id, order, 7) == whole
    if order == (("name", DESC),):
        assert whole == sorted(whole, reverse=True)
    if order == (("number", ASC),):
        numbers = [public_number(h.uuid) for h in store.list_hosts_page(rack.id, PageQuery(order))]
        assert numbers == sorted(numbers)


def test_filters_and_the_marker_are_applied_in_the_query(store: Store) -> None:
    rack = store.create_segment(segment())
    other = store.create_segment(segment("rack-2"))
    store.add_hosts([host(f"c-{i}", rack, reserved=i % 2 == 0) for i in range(6)])
    store.add_hosts([host("elsewhere", other)])
    by_name = (("name", ASC),)
    reserved = store.list_hosts_page(rack.id, PageQuery(by_name), reserved=True)
    assert [h.name for h in reserved] == ["c-0", "c-2", "c-4"]
    after = store.list_hosts_page(rack.id, PageQuery(by_name, 1, Marker((reserved[0].uuid,))), reserved=True)
    assert [h.name for h in after] == ["c-2"]
    number = Marker(("not-a-uuid",), public_number(reserved[1].uuid))  # openstacksdk pages by the id
    assert [
        h.name for h in store.list_hosts_page(rack.id, PageQuery(by_name, None, number), reserved=True)
    ] == ["c-4"]
    elsewhere = store.list_hosts(other.id)[0]
    for marker in (Marker((elsewhere.uuid,)), Marker((str(uuid.uuid4()),)), Marker((reserved[0].uuid,))):
        filters = {"reserved": False} if marker.ids == (reserved[0].uuid,) else {}
        with pytest.raises(MarkerNotFound, match="could not be found"):
            store.list_hosts_page(rack.id, PageQuery(by_name, None, marker), **filters)


def test_segments_are_paged_and_filtered_in_the_query(store: Store) -> None:
    made = [store.create_segment(segment(f"s-{i}", enabled=i != 2)) for i in range(5)]
    query = PageQuery((("name", DESC),), 2)
    first = store.list_segments_page(query)
    assert [s.name for s in first] == ["s-4", "s-3"]
    dashed = str(uuid.UUID(first[-1].id))  # the API shows the dashed form; the marker may be either
    rest = store.list_segments_page(PageQuery(query.order, None, Marker((dashed, first[-1].id))))
    assert [s.name for s in rest] == ["s-2", "s-1", "s-0"]
    assert [s.name for s in store.list_segments_page(PageQuery((("name", ASC),)), enabled=False)] == ["s-2"]
    assert store.list_segments_page(PageQuery(), recovery_method="rh_priority") == []
    assert len(made) == 5


def test_a_store_from_before_keeps_each_hosts_shown_uuid(store_url: str) -> None:
    """Migration 0007: hosts stored before keep the uuid the API showed (uuid5 of their name)."""
    if store_url.startswith("sqlite:///"):
        Path(store_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(store_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            config = migrate.alembic_config()
            config.attributes["connection"] = conn
            command.upgrade(config, "0006")
            rack_id = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
            conn.execute(
                sa.text(
                    "INSERT INTO segments (id, name, recovery_method, service_type, enabled, description, "
                    "mode) VALUES (:id, 'rack-1', 'auto', 'COMPUTE', true, '', 'automatic')"
                ),
                {"id": rack_id},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO hosts (name, segment_id, type, control_attributes, reserved, "
                    "on_maintenance, condition, disabled_by_haven) "
                    "VALUES ('compute-1', :id, 'COMPUTE', 'SSH', false, false, 'healthy', false)"
                ),
                {"id": rack_id},
            )
    finally:
        engine.dispose()
    with Store.open(store_url) as store:
        kept = store.get_host(HostName("compute-1"))
        shown_before = str(uuid.uuid5(uuid.UUID("3f1d5a0c-7f2e-5a7b-9a63-6b1d2f0c4e11"), "compute-1"))
        assert kept.uuid == shown_before and kept.created_at is not None and kept.updated_at is None
        (rack,) = store.list_segments()
        assert rack.created_at is not None and rack.updated_at is None
        store.update_host(HostName("compute-1"), name="compute-one")
        assert store.get_host_by_uuid(rack.id, [shown_before]).name == "compute-one"
        store.add_host(host("compute-1", rack, uuid=""))  # the old name again: a new uuid
        assert store.get_host(HostName("compute-1")).uuid != shown_before
