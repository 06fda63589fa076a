"""The control plane's persisted actions: intent before effect, one unfinished per replica, history."""

from __future__ import annotations

import pytest

from haven.domain.controlplane import ActionDetail, ActionKind, ActionRecord, ActionState, ServiceName
from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import HostName
from haven.store import Store


def _action(id_: str, kind: ActionKind, at: float, host: str = "ctl-1") -> ActionRecord:
    return ActionRecord(
        id_, kind, ServiceName("nova-api"), HostName(host), ActionState.ISSUED, "why",
        ActionDetail(invocation_id="abc", backend="nova_api"), at,
    )  # fmt: skip


def test_one_unfinished_action_per_replica_then_history(store: Store) -> None:
    store.issue_action(_action("a1", ActionKind.DRAIN, 1.0))
    with pytest.raises(Conflict):
        store.issue_action(_action("a2", ActionKind.RESTART, 2.0))
    store.issue_action(_action("b1", ActionKind.RESTART, 2.0, host="ctl-2"))  # another replica: fine
    assert [a.id for a in store.unfinished_actions()] == ["a1", "b1"]
    store.finish_action("a1", ActionState.DONE, 3.0)
    with pytest.raises(NotFound):
        store.finish_action("a1", ActionState.FAILED, 4.0, "twice")
    store.issue_action(_action("a2", ActionKind.RESTART, 5.0))
    store.finish_action("a2", ActionState.FAILED, 6.0, "boom")
    history = store.actions_since(2.0)
    assert [(a.id, a.state, a.error) for a in history] == [
        ("b1", ActionState.ISSUED, ""),
        ("a2", ActionState.FAILED, "boom"),
    ]
    assert history[1].detail == ActionDetail(invocation_id="abc", backend="nova_api")
    latest = store.latest_actions((ActionKind.DRAIN, ActionKind.RESTART))
    assert {(a.host, a.id) for a in latest} == {("ctl-1", "a2"), ("ctl-2", "b1")}
