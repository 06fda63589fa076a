"""openstacksdk's instance-ha proxy (``conn.instance_ha``) against a real `haven serve`.

The client is pointed at haven the way one points it at a Masakari without Keystone:
keystoneauth's ``admin_token`` plugin (a fixed token, a fixed endpoint, no catalog)
plus ``instance_ha_endpoint_override``. As Masakari's own functional tests do, objects
are addressed by their ``uuid`` (the SDK's ``Segment.id`` is Masakari's integer row id).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from typing import Any

import openstack
import pytest
from openstack import exceptions
from openstack.connection import Connection

from .conftest import HavenServer, start_haven

# openstacksdk 4.22 warns about its own future removals from inside itself: about InfluxDB on
# every connect, none configured (CloudRegion tests a dict of Nones for truth), and about its
# own _compute_attributes on every resource. Not about haven; its other warnings (a legacy
# API, an unsupported service version) stay errors.
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]


def connect(server: HavenServer, **extra: Any) -> Connection:
    return openstack.connect(
        auth_type="admin_token",
        auth={"endpoint": server.endpoint, "token": server.token},
        instance_ha_endpoint_override=server.endpoint,
        load_yaml_config=False,
        load_envvars=False,
        **extra,
    )


@pytest.fixture(scope="module")
def sdk(haven_server: HavenServer) -> Iterator[Connection]:
    conn = connect(haven_server)
    yield conn
    conn.close()


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


# ---- segments ------------------------------------------------------------------------------------


def test_the_bootstrap_segments_are_listed(sdk: Connection) -> None:
    segments = list(sdk.instance_ha.segments())
    assert sorted(s.name for s in segments) == ["segment-az1", "segment-az2", "segment-az3"]
    assert all(s.recovery_method == "auto" and s.service_type == "COMPUTE" for s in segments)
    assert all(s.is_enabled is True for s in segments)


def test_a_segment_is_created_listed_shown_updated_and_deleted(
    sdk: Connection, unique: Callable[[str], str]
) -> None:
    ha = sdk.instance_ha
    name = unique("sdk-segment")
    created = ha.create_segment(
        name=name, recovery_method="auto", service_type="COMPUTE", description="made by openstacksdk"
    )
    assert created.uuid and created.name == name and created.description == "made by openstacksdk"
    assert isinstance(created.id, int)

    assert name in [s.name for s in ha.segments()]
    shown = ha.get_segment(created.uuid)
    assert (shown.uuid, shown.name, shown.recovery_method) == (created.uuid, name, "auto")

    updated = ha.update_segment(created.uuid, recovery_method="reserved_host", description="changed")
    assert (updated.recovery_method, updated.description) == ("reserved_host", "changed")
    assert ha.get_segment(created.uuid).recovery_method == "reserved_host"
    assert [s.name for s in ha.segments(recovery_method="reserved_host")] == [name]

    ha.delete_segment(created.uuid, ignore_missing=False)
    with pytest.raises(exceptions.NotFoundException):
        ha.get_segment(created.uuid)
    assert name not in [s.name for s in ha.segments()]


def test_a_duplicate_segment_name_is_a_conflict(sdk: Connection, unique: Callable[[str], str]) -> None:
    name = unique("sdk-twin")
    first = sdk.instance_ha.create_segment(name=name, recovery_method="auto", service_type="COMPUTE")
    try:
        with pytest.raises(exceptions.ConflictException):
            sdk.instance_ha.create_segment(name=name, recovery_method="auto", service_type="COMPUTE")
    finally:
        sdk.instance_ha.delete_segment(first.uuid)


def test_an_invalid_recovery_method_is_a_bad_request(sdk: Connection, unique: Callable[[str], str]) -> None:
    with pytest.raises(exceptions.BadRequestException):
        sdk.instance_ha.create_segment(
            name=unique("sdk-bad"), recovery_method="teleport", service_type="COMPUTE"
        )


# ---- hosts ---------------------------------------------------------------------------------------


def test_a_host_moves_to_a_new_segment_and_back(sdk: Connection, unique: Callable[[str], str]) -> None:
    """Every simulated host starts in its zone's segment and a host is in one segment at a time:
    so the host leaves its bootstrap segment, joins a new one, is changed, and goes back."""
    ha = sdk.instance_ha
    home = next(s for s in ha.segments() if s.name == "segment-az1")
    original = sorted(ha.hosts(home.uuid), key=lambda h: h.name)[0]
    assert original.name.startswith("compute-") and original.failover_segment_id == home.uuid

    with pytest.raises(exceptions.ConflictException):  # still a member of its bootstrap segment
        ha.create_host(home.uuid, name=original.name, type="COMPUTE", control_attributes="SSH")

    ha.delete_host(original.uuid, segment=home.uuid, ignore_missing=False)
    assert original.name not in [h.name for h in ha.hosts(home.uuid)]
    segment = ha.create_segment(name=unique("sdk-hosts"), recovery_method="auto", service_type="COMPUTE")
    try:
        host = ha.create_host(segment.uuid, name=original.name, type="COMPUTE", control_attributes="SSH")
        assert (host.name, host.type, host.control_attributes) == (original.name, "COMPUTE", "SSH")
        assert host.failover_segment_id == segment.uuid
        assert host.on_maintenance is False and host.reserved is False

        assert [h.name for h in ha.hosts(segment.uuid)] == [original.name]
        assert [h.name for h in ha.hosts(segment.uuid, type="COMPUTE", on_maintenance=False)] == [
            original.name
        ]
        shown = ha.get_host(host.uuid, segment.uuid)
        assert (shown.uuid, shown.name) == (host.uuid, original.name)

        # Masakari's functional test sends the boolean as a string: 'True'.
        ha.update_host(host.uuid, segment.uuid, on_maintenance="True")
        assert ha.get_host(host.uuid, segment.uuid).on_maintenance is True
        ha.update_host(host.uuid, segment.uuid, on_maintenance=False, reserved=True)
        changed = ha.get_host(host.uuid, segment.uuid)
        assert (changed.on_maintenance, changed.reserved) == (False, True)
        assert [h.name for h in ha.hosts(segment.uuid, reserved=True)] == [original.name]

        ha.delete_host(host.uuid, segment=segment.uuid, ignore_missing=False)
        with pytest.raises(exceptions.NotFoundException):
            ha.get_host(host.uuid, segment.uuid)
    finally:
        ha.delete_segment(segment.uuid)
        back = ha.create_host(home.uuid, name=original.name, type=original.type, control_attributes="SSH")
    # A host created again is a new row with a new uuid, as in Masakari (its uuid is no longer derived
    # from its name); a rename keeps it (tests/api/test_masakari_conformance.py).
    assert back.uuid != original.uuid and back.name == original.name


def test_a_host_of_another_segment_is_not_found(sdk: Connection) -> None:
    ha = sdk.instance_ha
    by_name = {s.name: s for s in ha.segments()}
    member = next(iter(ha.hosts(by_name["segment-az1"].uuid)))
    with pytest.raises(exceptions.NotFoundException):
        ha.get_host(member.uuid, by_name["segment-az2"].uuid)


# ---- notifications -------------------------------------------------------------------------------


def test_a_report_about_a_healthy_host_never_fences_it(sdk: Connection, haven_server: HavenServer) -> None:
    """A monitor that wrongly reports a live host down: the notification is accepted, but its
    recovery stops before fencing because the host still heartbeats; nothing is evacuated."""
    ha = sdk.instance_ha
    victim = "compute-00002"
    created = ha.create_notification(
        type="COMPUTE_HOST",
        hostname=victim,
        generated_time=now_iso(),
        payload={"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"},
    )
    assert created.notification_uuid and created.hostname == victim and created.type == "COMPUTE_HOST"
    assert created.status in ("new", "running")

    final = wait_for_notification(ha, created.notification_uuid, {"finished", "failed", "error"})
    assert final.status == "failed"
    assert victim in [n.hostname for n in ha.notifications(status="failed")]
    detailed = connect(haven_server, instance_ha_api_version="1.1").instance_ha
    steps = detailed.get_notification(created.notification_uuid).recovery_workflow_details
    messages = " ".join(d.message for s in steps for d in s.progress_details)
    assert "still heartbeats" in messages
    assert not [s for s in steps if s.name == "EvacuateInstancesTask" and s.state == "SUCCESS"]
    assert {h["name"]: h["condition"] for h in haven_server.hosts()}[victim] == "healthy"


# VM notifications are recorded and marked ignored (guest recovery comes with the host agent):
# they change nothing in the shared server's cloud.
VM_UUID = "0d3c1f52-7e8a-4b9c-a1d2-e3f4a5b6c7d8"


def test_a_notification_keeps_the_monitors_generated_time(sdk: Connection) -> None:
    created = sdk.instance_ha.create_notification(
        type="VM",
        hostname="compute-00003",
        generated_time="2026-01-02T03:04:05.000000",
        payload={"event": "LIFECYCLE", "instance_uuid": VM_UUID, "vir_domain_event": "STOPPED_FAILED"},
    )
    assert created.generated_time.startswith("2026-01-02T03:04:05")
    assert sdk.instance_ha.get_notification(created.notification_uuid).generated_time.startswith(
        "2026-01-02T03:04:05"
    )


def test_a_notification_payload_comes_back_as_posted(sdk: Connection) -> None:
    payload = {"event": "LIFECYCLE", "instance_uuid": VM_UUID, "vir_domain_event": "STOPPED_FAILED"}
    created = sdk.instance_ha.create_notification(
        type="VM", hostname="compute-00006", generated_time=now_iso(), payload=payload
    )
    assert sdk.instance_ha.get_notification(created.notification_uuid).payload == payload


def test_an_unknown_notification_is_not_found(sdk: Connection) -> None:
    with pytest.raises(exceptions.NotFoundException):
        sdk.instance_ha.get_notification("6b1a8cde-0f5e-4b7c-9d1e-2f3a4b5c6d7e")


def wait_for_notification(ha: Any, ref: str, statuses: set[str], timeout_s: float = 60.0) -> Any:
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        notification = ha.get_notification(ref)
        if notification.status in statuses:
            return notification
        assert time.monotonic() < deadline, f"notification still {notification.status} after {timeout_s} s"
        time.sleep(0.25)


# ---- a monitor's report drives a real recovery ----------------------------------------------------

# haven's own channels would confirm the death after grace_s (default 3 s); 12 s leaves the monitor
# (this test, which posts as soon as haven's log says the host is suspected) time to report first,
# as a Masakari host monitor is meant to (it was 30 s, with a `haven hosts` subprocess per poll).
SLOW_OWN_DETECTION = "[detection]\ngrace_s = 12.0\n"


@pytest.fixture(scope="module")
def injured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HavenServer]:
    yield from start_haven(
        tmp_path_factory.mktemp("injured") / "home",
        "--inject",
        "host-power-loss",
        "--inject-after",
        "1",
        config=SLOW_OWN_DETECTION,
    )


def test_a_monitor_report_about_a_dead_host_drives_its_recovery(injured_server: HavenServer) -> None:
    """The Masakari flow end to end: a host loses power in the simulated cloud; a monitor sees it
    go silent and posts COMPUTE_HOST through openstacksdk before haven's own detector confirms it;
    that notification is the one that fences, forces down, plans and evacuates, and it finishes.
    A second report of the same failure while the first is handled is a 409, as in Masakari."""
    victim = injured_server.wait_for_log(r"injected:.* power lost on (compute-\d+)").group(1)
    sdk = connect(injured_server, instance_ha_api_version="1.3")  # 1.1 workflow details, 1.3 vmoves
    # The engine's own line as it suspects the host: silent, not yet confirmed dead by haven itself.
    injured_server.wait_for_log(rf"host_suspected\s+{victim}\b")
    assert not re.search(rf"host_confirmed_dead\s+{victim}\b", injured_server.log.read_text())
    ha = sdk.instance_ha
    report = {
        "type": "COMPUTE_HOST",
        "hostname": victim,
        "generated_time": now_iso(),
        "payload": {"event": "STOPPED", "host_status": "NORMAL", "cluster_status": "OFFLINE"},
    }
    created = ha.create_notification(**report)
    assert created.hostname == victim and created.status in ("new", "running")
    with pytest.raises(exceptions.ConflictException):
        ha.create_notification(**report)

    final = wait_for_notification(ha, created.notification_uuid, {"finished", "failed", "error"})
    assert final.status == "finished", final.recovery_workflow_details
    tasks = {t.name: t.state for t in final.recovery_workflow_details}
    for task in ("FenceHostTask", "ForceDownComputeServiceTask", "PrepareHAEnabledInstancesTask"):
        assert tasks.get(task) == "SUCCESS", tasks
    assert tasks.get("EvacuateInstancesTask") == "SUCCESS", tasks

    vmoves = list(ha.vmoves(created.notification_uuid))
    assert vmoves, "the victim had HA VMs: each evacuation is a vmove"
    assert {(m.source_host, m.status, m.type) for m in vmoves} == {(victim, "succeeded", "evacuation")}
    assert all(m.dest_host and m.dest_host != victim for m in vmoves)
    one = ha.get_vmove(vmoves[0].uuid, created.notification_uuid)
    assert (one.uuid, one.server_id) == (vmoves[0].uuid, vmoves[0].server_id)

    # The monitor's notification was the only one: haven's detector found the failure handled.
    about_victim = [n for n in ha.notifications(type="COMPUTE_HOST") if n.hostname == victim]
    assert [n.notification_uuid for n in about_victim] == [created.notification_uuid]
    assert {h["name"]: h["condition"] for h in injured_server.hosts()}[victim] != "healthy"
    sdk.close()
