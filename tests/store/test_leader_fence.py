"""The store's leader fence: every write a leader makes carries its epoch, and a deposed one's is refused.

On SQLite and PostgreSQL (``store_url``). Two Store objects on one database stand for two engines.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from haven.domain.errors import Deposed
from haven.domain.ids import HostName
from haven.domain.incidents import Alert, AlertKind
from haven.store import Store

from .builders import host, notification, segment

HOST = HostName("compute-1")


def _alert(name: str) -> Alert:
    return Alert(name, AlertKind.ISOLATED, f"{HOST}: isolated", 1.0, host=HOST)


@pytest.fixture
def engines(store_url: str) -> Iterator[tuple[Store, Store]]:
    with Store.open(store_url) as old, Store.open(store_url) as new:
        rack = old.create_segment(segment())
        old.add_host(host(HOST, rack))
        yield old, new


def test_a_leader_s_writes_raise_the_fence_and_an_older_leader_s_are_refused(
    engines: tuple[Store, Store],
) -> None:
    old, new = engines
    assert new.leader_epoch() == 0  # no coordinated leader has written yet
    old.raise_alert(_alert("a-1"), epoch=5)
    old.set_host_conditions({HOST: "isolated"}, epoch=5)
    assert new.leader_epoch() == 5
    assert new.claim_unfinished(6) == 0  # a new leader takes over: the fence is at 6 from now on
    assert new.leader_epoch() == 6

    refused = [
        lambda: old.raise_alert(_alert("a-2"), epoch=5),
        lambda: old.clear_alerts(now=2.0, kind=AlertKind.ISOLATED, epoch=5),
        lambda: old.set_host_conditions({HOST: "dead"}, epoch=5),
        lambda: old.update_host(HOST, disabled_by_haven=True, epoch=5),
        lambda: old.create_notification(notification(), epoch=5),
    ]
    for write in refused:
        with pytest.raises(Deposed) as deposed:
            write()
        assert (deposed.value.epoch, deposed.value.owner_epoch) == (5, 6)
        assert "leader epoch 6 took over" in str(deposed.value)
    # Nothing of them was written.
    assert [a.id for a in new.list_alerts()] == ["a-1"]
    assert new.get_host(HOST).condition == "isolated" and not new.get_host(HOST).disabled_by_haven
    assert new.list_notifications() == []

    new.clear_alerts(now=3.0, kind=AlertKind.ISOLATED, epoch=6)  # the leader's own writes go through
    new.create_notification(notification(), epoch=7)  # and a newer epoch may always write
    assert new.list_alerts() == [] and new.leader_epoch() == 7
    with pytest.raises(Deposed):
        new.claim_unfinished(6)  # a leader whose term ended cannot begin it again


def test_writes_without_an_epoch_are_not_fenced(engines: tuple[Store, Store]) -> None:
    """The API (a monitor's notification, an operator's host update) and a lone engine write as before."""
    old, new = engines
    new.claim_unfinished(9)
    note = old.create_notification(notification())
    old.raise_alert(_alert("a-1"))
    old.update_host(HOST, on_maintenance=True)
    assert [n.id for n in new.list_notifications()] == [note.id] and new.get_host(HOST).on_maintenance
    assert new.leader_epoch() == 9
