"""The outbox of published events: appended once per key, due deliveries per sink, outcomes kept, pruned."""

from __future__ import annotations

import dataclasses
import uuid

from haven.domain.publishing import Delivery, Priority, PublishedEvent
from haven.store import Store

HOOK, BUS = "webhook:http://127.0.0.1:9/hook", "rabbitmq:notifications"


def event(key: str, at: float, event_type: str = "haven.notification.create") -> PublishedEvent:
    payload = {"notification_uuid": key, "nested": {"list": [1, 2]}}
    return PublishedEvent(uuid.uuid4().hex, key, event_type, Priority.INFO, payload, at)


def test_an_event_is_kept_with_a_pending_delivery_per_sink_and_its_payload_intact(store: Store) -> None:
    first = event("n1/create", 100.0)
    assert store.append_event(first, [HOOK, BUS]) is True
    due = store.due_deliveries(100.0, [HOOK, BUS])
    assert [(d.event, d.sink, d.attempts, d.delivered_at) for d in due] == [
        (first, BUS, 0, None),
        (first, HOOK, 0, None),
    ]
    assert store.next_delivery_at([HOOK]) == 100.0


def test_the_same_key_twice_adds_nothing(store: Store) -> None:
    assert store.append_event(event("n1/create", 1.0), [HOOK])
    assert store.append_event(event("n1/create", 2.0), [HOOK]) is False
    assert len(store.list_deliveries()) == 1


def test_due_means_pending_for_a_listed_sink_and_its_time_come_oldest_first(store: Store) -> None:
    old, new = event("a", 1.0), event("b", 2.0)
    store.append_event(new, [HOOK, BUS])
    store.append_event(old, [HOOK, BUS])
    assert [d.event.key for d in store.due_deliveries(5.0, [HOOK])] == ["a", "b"]
    assert store.due_deliveries(0.5, [HOOK]) == []
    assert store.due_deliveries(5.0, ["webhook:elsewhere"]) == []
    assert len(store.due_deliveries(5.0, [HOOK, BUS], limit=3)) == 3


def test_an_attempt_is_recorded_and_moves_the_next_time(store: Store) -> None:
    store.append_event(event("a", 1.0), [HOOK, BUS])
    hook = store.due_deliveries(1.0, [HOOK])[0]
    failed = dataclasses.replace(hook, attempts=1, next_attempt_at=31.0, last_error="503 Service Unavailable")
    store.record_delivery(failed)
    assert store.due_deliveries(30.0, [HOOK]) == []
    assert store.due_deliveries(31.0, [HOOK]) == [failed]
    assert store.next_delivery_at([HOOK]) == 31.0
    delivered = dataclasses.replace(failed, attempts=2, delivered_at=32.0, last_error=None)
    store.record_delivery(delivered)
    assert store.due_deliveries(1e12, [HOOK]) == []
    assert store.next_delivery_at([HOOK]) is None
    assert store.next_delivery_at([HOOK, BUS]) == 1.0  # the bus has not had it yet
    counts = store.outbox_counts()
    assert (counts.pending, counts.delivered, counts.abandoned) == (1, 1, 0)
    assert dict(counts.by_sink) == {BUS: 1}


def test_abandoned_deliveries_are_not_due_and_sinks_no_longer_configured_are_abandoned(store: Store) -> None:
    store.append_event(event("a", 1.0), [HOOK, BUS])
    assert store.abandon_deliveries(except_sinks=[BUS], reason="sink no longer configured") == 1
    assert store.due_deliveries(9.0, [HOOK]) == []
    [gone] = [d for d in store.list_deliveries() if d.sink == HOOK]
    assert gone.abandoned and gone.last_error == "sink no longer configured"
    assert [d.sink for d in store.due_deliveries(9.0, [HOOK, BUS])] == [BUS]


def _deliver_all(store: Store, now: float) -> None:
    for d in store.due_deliveries(now, [HOOK, BUS], limit=1000):
        store.record_delivery(dataclasses.replace(d, attempts=1, delivered_at=now))


def test_pruning_keeps_the_newest_finished_events_and_every_pending_one(store: Store) -> None:
    for i in range(6):
        store.append_event(event(f"done-{i}", float(i)), [HOOK, BUS])
    _deliver_all(store, 10.0)
    store.append_event(event("pending", 0.5), [HOOK, BUS])
    half = store.due_deliveries(11.0, [HOOK])[0]
    store.record_delivery(dataclasses.replace(half, attempts=1, delivered_at=11.0))  # BUS still owed
    assert store.prune_outbox(keep=2) == 4
    kept = {d.event.key for d in store.list_deliveries()}
    assert kept == {"done-4", "done-5", "pending"}
    assert store.prune_outbox(keep=2) == 0
    # A pruned key can be appended again; a kept one cannot.
    assert store.append_event(event("done-5", 20.0), [HOOK]) is False
    assert store.append_event(event("done-0", 20.0), [HOOK]) is True


def test_list_deliveries_by_event_type(store: Store) -> None:
    store.append_event(event("a", 1.0, "haven.recovery.start"), [HOOK])
    store.append_event(event("b", 2.0, "haven.recovery.end"), [HOOK])
    found: list[Delivery] = store.list_deliveries("haven.recovery.end")
    assert [d.event.key for d in found] == ["b"]
