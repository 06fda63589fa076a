"""/v1/notifications and their vmoves: intake, duplicates, workflow details, filters and paging."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from haven.domain.ids import HostName, NotificationId
from haven.domain.incidents import Notification, NotificationStatus, NotificationType, Step, StepState
from haven.store import Store

from .conftest import FakeIntake, host_failure, make_host, make_segment, version

T0 = 1_800_000_000.0


@pytest.fixture
async def segment(client: httpx.AsyncClient) -> dict[str, Any]:
    created = await make_segment(client)
    await make_host(client, created["uuid"], "compute-1")
    await make_host(client, created["uuid"], "compute-2")
    return created


async def test_create_goes_to_the_engine_and_answers_202(
    client: httpx.AsyncClient, segment: dict[str, Any], intake: FakeIntake
) -> None:
    response = await client.post("/v1/notifications", json=host_failure("compute-1"))
    assert response.status_code == 202
    notification = response.json()["notification"]
    assert notification["status"] == "new" and notification["type"] == "COMPUTE_HOST"
    assert notification["hostname"] == "compute-1"
    assert notification["payload"] == {
        "event": "STOPPED",
        "host_status": "NORMAL",
        "cluster_status": "OFFLINE",
    }
    assert notification["generated_time"] == "2027-01-15T08:00:00.000000"
    assert isinstance(notification["id"], int)
    hosts = (await client.get(f"/v1/segments/{segment['uuid']}/hosts?name=compute-1")).json()["hosts"]
    assert notification["source_host_uuid"] == hosts[0]["uuid"]
    assert intake.submitted == [
        (NotificationType.COMPUTE_HOST, "compute-1", notification["payload"]),
    ]


async def test_a_duplicate_is_a_conflict(client: httpx.AsyncClient, segment: dict[str, Any]) -> None:
    assert (await client.post("/v1/notifications", json=host_failure("compute-1"))).status_code == 202
    again = await client.post("/v1/notifications", json=host_failure("compute-1"))
    assert again.status_code == 409
    assert "duplicate" in again.json()["conflictingRequest"]["message"]
    other_host = await client.post("/v1/notifications", json=host_failure("compute-2"))
    assert other_host.status_code == 202


async def test_unknown_host_is_a_bad_request_and_maintenance_a_conflict(
    client: httpx.AsyncClient, segment: dict[str, Any], intake: FakeIntake
) -> None:
    unknown = await client.post("/v1/notifications", json=host_failure("compute-99"))
    assert unknown.status_code == 400 and "compute-99" in unknown.json()["badRequest"]["message"]
    hosts = (await client.get(f"/v1/segments/{segment['uuid']}/hosts?name=compute-2")).json()["hosts"]
    await client.put(
        f"/v1/segments/{segment['uuid']}/hosts/{hosts[0]['uuid']}", json={"host": {"on_maintenance": True}}
    )
    maintained = await client.post("/v1/notifications", json=host_failure("compute-2"))
    assert (
        maintained.status_code == 409 and "maintenance" in maintained.json()["conflictingRequest"]["message"]
    )
    assert intake.submitted == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "DISK"}, "notification.type"),
        ({"hostname": "bad host!"}, "notification.hostname"),
        ({"generated_time": "yesterday"}, "notification.generated_time"),
        ({"generated_time": 5}, "notification.generated_time"),
        ({"payload": {"event": "EXPLODED"}}, "payload.event"),
        ({"payload": {"host_status": "NORMAL"}}, "payload.event"),
        ({"payload": {"event": "STOPPED", "extra": "x"}}, "payload.extra"),
        ({"payload": {"event": 1}}, "payload.event"),
        ({"payload": "STOPPED"}, "notification.payload"),
        ({"type": "PROCESS", "payload": {"event": "STOPPED"}}, "payload.process_name"),
        (
            {"type": "VM", "payload": {"event": "x", "vir_domain_event": "y", "instance_uuid": "no"}},
            "instance_uuid",
        ),
        ({"colour": "red"}, "notification.colour"),
    ],
)
async def test_invalid_notifications_name_the_field(
    client: httpx.AsyncClient, segment: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    body = host_failure("compute-1")
    body["notification"].update(change)
    response = await client.post("/v1/notifications", json=body)
    assert response.status_code == 400, response.text
    assert field in response.json()["badRequest"]["message"]


async def test_process_and_vm_notifications(client: httpx.AsyncClient, segment: dict[str, Any]) -> None:
    process = {
        "type": "PROCESS",
        "hostname": "compute-1",
        "generated_time": "2027-01-15T08:00:00Z",
        "payload": {"event": "STOPPED", "process_name": "nova-compute"},
    }
    assert (await client.post("/v1/notifications", json={"notification": process})).status_code == 202
    vm = {
        "type": "VM",
        "hostname": "compute-1",
        "generated_time": "2027-01-15T08:00:00",
        "payload": {
            "event": "LIFECYCLE",
            "vir_domain_event": "STOPPED_FAILED",
            "instance_uuid": str(uuid.uuid4()),
        },
    }
    assert (await client.post("/v1/notifications", json={"notification": vm})).status_code == 202


async def test_show_adds_workflow_details_from_1_1(client: httpx.AsyncClient, store: Store) -> None:
    notification = _recovery_with_evacuations(store)
    old = await client.get(f"/v1/notifications/{notification.id}", headers=version("1.0"))
    assert old.status_code == 200 and "recovery_workflow_details" not in old.json()["notification"]
    new = await client.get(f"/v1/notifications/{notification.id}", headers=version("1.1"))
    details = new.json()["notification"]["recovery_workflow_details"]
    assert [d["name"] for d in details] == [
        "FenceHostTask",
        "PrepareHAEnabledInstancesTask",
        "EvacuateInstancesTask",
    ]
    fence, _, evacuate = details
    assert fence["state"] == "SUCCESS" and fence["progress"] == 1.0
    assert evacuate["state"] == "FAILURE" and evacuate["progress"] == 0.67
    assert len(evacuate["progress_details"]) == 3
    assert "no room" in evacuate["progress_details"][1]["message"]


async def test_unknown_notification_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/notifications/{uuid.uuid4()}")
    assert response.status_code == 404 and response.json()["itemNotFound"]["code"] == 404
    vmoves = await client.get(f"/v1/notifications/{uuid.uuid4()}/vmoves", headers=version("1.3"))
    assert vmoves.status_code == 404


async def test_filters_sorting_and_paging(
    client: httpx.AsyncClient, segment: dict[str, Any], store: Store
) -> None:
    # The monitors saw these failures at 08:00:00, 08:00:05 and 08:00:10 (generated_time is theirs).
    for host, seen in (("compute-1", "08:00:00"), ("compute-2", "08:00:05")):
        body = host_failure(host)
        body["notification"]["generated_time"] = f"2027-01-15T{seen}"
        assert (await client.post("/v1/notifications", json=body)).status_code == 202
    process = {
        "type": "PROCESS",
        "hostname": "compute-1",
        "generated_time": "2027-01-15T08:00:10",
        "payload": {"event": "STOPPED", "process_name": "nova-compute"},
    }
    assert (await client.post("/v1/notifications", json={"notification": process})).status_code == 202
    host_uuid = (await client.get(f"/v1/segments/{segment['uuid']}/hosts?name=compute-2")).json()["hosts"][0][
        "uuid"
    ]

    async def hosts_and_types(query: str) -> list[tuple[str, str]]:
        response = await client.get(f"/v1/notifications?{query}")
        assert response.status_code == 200, response.text
        return [(n["hostname"], n["type"]) for n in response.json()["notifications"]]

    newest_first = [("compute-1", "PROCESS"), ("compute-2", "COMPUTE_HOST"), ("compute-1", "COMPUTE_HOST")]
    assert await hosts_and_types("") == newest_first
    assert await hosts_and_types("sort_key=created_at&sort_dir=asc") == newest_first[::-1]
    assert await hosts_and_types("type=PROCESS") == [("compute-1", "PROCESS")]
    assert await hosts_and_types(f"source_host_uuid={host_uuid}") == [("compute-2", "COMPUTE_HOST")]
    assert await hosts_and_types("status=new&limit=1") == newest_first[:1]
    assert await hosts_and_types("status=finished") == []
    assert await hosts_and_types("status=sleeping") == []
    assert await hosts_and_types("generated-since=2027-01-15T08:00:01Z") == newest_first[:2]
    first = (await client.get("/v1/notifications?limit=1")).json()["notifications"][0]
    assert await hosts_and_types(f"marker={first['notification_uuid']}") == newest_first[1:]
    assert (await client.get("/v1/notifications?generated-since=soon")).status_code == 400
    assert (await client.get("/v1/notifications?sort_key=payload")).status_code == 400


async def test_vmoves_need_microversion_1_3(client: httpx.AsyncClient, store: Store) -> None:
    notification = _recovery_with_evacuations(store)
    response = await client.get(f"/v1/notifications/{notification.id}/vmoves", headers=version("1.2"))
    assert response.status_code == 404


async def test_vmoves_list_and_show(client: httpx.AsyncClient, store: Store) -> None:
    notification = _recovery_with_evacuations(store)
    base = f"/v1/notifications/{notification.id}/vmoves"
    response = await client.get(base, headers=version("1.3"))
    assert response.status_code == 200
    moves = response.json()["vmoves"]
    assert [(m["instance_name"], m["status"]) for m in moves] == [
        ("vm-a", "succeeded"),
        ("vm-b", "failed"),
        ("vm-c", "ongoing"),
    ]
    first = moves[0]
    assert first["source_host"] == "compute-1" and first["dest_host"] == "compute-2"
    assert first["type"] == "evacuation" and first["notification_uuid"] == notification.id
    assert first["start_time"] is not None and first["end_time"] is not None
    assert moves[1]["message"] == "no room"

    shown = await client.get(f"{base}/{first['uuid']}", headers=version("1.3"))
    assert shown.status_code == 200 and shown.json() == {"vmove": first}
    missing = await client.get(f"{base}/{uuid.uuid4()}", headers=version("1.3"))
    assert missing.status_code == 404

    failed = await client.get(f"{base}?status=failed", headers=version("1.3"))
    assert [m["instance_name"] for m in failed.json()["vmoves"]] == ["vm-b"]
    by_name = await client.get(f"{base}?sort_key=instance_name&sort_dir=desc&limit=2", headers=version("1.3"))
    assert [m["instance_name"] for m in by_name.json()["vmoves"]] == ["vm-c", "vm-b"]
    after = await client.get(f"{base}?marker={first['uuid']}", headers=version("1.3"))
    assert [m["instance_name"] for m in after.json()["vmoves"]] == ["vm-b", "vm-c"]


async def test_vmoves_of_a_process_notification_are_a_bad_request(
    client: httpx.AsyncClient, segment: dict[str, Any]
) -> None:
    process = {
        "type": "PROCESS",
        "hostname": "compute-1",
        "generated_time": "2027-01-15T08:00:00",
        "payload": {"event": "STOPPED", "process_name": "nova-compute"},
    }
    created = (await client.post("/v1/notifications", json={"notification": process})).json()["notification"]
    response = await client.get(
        f"/v1/notifications/{created['notification_uuid']}/vmoves", headers=version("1.3")
    )
    assert response.status_code == 400


def _recovery_with_evacuations(store: Store) -> Notification:
    """A host failure half-way: fenced, planned, one VM moved, one failed, one moving."""
    nid = NotificationId(str(uuid.uuid4()))
    notification = Notification(
        nid,
        NotificationType.COMPUTE_HOST,
        HostName("compute-1"),
        NotificationStatus.RUNNING,
        {"event": "STOPPED"},
        generated_at=T0,
        created_at=T0,
        updated_at=T0 + 30,
    )

    def evacuate(seq: int, name: str, state: StepState, **detail: Any) -> Step:
        return Step(
            nid,
            seq,
            "evacuate",
            str(uuid.uuid4()),
            state=state,
            detail={"name": name, "source": "compute-1", "target": "compute-2", **detail},
            started_at=T0 + 10,
            finished_at=None if state is StepState.RUNNING else T0 + 20,
        )

    steps = [
        Step(nid, 0, "fence", "compute-1", state=StepState.DONE, started_at=T0, finished_at=T0 + 5),
        Step(nid, 1, "plan", "compute-1", state=StepState.DONE, started_at=T0 + 5, finished_at=T0 + 6),
        evacuate(2, "vm-a", StepState.DONE, host="compute-2"),
        evacuate(3, "vm-b", StepState.FAILED, error="no room"),
        evacuate(4, "vm-c", StepState.RUNNING),
    ]
    return store.create_notification(notification, steps)
