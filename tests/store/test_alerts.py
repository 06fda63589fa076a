"""Alerts: one active alert per kind, segment and host; clearing by filter; newest first."""

from __future__ import annotations

import pytest

from haven.domain.errors import Conflict
from haven.domain.ids import HostName, SegmentId
from haven.domain.incidents import Alert, AlertKind
from haven.store import Store

from .builders import alert

RACK = SegmentId("rack-1")
HOST = HostName("compute-1")


def test_round_trip_keeps_every_field(store: Store) -> None:
    original = alert(AlertKind.FENCE_FAILED, raised_at=1_800_000_000.5, segment_id=RACK, host=HOST)
    assert store.raise_alert(original) == original
    assert store.list_alerts() == [original]
    bare = alert(AlertKind.GATE_HOLD)
    store.raise_alert(bare)
    assert store.list_alerts() == [original, bare]


@pytest.mark.parametrize(("segment_id", "host"), [(RACK, HOST), (RACK, None), (None, HOST), (None, None)])
def test_raising_again_returns_the_active_alert(
    store: Store, segment_id: SegmentId | None, host: HostName | None
) -> None:
    first = store.raise_alert(alert(AlertKind.ISOLATED, raised_at=10.0, segment_id=segment_id, host=host))
    again = store.raise_alert(alert(AlertKind.ISOLATED, raised_at=20.0, segment_id=segment_id, host=host))
    assert again == first
    assert store.list_alerts() == [first]


def test_alerts_about_different_things_are_kept_apart(store: Store) -> None:
    raised = [
        store.raise_alert(alert(AlertKind.ISOLATED, raised_at=1.0, segment_id=RACK, host=HOST)),
        store.raise_alert(alert(AlertKind.AGENT_DOWN, raised_at=2.0, segment_id=RACK, host=HOST)),
        store.raise_alert(alert(AlertKind.ISOLATED, raised_at=3.0, segment_id=RACK, host=HostName("other"))),
        store.raise_alert(alert(AlertKind.ISOLATED, raised_at=4.0, segment_id=RACK)),
        store.raise_alert(alert(AlertKind.ISOLATED, raised_at=5.0, host=HOST)),
    ]
    assert store.list_alerts() == raised[::-1]


def test_after_clearing_the_same_alert_can_be_raised_anew(store: Store) -> None:
    first = store.raise_alert(alert(AlertKind.GATE_HOLD, raised_at=10.0, segment_id=RACK))
    assert store.clear_alerts(now=15.0, kind=AlertKind.GATE_HOLD, segment_id=RACK) == 1
    second = store.raise_alert(alert(AlertKind.GATE_HOLD, raised_at=20.0, segment_id=RACK))
    assert second != first
    assert store.list_alerts() == [second]
    cleared_first = store.list_alerts(active_only=False)[1]
    assert (cleared_first.id, cleared_first.cleared_at) == (first.id, 15.0)


def test_clear_matches_every_given_filter_and_counts(store: Store) -> None:
    store.raise_alert(alert(AlertKind.ISOLATED, raised_at=1.0, segment_id=RACK, host=HOST))
    store.raise_alert(alert(AlertKind.ISOLATED, raised_at=2.0, segment_id=RACK, host=HostName("other")))
    store.raise_alert(alert(AlertKind.AGENT_DOWN, raised_at=3.0, segment_id=RACK, host=HOST))
    store.raise_alert(alert(AlertKind.GATE_HOLD, raised_at=4.0, segment_id=SegmentId("rack-2")))

    assert store.clear_alerts(now=10.0, kind=AlertKind.ISOLATED, host=HOST) == 1
    assert store.clear_alerts(now=11.0, kind=AlertKind.ISOLATED, host=HOST) == 0
    assert store.clear_alerts(now=12.0, segment_id=RACK) == 2
    assert [a.kind for a in store.list_alerts()] == [AlertKind.GATE_HOLD]
    assert store.clear_alerts(now=13.0) == 1
    assert store.list_alerts() == []
    everything = store.list_alerts(active_only=False)
    assert [a.raised_at for a in everything] == [4.0, 3.0, 2.0, 1.0]
    assert [a.cleared_at for a in everything] == [13.0, 12.0, 12.0, 10.0]


def test_a_reused_id_conflicts(store: Store) -> None:
    first = store.raise_alert(alert(AlertKind.ISOLATED, host=HOST))
    with pytest.raises(Conflict, match=first.id):
        store.raise_alert(Alert(id=first.id, kind=AlertKind.AGENT_DOWN, message="m", raised_at=2.0))


def test_active_with_those_cleared_since_a_time(store: Store) -> None:
    # haven.explain.alerting reads a control-plane alert's cleared predecessors (a flapping hold is one
    # lasting alert), without reading every alert ever raised at each tick
    old = store.raise_alert(alert(AlertKind.CONTROL_PLANE, raised_at=10.0))
    store.clear_alerts(now=20.0, kind=AlertKind.CONTROL_PLANE)
    recent = store.raise_alert(alert(AlertKind.CONTROL_PLANE, raised_at=30.0))
    store.clear_alerts(now=40.0, kind=AlertKind.CONTROL_PLANE)
    active = store.raise_alert(alert(AlertKind.CONTROL_PLANE, raised_at=50.0))
    assert [a.id for a in store.list_alerts(cleared_since=40.0)] == [active.id, recent.id]
    assert [a.id for a in store.list_alerts(cleared_since=41.0)] == [active.id]
    assert [a.id for a in store.list_alerts()] == [active.id]
    assert len(store.list_alerts(active_only=False, cleared_since=41.0)) == 3  # every alert, as before
    assert old.id in {a.id for a in store.list_alerts(active_only=False)}
