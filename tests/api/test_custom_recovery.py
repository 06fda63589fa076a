"""haven's extensions to the API: a segment's haven_mode, and claim/progress/finish/fail of notifications."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from haven.domain.events import EventKind
from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import RECOVERY_MODE_KEY, Notification, NotificationStatus, NotificationType
from haven.store import Store

from .conftest import FakeIntake, host_failure, make_host, make_segment, version

T0 = 1_800_000_000.0


def open_notification(store: Store, mode: str = "notify", host: str = "compute-1") -> Notification:
    return store.create_notification(
        Notification(
            NotificationId(str(uuid.uuid4())),
            NotificationType.COMPUTE_HOST,
            HostName(host),
            NotificationStatus.NEW,
            {"event": "STOPPED", RECOVERY_MODE_KEY: mode},
            T0,
            T0,
            T0,
        )
    )


# ---- haven_mode on segments ---------------------------------------------------------------------


async def test_haven_mode_is_set_on_create_and_update_and_shown(
    client: httpx.AsyncClient, store: Store
) -> None:
    plain = await make_segment(client, "rack-1")
    assert plain["haven_mode"] == "automatic"
    quiet = await make_segment(client, "rack-2", haven_mode="notify")
    assert quiet["haven_mode"] == "notify" and store.get_segment("rack-2").mode.value == "notify"
    # Every microversion shows it (Masakari clients ignore fields they do not know).
    for v in ("1.0", "1.3"):
        shown = await client.get(f"/v1/segments/{quiet['uuid']}", headers=version(v))
        assert shown.json()["segment"]["haven_mode"] == "notify"
    changed = await client.put(f"/v1/segments/{plain['uuid']}", json={"segment": {"haven_mode": "dry_run"}})
    assert changed.status_code == 200 and changed.json()["segment"]["haven_mode"] == "dry_run"
    assert store.get_segment("rack-1").mode.value == "dry_run"
    listed = (await client.get("/v1/segments")).json()["segments"]
    assert {s["name"]: s["haven_mode"] for s in listed} == {"rack-1": "dry_run", "rack-2": "notify"}


@pytest.mark.parametrize("value", ["manual", "", 3, "NOTIFY"])
async def test_an_unknown_haven_mode_is_a_400_naming_the_field_and_the_choices(
    client: httpx.AsyncClient, value: Any
) -> None:
    body = {"name": "rack-1", "recovery_method": "auto", "service_type": "COMPUTE", "haven_mode": value}
    refused = await client.post("/v1/segments", json={"segment": body})
    assert refused.status_code == 400
    message = refused.json()["badRequest"]["message"]
    assert "segment.haven_mode" in message and "'automatic', 'notify' or 'dry_run'" in message
    created = await make_segment(client, "rack-1")
    for sent in (value, None):  # null on create means the default; on update it is refused
        update = await client.put(f"/v1/segments/{created['uuid']}", json={"segment": {"haven_mode": sent}})
        assert update.status_code == 400 and "segment.haven_mode" in update.json()["badRequest"]["message"]


async def test_the_mode_may_change_while_a_recovery_runs_but_nothing_else(
    client: httpx.AsyncClient, store: Store
) -> None:
    segment = await make_segment(client)
    await make_host(client, segment["uuid"], "compute-1")
    assert (await client.post("/v1/notifications", json=host_failure("compute-1"))).status_code == 202
    url = f"/v1/segments/{segment['uuid']}"
    renamed = await client.put(url, json={"segment": {"name": "elsewhere"}})
    assert renamed.status_code == 409
    moded = await client.put(url, json={"segment": {"haven_mode": "notify"}})
    assert moded.status_code == 200 and moded.json()["segment"]["haven_mode"] == "notify"
    both = await client.put(url, json={"segment": {"haven_mode": "automatic", "description": "x"}})
    assert (
        both.status_code == 409 and store.get_segment(segment["uuid"].replace("-", "")).mode.value == "notify"
    )


# ---- claim, progress, finish, fail --------------------------------------------------------------


async def test_claim_progress_finish_leave_an_audit_trail(
    client: httpx.AsyncClient, store: Store, intake: FakeIntake
) -> None:
    note = open_notification(store)
    url = f"/v1/notifications/{note.id}"
    shown = (await client.get(url)).json()["notification"]
    assert shown["status"] == "new"
    assert shown["haven_recovery"] == {
        "mode": "notify",
        "claimed_by": None,
        "claimed_at": None,
        "summary": None,
    }
    claimed = await client.post(f"{url}/claim", json={"claim": {"owner": "runbook-bot"}})
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["notification"]["status"] == "running"
    assert claimed.json()["notification"]["haven_recovery"]["claimed_by"] == "runbook-bot"
    progress = {"progress": {"owner": "runbook-bot", "message": "VMs rebuilding", "percentage": 50}}
    assert (await client.post(f"{url}/progress", json=progress)).status_code == 200
    finish = {"finish": {"owner": "runbook-bot", "message": "all back"}}
    finished = await client.post(f"{url}/finish", json=finish, headers=version("1.1"))
    assert finished.status_code == 200
    body = finished.json()["notification"]
    assert body["status"] == "finished"
    (task,) = body["recovery_workflow_details"]
    assert (task["name"], task["state"], task["progress"]) == ("ExternalRecoveryTask", "SUCCESS", 1.0)
    assert [d["message"] for d in task["progress_details"]] == [
        "claim by runbook-bot: claimed by runbook-bot",
        "progress by runbook-bot: VMs rebuilding",
        "finish by runbook-bot: all back",
    ]
    assert [d["progress"] for d in task["progress_details"]] == ["0.0", "0.5", "1.0"]
    assert body["haven_recovery"]["summary"]["external"]["outcome"] == "finished"
    assert body["payload"] == {"event": "STOPPED"}  # haven's own keys stay out of Masakari's payload
    kinds = [e.kind for e in intake.events]
    assert kinds == [
        EventKind.NOTIFICATION_CLAIMED,
        EventKind.NOTIFICATION_PROGRESS,
        EventKind.NOTIFICATION_FINISHED,
    ]
    # Closed now: a second finish, more progress or a claim are conflicts.
    assert (await client.post(f"{url}/finish", json=finish)).status_code == 409
    assert (await client.post(f"{url}/claim", json={"claim": {"owner": "runbook-bot"}})).status_code == 409


async def test_fail_needs_a_reason_and_ends_the_notification_failed(
    client: httpx.AsyncClient, store: Store
) -> None:
    note = open_notification(store)
    url = f"/v1/notifications/{note.id}"
    assert (await client.post(f"{url}/claim", json={"claim": {"owner": "bot"}})).status_code == 200
    no_reason = await client.post(f"{url}/fail", json={"fail": {"owner": "bot"}})
    assert no_reason.status_code == 400 and "fail.reason" in no_reason.json()["badRequest"]["message"]
    failed = await client.post(f"{url}/fail", json={"fail": {"owner": "bot", "reason": "no capacity left"}})
    assert failed.status_code == 200 and failed.json()["notification"]["status"] == "failed"
    assert store.get_notification(note.id).payload["recovery"]["external"]["message"] == "no capacity left"
    details = (await client.get(url, headers=version("1.1"))).json()["notification"][
        "recovery_workflow_details"
    ]
    assert details[0]["state"] == "FAILURE"


async def test_conflicts_not_found_and_bad_input(client: httpx.AsyncClient, store: Store) -> None:
    note = open_notification(store)
    url = f"/v1/notifications/{note.id}"
    # Progress before any claim, then a claim by someone else, then a report by the wrong owner.
    early = await client.post(f"{url}/progress", json={"progress": {"owner": "a", "message": "m"}})
    assert early.status_code == 409 and "claim it first" in early.json()["conflictingRequest"]["message"]
    assert (await client.post(f"{url}/claim", json={"claim": {"owner": "a"}})).status_code == 200
    assert (await client.post(f"{url}/claim", json={"claim": {"owner": "a"}})).status_code == 200  # a retry
    taken = await client.post(f"{url}/claim", json={"claim": {"owner": "b"}})
    assert (
        taken.status_code == 409 and "already claimed by 'a'" in taken.json()["conflictingRequest"]["message"]
    )
    wrong = await client.post(f"{url}/finish", json={"finish": {"owner": "b"}})
    assert wrong.status_code == 409
    # haven's own recoveries cannot be claimed.
    automatic = open_notification(store, mode="automatic", host="compute-2")
    refused = await client.post(f"/v1/notifications/{automatic.id}/claim", json={"claim": {"owner": "a"}})
    assert (
        refused.status_code == 409 and "recovered by haven" in refused.json()["conflictingRequest"]["message"]
    )
    missing = await client.post(f"/v1/notifications/{uuid.uuid4()}/claim", json={"claim": {"owner": "a"}})
    assert missing.status_code == 404
    bad_bodies = [
        ("claim", {"claim": {}}, "claim.owner"),
        ("claim", {"claim": {"owner": " padded "}}, "claim.owner"),
        ("claim", {"owner": "a"}, "claim"),
        ("progress", {"progress": {"owner": "a", "message": "m", "percentage": 120}}, "progress.percentage"),
        ("progress", {"progress": {"owner": "a", "message": "m", "percentage": "50"}}, "progress.percentage"),
        ("progress", {"progress": {"owner": "a", "message": ""}}, "progress.message"),
        ("finish", {"finish": {"owner": "a", "extra": 1}}, "finish.extra"),
    ]
    for action, body, field in bad_bodies:
        answer = await client.post(f"{url}/{action}", json=body)
        assert answer.status_code == 400, (action, body)
        assert f"field/attribute {field}" in answer.json()["badRequest"]["message"], answer.text
    assert [s.detail["event"] for s in store.list_steps(note.id)] == ["claim"]


async def test_claiming_needs_a_token(anonymous: httpx.AsyncClient, store: Store) -> None:
    note = open_notification(store)
    answer = await anonymous.post(f"/v1/notifications/{note.id}/claim", json={"claim": {"owner": "a"}})
    assert answer.status_code == 401
