"""Notifications and their steps: round trips, filters, ordering, and all-or-nothing creation."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName, NotificationId, SegmentId
from haven.domain.incidents import NotificationStatus, NotificationType, Step, StepState
from haven.store import Store, bulk

from .builders import notification, steps


def test_round_trip_keeps_every_field(store: Store) -> None:
    original = notification(
        "compute-1",
        NotificationStatus.RUNNING,
        created_at=1_800_000_000.123456,
        type=NotificationType.PROCESS,
        payload={"process_name": "nova-compute", "nested": {"list": [1, 2.5, None, True]}, "ü": "ñ"},
        segment_id=SegmentId("seg-1"),
    )
    assert store.create_notification(original) == original
    assert store.get_notification(original.id) == original
    assert store.get_notification(original.id).created_at == 1_800_000_000.123456


def test_steps_round_trip_in_seq_order(store: Store) -> None:
    parent = notification()
    given = [
        Step(parent.id, seq=2, kind="evacuate", subject="server-b", detail={"target": "compute-2"}),
        Step(parent.id, seq=0, kind="fence", subject="compute-1", state=StepState.DONE, attempts=2,
             started_at=1000.5, finished_at=1001.25),
        Step(parent.id, seq=1, kind="force_down", subject="compute-1", state=StepState.RUNNING,
             started_at=1002.0),
    ]  # fmt: skip
    store.create_notification(parent, given)
    assert store.list_steps(parent.id) == sorted(given, key=lambda step: step.seq)
    assert all(isinstance(step.state, StepState) for step in store.list_steps(parent.id))


def test_duplicate_id_conflicts(store: Store) -> None:
    first = store.create_notification(notification("compute-1"))
    with pytest.raises(Conflict, match=first.id):
        store.create_notification(dataclasses.replace(first, hostname=HostName("compute-2")))
    assert store.get_notification(first.id) == first


def test_a_seq_given_twice_is_refused(store: Store) -> None:
    parent = notification()
    with pytest.raises(ValueError, match=r"seq \[1\]"):
        store.create_notification(parent, [*steps(parent, 3), *steps(parent, 1, start=1)])
    with pytest.raises(NotFound):
        store.get_notification(parent.id)


def test_a_failure_while_adding_steps_leaves_no_notification(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> int:
        raise RuntimeError("disk on fire")

    parent = notification()
    monkeypatch.setattr(bulk, "insert_rows", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        store.create_notification(parent, steps(parent, 3))
    monkeypatch.undo()
    with pytest.raises(NotFound):
        store.get_notification(parent.id)


def test_steps_of_another_notification_are_refused(store: Store) -> None:
    parent, other = notification(), notification()
    with pytest.raises(ValueError, match=other.id):
        store.create_notification(parent, steps(other, 1))
    assert store.list_notifications() == []


def test_unknown_notification_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.get_notification(NotificationId("nope"))
    with pytest.raises(NotFound):
        store.list_steps(NotificationId("nope"))


def test_a_notification_without_steps_lists_none(store: Store) -> None:
    bare = store.create_notification(notification())
    assert store.list_steps(bare.id) == []


def test_list_is_newest_first_and_filters(store: Store) -> None:
    made = [
        store.create_notification(notification("a", NotificationStatus.NEW, created_at=10.0)),
        store.create_notification(notification("b", NotificationStatus.RUNNING, created_at=30.0)),
        store.create_notification(
            notification("a", NotificationStatus.FINISHED, created_at=20.0, type=NotificationType.VM)
        ),
        store.create_notification(notification("c", NotificationStatus.ERROR, created_at=40.0)),
    ]
    new_a, running_b, finished_a, error_c = made

    assert store.list_notifications() == [error_c, running_b, finished_a, new_a]
    unfinished = {NotificationStatus.NEW, NotificationStatus.RUNNING, NotificationStatus.ERROR}
    assert store.list_notifications(statuses=unfinished) == [error_c, running_b, new_a]
    assert store.list_notifications(statuses=[]) == []
    assert store.list_notifications(type=NotificationType.VM) == [finished_a]
    assert store.list_notifications(hostname=HostName("a")) == [finished_a, new_a]
    assert store.list_notifications(hostname=HostName("a"), statuses=[NotificationStatus.NEW]) == [new_a]
    assert store.list_notifications(limit=2) == [error_c, running_b]


def test_a_payload_that_is_not_json_is_a_type_error(store: Store) -> None:
    with pytest.raises(TypeError, match="JSON"):
        store.create_notification(notification(payload={"when": object()}))
    parent = notification()
    with pytest.raises(TypeError, match="JSON"):
        store.create_notification(parent, [Step(parent.id, seq=0, kind="k", subject="s", detail={"x": {1j}})])
    assert store.list_notifications() == []


def test_read_only_mappings_are_stored_as_objects(store: Store) -> None:
    frozen = MappingProxyType({"inner": MappingProxyType({"a": 1}), "hosts": ("h1", "h2")})
    parent = notification(payload=frozen)
    store.create_notification(parent, [Step(parent.id, seq=0, kind="k", subject="s", detail=frozen)])
    expected = {"inner": {"a": 1}, "hosts": ["h1", "h2"]}
    assert store.get_notification(parent.id).payload == expected
    assert store.list_steps(parent.id)[0].detail == expected
