"""The OpenStack driver's requests (paths, bodies, pinned microversions) and its error translation.

openstacksdk and keystoneauth run for real over loopback against RecordedNova, a server
with canned answers; what Nova itself does is proven by the contract suite on the lab.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloud.recorded_nova import Answer, RecordedNova, serving
from haven.cloud.openstack import OpenStackCloud, cloud_name, open_cloud
from haven.cloud.openstack.convert import http_date
from haven.cloud.openstack.nova import NovaApi
from haven.domain.cloud import GroupPolicy, PowerState, TaskState, VmState
from haven.domain.errors import ConfigError, Conflict, NotFound, PermanentError, TemporaryError
from haven.domain.ids import HostName, ServerId
from haven.lab.process import free_port

# openstacksdk warns about its own internals (statsd, influxdb, service_type) on every request.
pytestmark = [
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK50Warning"),
    pytest.mark.filterwarnings("ignore::openstack.warnings.RemovedInSDK60Warning"),
]
V = "/v2.1"
SERVICE = {
    "id": "5f1c-uuid",
    "binary": "nova-compute",
    "host": "compute-1",
    "zone": "az1",
    "status": "enabled",
    "state": "up",
    "forced_down": False,
    "disabled_reason": None,
    "updated_at": "2026-11-21T10:00:00.000000",
}
HYPERVISOR = {
    "id": "hv-uuid",
    "hypervisor_hostname": "compute-1.example",
    "service": {"host": "compute-1", "id": "5f1c-uuid", "disabled_reason": None},
    "vcpus": 16,
    "vcpus_used": 2,
    "memory_mb": 32768,
    "memory_mb_used": 4096,
    "local_gb": 500,
    "local_gb_used": 40,
}
FLAVOR = {"original_name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "ephemeral": 0}


def server_body(sid: str, **extra: object) -> dict[str, object]:
    return {
        "id": sid,
        "name": f"vm-{sid}",
        "OS-EXT-SRV-ATTR:host": "compute-1",
        "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:power_state": 1,
        "OS-EXT-STS:task_state": None,
        "flavor": FLAVOR,
        "metadata": {"HA_Enabled": "True", "HA_Priority": "5"},
        **extra,
    }


@pytest.fixture
def nova() -> Iterator[RecordedNova]:
    for server in serving():
        server.serve_versions()
        yield server


@pytest.fixture
def cloud(nova: RecordedNova) -> Iterator[OpenStackCloud]:
    driver = open_cloud(
        None,
        max_workers=2,
        auth_type="admin_token",
        auth={"endpoint": nova.url, "token": "secret-token"},
        compute_endpoint_override=f"{nova.url}{V}",
        placement_endpoint_override=f"{nova.url}/placement",
    )
    yield driver
    driver.close()


def _version(r: object) -> str:
    return getattr(r, "headers")["x-openstack-nova-api-version"]  # noqa: B009


# ---- reads ----------------------------------------------------------------------------------


async def test_hosts_join_services_hypervisors_aggregates_and_placement_ratios(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    nova.answer("GET", f"{V}/os-services", Answer(200, {"services": [SERVICE]}))
    nova.answer("GET", f"{V}/os-hypervisors/detail", Answer(200, {"hypervisors": [HYPERVISOR]}))
    aggs = [{"name": "rack-2", "hosts": ["compute-1"]}, {"name": "rack-1", "hosts": ["compute-1"]}]
    nova.answer("GET", f"{V}/os-aggregates", Answer(200, {"aggregates": aggs}))
    providers = [{"uuid": "rp-1", "name": "compute-1.example"}]
    nova.answer("GET", "/placement/resource_providers", Answer(200, {"resource_providers": providers}))
    inventories = {"VCPU": {"allocation_ratio": 8.0}, "MEMORY_MB": {"allocation_ratio": 1.5}}
    nova.answer(
        "GET", "/placement/resource_providers/rp-1/inventories", Answer(200, {"inventories": inventories})
    )

    [host] = await cloud.list_hosts()

    assert (host.name, host.zone, host.aggregate) == ("compute-1", "az1", "rack-1")
    assert (host.service_enabled, host.service_up, host.forced_down) == (True, True, False)
    assert (host.capacity.vcpus, host.capacity.ram_mb, host.capacity.disk_gb) == (16, 32768, 500)
    assert (host.capacity.cpu_allocation_ratio, host.capacity.ram_allocation_ratio) == (8.0, 1.5)
    assert host.capacity.disk_allocation_ratio == 1.0  # not in Placement's answer: Nova's default
    assert (host.used_vcpus, host.used_ram_mb, host.used_disk_gb) == (2, 4096, 40)
    [services] = nova.made("GET", f"{V}/os-services")
    assert services.query == {"binary": ["nova-compute"]}
    assert _version(services) == "2.53"
    assert _version(nova.made("GET", f"{V}/os-hypervisors/detail")[0]) == "2.53"  # 2.88 drops the figures
    await cloud.list_hosts()
    assert len(nova.made("GET", "/placement/resource_providers")) == 1  # ratios are cached


async def test_servers_on_a_host_follow_pages_and_carry_flavor_metadata_and_group(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    page1 = {
        "servers": [server_body("a")],
        "servers_links": [{"rel": "next", "href": f"{nova.url}{V}/servers/detail?marker=a&host=compute-1"}],
    }
    busy = server_body("b", **{"OS-EXT-STS:task_state": "rebuild_block_device_mapping"})
    nova.answer(
        "GET",
        f"{V}/servers/detail",
        Answer(200, page1),
        Answer(200, {"servers": [busy], "servers_links": []}),
    )
    group = {"id": "g1", "name": "web", "policy": "anti-affinity", "members": ["a", "zz"]}
    nova.answer("GET", f"{V}/os-server-groups", Answer(200, {"server_groups": [group]}))

    a, b = await cloud.list_servers(HostName("compute-1"))

    assert (a.id, a.host, a.flavor.name, a.flavor.ram_mb, a.group) == (
        "a",
        "compute-1",
        "m1.small",
        2048,
        "g1",
    )
    assert a.ha_enabled and a.priority == 5 and a.is_running
    assert (b.task_state, b.group) == (TaskState.REBUILDING, None)  # any Nova task: busy
    first, second = nova.made("GET", f"{V}/servers/detail")
    assert first.query == {"all_tenants": ["True"], "host": ["compute-1"]}
    assert second.query["marker"] == ["a"]
    assert _version(first) == "2.71"
    [groups] = nova.made("GET", f"{V}/os-server-groups")
    assert groups.query["all_projects"] == ["True"] and _version(groups) == "2.64"


@pytest.mark.parametrize(
    ("nova_task", "nova_power", "task", "power"),
    [
        (None, 1, TaskState.NONE, PowerState.RUNNING),
        ("powering-off", 1, TaskState.POWERING_OFF, PowerState.RUNNING),
        ("powering-on", 4, TaskState.POWERING_ON, PowerState.SHUTDOWN),
        ("reboot_started_hard", 6, TaskState.REBOOTING_HARD, PowerState.CRASHED),
        ("rebuild_spawning", 0, TaskState.REBUILD_SPAWNING, PowerState.NOSTATE),
        ("migrating", 3, TaskState.REBUILDING, PowerState.PAUSED),
    ],
)
async def test_nova_task_and_power_states_map_to_the_domain(
    cloud: OpenStackCloud,
    nova: RecordedNova,
    nova_task: str | None,
    nova_power: int,
    task: TaskState,
    power: PowerState,
) -> None:
    body = server_body("s2", **{"OS-EXT-STS:task_state": nova_task, "OS-EXT-STS:power_state": nova_power})
    nova.answer("GET", f"{V}/servers/s2", Answer(200, {"server": body}))
    server = await cloud.get_server(ServerId("s2"))
    assert (server.task_state, server.power_state) == (task, power)


async def test_a_server_in_error_carries_novas_fault_message(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    fault = {"code": 500, "message": "No valid host was found. ", "created": "2026-12-05T10:00:00Z"}
    body = server_body("s3", fault=fault, **{"OS-EXT-STS:vm_state": "error", "OS-EXT-STS:power_state": 0})
    nova.answer("GET", f"{V}/servers/s3", Answer(200, {"server": body}))
    server = await cloud.get_server(ServerId("s3"))
    assert (server.vm_state, server.fault) == (VmState.ERROR, "No valid host was found. ")
    nova.answer("GET", f"{V}/servers/s1", Answer(200, {"server": server_body("s1")}))
    assert (await cloud.get_server(ServerId("s1"))).fault == ""


async def test_server_show_maps_states_and_its_server_group(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    body = server_body(
        "s1",
        server_groups=["g9"],
        **{"OS-EXT-STS:vm_state": "stopped", "OS-EXT-STS:power_state": 4},
    )
    nova.answer("GET", f"{V}/servers/s1", Answer(200, {"server": body}))
    server = await cloud.get_server(ServerId("s1"))
    assert (server.vm_state, server.power_state, server.group) == (VmState.STOPPED, PowerState.SHUTDOWN, "g9")
    nova.answer("GET", f"{V}/os-server-groups", Answer(200, {"server_groups": [
        {"id": "g9", "name": "db", "policy": "soft-anti-affinity", "members": ["s1"]}
    ]}))  # fmt: skip
    [group] = await cloud.list_server_groups()
    assert (group.policy, group.members) == (GroupPolicy.SOFT_ANTI_AFFINITY, frozenset({"s1"}))


# ---- actions ----------------------------------------------------------------------------------


async def test_force_down_and_disable_address_the_service_by_id(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    nova.answer("GET", f"{V}/os-services", Answer(200, {"services": [SERVICE]}))
    nova.answer("PUT", f"{V}/os-services/5f1c-uuid", Answer(200, {"service": SERVICE}))

    await cloud.force_down(HostName("compute-1"), True)
    await cloud.disable_service(HostName("compute-1"), "haven: host failure")
    await cloud.enable_service(HostName("compute-1"))
    await cloud.force_down(HostName("compute-1"), False)

    puts = nova.made("PUT", f"{V}/os-services/5f1c-uuid")
    assert [p.body for p in puts] == [
        {"forced_down": True},
        {"status": "disabled", "disabled_reason": "haven: host failure"},
        {"status": "enabled"},
        {"forced_down": False},
    ]
    assert {_version(p) for p in puts} == {"2.53"}
    assert nova.made("GET", f"{V}/os-services")[0].query == {
        "binary": ["nova-compute"],
        "host": ["compute-1"],
    }


async def test_evacuate_pins_2_29_names_the_target_and_never_forces_and_the_other_actions(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    nova.answer("POST", f"{V}/servers/s1/action", Answer(200, {}))
    await cloud.evacuate(ServerId("s1"), HostName("compute-2"))
    await cloud.evacuate(ServerId("s1"), None)
    await cloud.reset_state(ServerId("s1"), VmState.ACTIVE)
    calls = nova.made("POST", f"{V}/servers/s1/action")
    assert [c.body for c in calls] == [
        {"evacuate": {"host": "compute-2"}},
        {"evacuate": {}},
        {"os-resetState": {"state": "active"}},
    ]
    assert [_version(c) for c in calls[:2]] == ["2.29", "2.29"]
    await cloud.stop_server(ServerId("s1"))
    await cloud.start_server(ServerId("s1"))
    await cloud.reboot_server(ServerId("s1"))
    assert [c.body for c in nova.made("POST", f"{V}/servers/s1/action")[3:]] == [
        {"os-stop": None},
        {"os-start": None},
        {"reboot": {"type": "HARD"}},
    ]
    with pytest.raises(PermanentError, match="only to active or error"):
        await cloud.reset_state(ServerId("s1"), VmState.STOPPED)


async def test_liveness_reports_hosts_nova_sees_down_until_a_forced_down_compute_reports_again(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    down = {**SERVICE, "host": "compute-2", "state": "down"}
    forced = {**SERVICE, "host": "compute-3", "state": "down", "forced_down": True}

    def at(second: int) -> dict[str, object]:
        return {**forced, "updated_at": f"2026-11-21T10:00:{second:02d}.000000"}

    polls = [[SERVICE, down, at(0)], [SERVICE, down, at(1)], [SERVICE, down, at(1)], [SERVICE, at(3)]]
    nova.answer("GET", f"{V}/os-services", *(Answer(200, {"services": p}) for p in polls))
    seen = [[(r.host, r.nova_up) for r in await cloud.liveness_anomalies()] for _ in polls]
    assert seen[0] == [("compute-2", False), ("compute-3", False)]
    assert seen[1] == seen[2] == seen[0]  # one move (haven's own disable PUT, say) is not a report
    assert seen[3] == []  # moved again: its compute reports, so it may be returned to service
    assert (await cloud.liveness_anomalies()) == []  # the last answer repeats: still back


async def test_service_states_carry_novas_clock_from_the_date_header(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    # As a real nova-api answers (the lab's, recorded): Nova's clock 13 s after the last report.
    dated = Answer(200, {"services": [SERVICE]}, headers={"Date": "Sat, 21 Nov 2026 10:00:13 GMT"})
    nova.answer("GET", f"{V}/os-services", dated)
    [state] = await cloud.compute_service_states()
    assert state.nova_now == datetime(2026, 11, 21, 10, 0, 13, tzinfo=UTC).timestamp()
    assert state.updated_at is not None and state.nova_now - state.updated_at == 13.0  # age in Nova's time
    down = {**SERVICE, "state": "down"}
    nova.answer("GET", f"{V}/os-services", Answer(200, {"services": [down]}, headers=dated.headers))
    [reading] = await cloud.liveness_anomalies()
    assert reading.nova_now == state.nova_now and reading.nova_updated_at == state.updated_at


async def test_without_a_date_header_service_states_have_no_nova_clock_and_it_is_logged_once(
    cloud: OpenStackCloud, nova: RecordedNova, caplog: pytest.LogCaptureFixture
) -> None:
    nova.answer("GET", f"{V}/os-services", Answer(200, {"services": [SERVICE]}, headers={"Date": ""}))
    with caplog.at_level(logging.WARNING, "haven.cloud.openstack"):
        states = [await cloud.compute_service_states() for _ in range(3)]
    assert [s.nova_now for [s] in states] == [None, None, None]
    assert len([r for r in caplog.records if "Date header" in r.getMessage()]) == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Sat, 21 Nov 2026 10:00:13 GMT", datetime(2026, 11, 21, 10, 0, 13, tzinfo=UTC).timestamp()),
        ("Saturday, 21-Nov-26 10:00:13 GMT", datetime(2026, 11, 21, 10, 0, 13, tzinfo=UTC).timestamp()),
        ("Sat Nov 21 10:00:13 2026", datetime(2026, 11, 21, 10, 0, 13, tzinfo=UTC).timestamp()),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_http_dates_are_read_in_every_form_http_allows(header: str | None, expected: float | None) -> None:
    assert http_date(header) == expected


# ---- errors, translated at the boundary -------------------------------------------------------


def _nova_error(status: int, key: str, message: str, **headers: str) -> Answer:
    return Answer(status, {key: {"code": status, "message": message}}, headers)


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (_nova_error(404, "itemNotFound", "Instance s1 could not be found."), NotFound, "could not be found"),
        (
            _nova_error(409, "conflictingRequest", "Compute service of compute-1 is still in use."),
            Conflict,
            "still in use",
        ),
        (
            _nova_error(403, "forbidden", "Policy doesn't allow os_compute_api:os-evacuate"),
            PermanentError,
            "Policy",
        ),
        (
            _nova_error(400, "badRequest", "Invalid input for field/attribute host."),
            PermanentError,
            "Invalid",
        ),
    ],
)
async def test_nova_refusals_become_permanent_errors_with_novas_message(
    cloud: OpenStackCloud, nova: RecordedNova, answer: Answer, error: type[Exception], text: str
) -> None:
    nova.answer("POST", f"{V}/servers/s1/action", answer)
    with pytest.raises(error, match=text) as caught:
        await cloud.evacuate(ServerId("s1"), HostName("compute-2"))
    assert not isinstance(caught.value, TemporaryError)
    assert str(caught.value).startswith("evacuate server s1 to compute-2: ")
    assert "secret-token" not in str(caught.value)


async def test_server_errors_are_temporary_and_honour_retry_after(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    nova.answer(
        "GET", f"{V}/servers/s1", _nova_error(503, "serviceUnavailable", "busy", **{"Retry-After": "7"})
    )
    with pytest.raises(TemporaryError, match="busy") as caught:
        await cloud.get_server(ServerId("s1"))
    assert caught.value.delay == 7.0
    nova.answer("GET", f"{V}/servers/s1", _nova_error(500, "computeFault", "Unexpected API Error."))
    with pytest.raises(TemporaryError, match="Unexpected API Error") as caught:
        await cloud.get_server(ServerId("s1"))
    assert caught.value.delay == 2.0


async def test_an_unreachable_cloud_is_a_temporary_error() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    driver = open_cloud(
        None,
        max_workers=1,
        auth_type="admin_token",
        auth={"endpoint": dead, "token": "t"},
        compute_endpoint_override=f"{dead}{V}",
        api_timeout=2,
    )
    try:
        with pytest.raises(TemporaryError, match="cannot reach the cloud"):
            await driver.list_hosts()
    finally:
        driver.close()


async def test_calls_run_in_the_bounded_pool_and_the_loop_stays_free(
    cloud: OpenStackCloud, nova: RecordedNova
) -> None:
    nova.answer("GET", f"{V}/servers/s1", Answer(200, {"server": server_body("s1")}))
    threads: set[str] = set()
    original = NovaApi.server

    def spy(api: NovaApi, server_id: str) -> dict[str, object]:
        threads.add(threading.current_thread().name)
        return original(api, server_id)

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(NovaApi, "server", spy)
        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(cloud.get_server(ServerId("s1")) for _ in range(6)))
        tick.cancel()
    assert threads and all(t.startswith("haven-openstack") for t in threads)
    assert len(threads) <= 2  # the pool's bound
    assert ticks > 0


# ---- opening a cloud --------------------------------------------------------------------------


def test_cloud_name_comes_from_the_flag_then_os_cloud() -> None:
    assert cloud_name("lab", {"OS_CLOUD": "prod"}) == "lab"
    assert cloud_name(None, {"OS_CLOUD": "prod"}) == "prod"
    with pytest.raises(ConfigError, match="pass --cloud NAME or set OS_CLOUD"):
        cloud_name(None, {})


def test_an_unknown_cloud_name_is_a_config_error(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"{tmp_path}/clouds.yaml"
    with open(path, "w") as f:
        f.write("clouds:\n  lab:\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", path)
    with pytest.raises(ConfigError, match="cannot use OpenStack cloud 'nowhere'") as caught:
        open_cloud("nowhere")
    assert "clouds.yaml" in caught.value.hint


def test_a_named_clouds_yaml_is_read_and_the_environment_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usual = tmp_path / "usual.yaml"
    usual.write_text("clouds:\n  prod:\n    auth:\n      auth_url: http://127.0.0.1:5000/v3\n")
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "clouds:\n  lab:\n    auth_type: admin_token\n    auth:\n      token: t\n"
        "      endpoint: http://127.0.0.1:9/v3\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(usual))
    open_cloud("lab", clouds_yaml=lab).close()  # found only in the named file
    assert os.environ["OS_CLIENT_CONFIG_FILE"] == str(usual)
    with pytest.raises(ConfigError, match="'lab'"):
        open_cloud("lab")  # the usual file does not know it
