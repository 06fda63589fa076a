"""save_progress, the recovery engine's write path: everything in one call is committed, or nothing."""

from __future__ import annotations

import dataclasses
import time

import pytest

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import NotificationId
from haven.domain.incidents import NotificationStatus, Step, StepState
from haven.store import Store

from .builders import notification, steps


def _done(step: Step, at: float) -> Step:
    return dataclasses.replace(
        step, state=StepState.DONE, attempts=step.attempts + 1, started_at=at, finished_at=at + 0.5,
        detail={"target": "compute-9", "tries": [at]}, kind=f"{step.kind}!", subject=f"{step.subject}!",
    )  # fmt: skip


def test_updates_steps_adds_steps_and_moves_the_notification(store: Store) -> None:
    parent = notification()
    store.create_notification(parent, steps(parent, 4))
    first = store.list_steps(parent.id)
    changed = [_done(first[1], 1100.0), _done(first[3], 1200.0)]
    added = steps(parent, 2, start=4)

    store.save_progress(
        parent.id,
        steps=changed,
        new_steps=added,
        status=NotificationStatus.RUNNING,
        payload={"phase": "evacuate"},
        now=1300.0,
    )

    assert store.list_steps(parent.id) == [first[0], changed[0], first[2], changed[1], *added]
    assert store.get_notification(parent.id) == dataclasses.replace(
        parent, status=NotificationStatus.RUNNING, payload={"phase": "evacuate"}, updated_at=1300.0
    )


def test_without_status_or_payload_only_updated_at_moves(store: Store) -> None:
    parent = store.create_notification(notification(status=NotificationStatus.RUNNING))
    store.save_progress(parent.id, now=5000.0)
    assert store.get_notification(parent.id) == dataclasses.replace(parent, updated_at=5000.0)


def test_a_failing_insert_leaves_earlier_updates_uncommitted(store: Store) -> None:
    parent = notification(status=NotificationStatus.NEW)
    store.create_notification(parent, steps(parent, 3))
    before = store.list_steps(parent.id)

    with pytest.raises(Conflict):
        store.save_progress(
            parent.id,
            steps=[_done(step, 2000.0) for step in before],
            new_steps=steps(parent, 2, start=2),  # seq 2 exists already
            status=NotificationStatus.RUNNING,
            payload={"lost": True},
            now=2000.0,
        )

    assert store.list_steps(parent.id) == before
    assert store.get_notification(parent.id) == parent


def test_an_unknown_step_saves_nothing(store: Store) -> None:
    parent = notification(status=NotificationStatus.NEW)
    store.create_notification(parent, steps(parent, 2))
    before = store.list_steps(parent.id)
    ghost = dataclasses.replace(before[0], seq=99)
    with pytest.raises(NotFound, match="99"):
        store.save_progress(
            parent.id, steps=[_done(before[0], 3000.0), ghost], status=NotificationStatus.RUNNING, now=3000.0
        )
    assert store.list_steps(parent.id) == before
    assert store.get_notification(parent.id) == parent


def test_unknown_notification_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="nope"):
        store.save_progress(NotificationId("nope"), status=NotificationStatus.RUNNING, now=1.0)


def test_a_seq_given_twice_is_refused(store: Store) -> None:
    parent = notification()
    store.create_notification(parent, steps(parent, 2))
    first = store.list_steps(parent.id)[0]
    with pytest.raises(ValueError, match="twice"):
        store.save_progress(parent.id, steps=[_done(first, 1.0), _done(first, 2.0)], now=2.0)
    with pytest.raises(ValueError, match="twice"):
        store.save_progress(parent.id, new_steps=[*steps(parent, 1, start=5)] * 2, now=2.0)
    assert store.list_steps(parent.id) == steps(parent, 2)


def test_steps_of_another_notification_are_refused(store: Store) -> None:
    parent, other = notification(), notification()
    store.create_notification(parent, steps(parent, 1))
    store.create_notification(other, steps(other, 1))
    with pytest.raises(ValueError, match=other.id):
        store.save_progress(parent.id, steps=store.list_steps(other.id), now=1.0)


def test_eight_hundred_step_updates_in_one_call(store: Store, store_url: str) -> None:
    parent = notification(status=NotificationStatus.RUNNING)
    store.create_notification(parent, steps(parent, 800))
    planned = store.list_steps(parent.id)
    timings = []
    for round_ in range(5):
        changed = [_done(step, 4000.0 + round_) for step in planned]
        started = time.perf_counter()
        store.save_progress(parent.id, steps=changed, now=4000.0 + round_)
        timings.append(time.perf_counter() - started)
    best, worst = min(timings) * 1000, max(timings) * 1000
    backend = store_url.split(":")[0]
    print(f"\nsave_progress of 800 steps on {backend}: best {best:.1f} ms, worst {worst:.1f} ms")
    assert store.list_steps(parent.id) == changed
