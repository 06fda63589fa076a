"""Hosts of segments: round trips, one segment per host name, bulk add and bulk conditions."""

from __future__ import annotations

import time

import pytest

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import NotificationStatus, SegmentHost
from haven.domain.liveness import HostCondition
from haven.store import Store

from .builders import host, notification, segment


def test_round_trip_keeps_every_field(store: Store) -> None:
    rack = store.create_segment(segment())
    original = host(
        "compute-1",
        rack,
        type="COMPUTE,SSH",
        control_attributes="SSH,IPMI",
        reserved=True,
        on_maintenance=True,
        condition="dead",
        disabled_by_haven=True,
    )
    assert store.add_host(original) == original
    assert store.get_host(HostName("compute-1")) == original
    assert store.list_hosts(rack.id) == [original]


def test_defaults_round_trip(store: Store) -> None:
    rack = store.create_segment(segment())
    original = host("compute-1", rack)
    store.add_host(original)
    assert store.get_host(original.name) == original


def test_a_host_name_belongs_to_one_segment(store: Store) -> None:
    first = store.create_segment(segment("rack-1"))
    second = store.create_segment(segment("rack-2"))
    store.add_host(host("compute-1", first))
    with pytest.raises(Conflict, match="compute-1"):
        store.add_host(host("compute-1", second))
    assert store.get_host(HostName("compute-1")).segment_id == first.id


def test_unknown_segment_or_host_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="no-such-segment"):
        store.add_host(SegmentHost(name=HostName("compute-1"), segment_id=SegmentId("no-such-segment")))
    with pytest.raises(NotFound, match="ghost"):
        store.get_host(HostName("ghost"))
    with pytest.raises(NotFound):
        store.update_host(HostName("ghost"), reserved=True)
    with pytest.raises(NotFound):
        store.delete_host(HostName("ghost"))


def test_list_filters_by_segment_and_orders_by_name(store: Store) -> None:
    first = store.create_segment(segment("rack-1"))
    second = store.create_segment(segment("rack-2"))
    store.add_hosts([host("b", first), host("c", second), host("a", first)])
    assert [h.name for h in store.list_hosts(first.id)] == ["a", "b"]
    assert [h.name for h in store.list_hosts()] == ["a", "b", "c"]
    assert store.list_hosts(SegmentId("empty")) == []


def test_add_hosts_in_bulk(store: Store, store_url: str) -> None:
    rack = store.create_segment(segment())
    many = [host(f"compute-{i:05d}", rack, reserved=i % 7 == 0) for i in range(10_000)]
    started = time.perf_counter()
    store.add_hosts(many)
    elapsed = time.perf_counter() - started
    print(f"\nadd_hosts of 10,000 on {store_url.split(':')[0]}: {elapsed * 1000:.0f} ms")
    assert store.list_hosts(rack.id) == many


def test_add_hosts_adds_all_or_none(store: Store) -> None:
    rack = store.create_segment(segment())
    store.add_host(host("compute-5", rack))
    with pytest.raises(Conflict, match="compute-5"):
        store.add_hosts([host(f"compute-{i}", rack) for i in range(10)])
    with pytest.raises(Conflict, match="more than once"):
        store.add_hosts([host("x", rack), host("y", rack), host("x", rack)])
    with pytest.raises(NotFound, match="nowhere"):
        store.add_hosts([host("z", rack), SegmentHost(name=HostName("w"), segment_id=SegmentId("nowhere"))])
    assert [h.name for h in store.list_hosts()] == ["compute-5"]
    store.add_hosts([])


def test_update_host_fields_and_move_it(store: Store) -> None:
    first = store.create_segment(segment("rack-1"))
    second = store.create_segment(segment("rack-2"))
    added = store.add_host(host("compute-1", first))
    moved = store.update_host(HostName("compute-1"), segment_id=second.id, on_maintenance=True)
    assert moved == host("compute-1", second, on_maintenance=True, uuid=added.uuid)
    assert store.list_hosts(first.id) == []
    assert store.list_hosts(second.id) == [moved]
    with pytest.raises(NotFound, match="nowhere"):
        store.update_host(HostName("compute-1"), segment_id="nowhere")
    with pytest.raises(TypeError, match="reserved"):
        store.update_host(HostName("compute-1"), reserved="no")
    with pytest.raises(TypeError, match="colour"):
        store.update_host(HostName("compute-1"), colour="red")
    assert store.get_host(HostName("compute-1")) == moved


def test_rename_host_refuses_a_taken_name(store: Store) -> None:
    rack = store.create_segment(segment())
    store.add_hosts([host("a", rack), host("b", rack)])
    assert store.update_host(HostName("a"), name="c").name == "c"
    with pytest.raises(Conflict, match="b"):
        store.update_host(HostName("c"), name="b")
    assert [h.name for h in store.list_hosts()] == ["b", "c"]


def test_set_host_conditions_in_bulk(store: Store) -> None:
    rack = store.create_segment(segment())
    store.add_hosts([host(f"compute-{i}", rack) for i in range(100)])
    verdicts = {HostName(f"compute-{i}"): HostCondition.DEAD for i in range(0, 100, 3)}
    store.set_host_conditions(verdicts)
    by_name = {h.name: h.condition for h in store.list_hosts()}
    assert by_name == {name: "dead" if name in verdicts else "healthy" for name in by_name}
    store.set_host_conditions({})


def test_set_host_conditions_skips_hosts_removed_meanwhile(store: Store) -> None:
    rack = store.create_segment(segment())
    store.add_hosts([host("a", rack), host("b", rack)])
    store.set_host_conditions({HostName("a"): "dead", HostName("ghost"): "dead", HostName("b"): "suspect"})
    assert [(h.name, h.condition) for h in store.list_hosts()] == [("a", "dead"), ("b", "suspect")]
    with pytest.raises(NotFound):
        store.get_host(HostName("ghost"))


def test_delete_host(store: Store) -> None:
    rack = store.create_segment(segment())
    store.add_hosts([host("a", rack), host("b", rack)])
    store.delete_host(HostName("a"))
    assert [h.name for h in store.list_hosts()] == ["b"]


def test_delete_host_conflicts_while_its_notification_is_unfinished(store: Store) -> None:
    rack = store.create_segment(segment())
    store.add_host(host("compute-1", rack))
    running = store.create_notification(notification("compute-1", NotificationStatus.RUNNING))
    with pytest.raises(Conflict, match=running.id):
        store.delete_host(HostName("compute-1"))
    store.save_progress(running.id, status=NotificationStatus.FINISHED, now=2000.0)
    store.delete_host(HostName("compute-1"))
    assert store.list_hosts() == []
