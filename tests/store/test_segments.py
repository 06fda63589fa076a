"""Segments: round trips, unique names, lookups by id or name, updates and guarded deletion."""

from __future__ import annotations

import pytest

from haven.domain.errors import Conflict, NotFound, UserError
from haven.domain.ids import SegmentId
from haven.domain.incidents import NotificationStatus, RecoveryMethod, Segment
from haven.store import Store

from .builders import host, new_id, notification, segment


def test_round_trip_keeps_every_field(store: Store) -> None:
    original = segment(
        "rack-7",
        recovery_method=RecoveryMethod.RH_PRIORITY,
        service_type="COMPUTE_NOVA",
        enabled=False,
        description="row 3, rack 7 — ünïcode",
    )
    assert store.create_segment(original) == original
    assert store.get_segment(original.id) == original
    assert store.get_segment("rack-7") == original
    assert isinstance(store.get_segment(original.id).recovery_method, RecoveryMethod)


def test_names_are_unique(store: Store) -> None:
    store.create_segment(segment("rack-1"))
    with pytest.raises(Conflict, match="rack-1"):
        store.create_segment(segment("rack-1"))
    assert len(store.list_segments()) == 1


def test_ids_are_unique(store: Store) -> None:
    first = store.create_segment(segment("rack-1"))
    with pytest.raises(Conflict):
        store.create_segment(Segment(id=first.id, name="rack-2"))


def test_unknown_segment_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.get_segment("nope")
    with pytest.raises(NotFound):
        store.update_segment(SegmentId("nope"), enabled=False)
    with pytest.raises(NotFound):
        store.delete_segment(SegmentId("nope"))


def test_an_id_match_wins_over_a_name_match(store: Store) -> None:
    by_id = store.create_segment(segment("rack-1"))
    store.create_segment(Segment(id=SegmentId(new_id()), name=by_id.id))
    assert store.get_segment(by_id.id) == by_id


def test_list_is_ordered_by_name(store: Store) -> None:
    for name in ["c", "a", "b"]:
        store.create_segment(segment(name))
    assert [s.name for s in store.list_segments()] == ["a", "b", "c"]


def test_update_changes_fields_and_accepts_enum_values_as_strings(store: Store) -> None:
    created = store.create_segment(segment("rack-1"))
    updated = store.update_segment(
        created.id, name="rack-one", recovery_method="reserved_host", enabled=False, description="d"
    )
    assert updated == Segment(
        id=created.id,
        name="rack-one",
        recovery_method=RecoveryMethod.RESERVED_HOST,
        enabled=False,
        description="d",
    )
    assert store.get_segment(created.id) == updated


def test_update_refuses_bad_fields_and_values(store: Store) -> None:
    created = store.create_segment(segment("rack-1"))
    with pytest.raises(TypeError, match="colour"):
        store.update_segment(created.id, colour="blue")
    with pytest.raises(TypeError, match="id"):
        store.update_segment(created.id, id="other")
    with pytest.raises(TypeError, match="enabled"):
        store.update_segment(created.id, enabled="yes")
    with pytest.raises(ValueError, match="recovery_method"):
        store.update_segment(created.id, recovery_method="pray")
    assert store.get_segment(created.id) == created


def test_update_to_a_taken_name_conflicts(store: Store) -> None:
    store.create_segment(segment("rack-1"))
    second = store.create_segment(segment("rack-2"))
    with pytest.raises(Conflict, match="rack-1"):
        store.update_segment(second.id, name="rack-1")
    assert store.get_segment(second.id).name == "rack-2"


def test_delete_removes_the_segment_and_its_hosts(store: Store) -> None:
    doomed = store.create_segment(segment("rack-1"))
    kept = store.create_segment(segment("rack-2"))
    store.add_hosts([host("a", doomed), host("b", doomed), host("c", kept)])
    store.delete_segment(doomed.id)
    assert store.list_segments() == [kept]
    assert [h.name for h in store.list_hosts()] == ["c"]


@pytest.mark.parametrize(
    "status", [NotificationStatus.NEW, NotificationStatus.RUNNING, NotificationStatus.ERROR]
)
def test_delete_conflicts_while_a_host_has_an_unfinished_notification(
    store: Store, status: NotificationStatus
) -> None:
    busy = store.create_segment(segment("rack-1"))
    store.add_host(host("compute-1", busy))
    unfinished = store.create_notification(notification("compute-1", status))
    with pytest.raises(Conflict, match=unfinished.id):
        store.delete_segment(busy.id)
    assert store.get_segment(busy.id) == busy
    assert len(store.list_hosts(busy.id)) == 1


@pytest.mark.parametrize(
    "status", [NotificationStatus.FINISHED, NotificationStatus.FAILED, NotificationStatus.IGNORED]
)
def test_delete_is_allowed_once_notifications_are_over(store: Store, status: NotificationStatus) -> None:
    done = store.create_segment(segment("rack-1"))
    store.add_host(host("compute-1", done))
    store.create_notification(notification("compute-1", status))
    store.delete_segment(done.id)
    assert store.list_segments() == []


def test_delete_conflicts_while_a_notification_names_the_segment(store: Store) -> None:
    busy = store.create_segment(segment("rack-1"))
    store.create_notification(notification("gone-host", NotificationStatus.RUNNING, segment_id=busy.id))
    with pytest.raises(Conflict):
        store.delete_segment(busy.id)


def test_notifications_of_other_segments_do_not_block_deletion(store: Store) -> None:
    free = store.create_segment(segment("rack-1"))
    other = store.create_segment(segment("rack-2"))
    store.add_host(host("compute-9", other))
    store.create_notification(notification("compute-9", NotificationStatus.RUNNING, segment_id=other.id))
    store.delete_segment(free.id)
    assert store.list_segments() == [other]


@pytest.mark.postgres
def test_a_name_too_long_for_its_column_is_a_user_error(postgres_store: Store) -> None:
    # SQLite ignores VARCHAR lengths; PostgreSQL refuses, and that is the caller's input, not an outage.
    with pytest.raises(UserError, match="too long"):
        postgres_store.create_segment(segment("x" * 300))
    assert postgres_store.list_segments() == []
