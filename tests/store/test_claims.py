"""Custom recovery in the store: claims are a test-and-set, reports need the owner, all is audited."""

from __future__ import annotations

import threading

import pytest

from haven.domain.errors import Conflict, NotFound
from haven.domain.ids import NotificationId
from haven.domain.incidents import (
    EXTERNAL_STEP,
    RECOVERY_MODE_KEY,
    Notification,
    NotificationStatus,
    StepState,
)
from haven.store import Store

from .builders import notification

NOTIFY = {"event": "STOPPED", RECOVERY_MODE_KEY: "notify"}


def left_to_others(store: Store, **fields: object) -> Notification:
    return store.create_notification(notification(payload=NOTIFY, **fields))


def test_a_claim_takes_the_notification_and_is_audited(store: Store) -> None:
    note = left_to_others(store)
    claimed = store.claim_notification(
        note.id, "runbook-bot", {"event": "claim", "message": "mine"}, now=2000.0
    )
    assert (claimed.claimed_by, claimed.claimed_at) == ("runbook-bot", 2000.0)
    assert claimed.status is NotificationStatus.RUNNING and claimed.updated_at == 2000.0
    assert store.get_notification(note.id) == claimed
    (entry,) = store.list_steps(note.id)
    assert (entry.kind, entry.subject, entry.state, entry.seq) == (
        EXTERNAL_STEP,
        "runbook-bot",
        StepState.DONE,
        0,
    )
    assert entry.detail == {"event": "claim", "message": "mine"} and entry.finished_at == 2000.0
    # The same owner again (a retried request) changes nothing; anyone else is refused.
    assert store.claim_notification(note.id, "runbook-bot", {"event": "claim"}, now=2001.0) == claimed
    with pytest.raises(Conflict, match="already claimed by 'runbook-bot'"):
        store.claim_notification(note.id, "other", {"event": "claim"}, now=2002.0)
    assert len(store.list_steps(note.id)) == 1


def test_reports_need_the_claim_and_its_owner(store: Store) -> None:
    note = left_to_others(store)
    with pytest.raises(Conflict, match="not claimed: claim it first"):
        store.report_on_claim(note.id, "runbook-bot", {"event": "progress"}, now=2000.0)
    store.claim_notification(note.id, "runbook-bot", {"event": "claim"}, now=2000.0)
    with pytest.raises(Conflict, match="claimed by 'runbook-bot', not by 'intruder'"):
        store.report_on_claim(note.id, "intruder", {"event": "progress"}, now=2001.0)
    store.report_on_claim(note.id, "runbook-bot", {"event": "progress", "percentage": 40.0}, now=2002.0)
    done = store.report_on_claim(
        note.id,
        "runbook-bot",
        {"event": "finish"},
        status=NotificationStatus.FINISHED,
        payload={**NOTIFY, "recovery": {"external": {"owner": "runbook-bot"}}},
        now=2003.0,
    )
    assert done.status is NotificationStatus.FINISHED and done.payload["recovery"]["external"]["owner"]
    trail = store.list_steps(note.id)
    assert [(s.seq, s.detail["event"]) for s in trail] == [(0, "claim"), (1, "progress"), (2, "finish")]
    assert trail[1].detail["percentage"] == 40.0
    # Closed: nothing more can be reported, nor claimed.
    with pytest.raises(Conflict, match="already finished"):
        store.report_on_claim(note.id, "runbook-bot", {"event": "progress"}, now=2004.0)
    with pytest.raises(Conflict, match="already finished"):
        store.claim_notification(note.id, "runbook-bot", {"event": "claim"}, now=2004.0)


def test_only_notifications_left_to_others_can_be_claimed(store: Store) -> None:
    haven_recovers = store.create_notification(notification(payload={"event": "STOPPED"}))
    with pytest.raises(Conflict, match="recovered by haven"):
        store.claim_notification(haven_recovers.id, "bot", {}, now=2000.0)
    closed = left_to_others(store, status=NotificationStatus.IGNORED)
    with pytest.raises(Conflict, match="already ignored"):
        store.claim_notification(closed.id, "bot", {}, now=2000.0)
    with pytest.raises(NotFound):
        store.claim_notification(NotificationId("no-such-id"), "bot", {}, now=2000.0)
    assert store.get_notification(haven_recovers.id).claimed_by is None


def test_two_systems_racing_for_one_notification_get_one_winner(store: Store) -> None:
    note = left_to_others(store)
    barrier = threading.Barrier(8)
    winners: list[str] = []
    refused: list[str] = []

    def race(owner: str) -> None:
        barrier.wait()
        try:
            store.claim_notification(note.id, owner, {"event": "claim"}, now=2000.0)
            winners.append(owner)
        except Conflict:
            refused.append(owner)

    threads = [threading.Thread(target=race, args=(f"bot-{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(refused) == 7
    assert store.get_notification(note.id).claimed_by == winners[0]
    assert len(store.list_steps(note.id)) == 1
