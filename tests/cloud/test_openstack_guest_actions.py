"""The OpenStack driver's os-instance-actions and watchdog action, against the recorded-response server
(request building and parsing only; stop/start/reboot are in test_openstack_driver.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from cloud.recorded_nova import Answer, RecordedNova
from cloud.test_openstack_driver import (  # noqa: F401
    FLAVOR,
    V,
    _version,
    cloud,
    nova,
    pytestmark,
    server_body,
)
from haven.cloud.openstack import OpenStackCloud
from haven.domain.ids import ServerId


async def test_instance_actions_since_a_time_are_read_with_changes_since_and_filtered_by_start(
    cloud: OpenStackCloud,  # noqa: F811
    nova: RecordedNova,  # noqa: F811
) -> None:
    since = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC).timestamp()
    actions = [
        {"action": "start", "start_time": "2026-11-21T12:00:05.000000", "request_id": "req-2"},
        {
            "action": "stop",
            "start_time": "2026-11-21T11:59:00.000000",
            "request_id": "req-1",
        },  # updated later
    ]
    nova.answer("GET", f"{V}/servers/s1/os-instance-actions", Answer(200, {"instanceActions": actions}))
    found = await cloud.server_actions(ServerId("s1"), since)
    assert [(a.action, a.at - since) for a in found] == [("start", 5.0)]
    (call,) = nova.made("GET", f"{V}/servers/s1/os-instance-actions")
    assert call.query == {"changes-since": ["2026-11-21T12:00:00"]} and _version(call) == "2.58"


async def test_actions_in_one_second_keep_their_order_oldest_first(
    cloud: OpenStackCloud,  # noqa: F811
    nova: RecordedNova,  # noqa: F811
) -> None:
    # Nova lists newest first; on MariaDB start_time has whole seconds, so these two tie.
    since = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC).timestamp()
    actions = [
        {"action": "reboot", "start_time": "2026-11-21T12:00:07.000000", "request_id": "req-2"},
        {"action": "start", "start_time": "2026-11-21T12:00:07.000000", "request_id": "req-1"},
    ]
    nova.answer("GET", f"{V}/servers/s1/os-instance-actions", Answer(200, {"instanceActions": actions}))
    found = await cloud.server_actions(ServerId("s1"), since)
    assert [a.action for a in sorted(found, key=lambda a: a.at)] == ["start", "reboot"]


async def test_the_watchdog_action_comes_from_the_embedded_flavors_extra_specs(
    cloud: OpenStackCloud,  # noqa: F811
    nova: RecordedNova,  # noqa: F811
) -> None:
    flavor = {**FLAVOR, "extra_specs": {"hw:watchdog_action": "poweroff"}}
    nova.answer("GET", f"{V}/servers/s1", Answer(200, {"server": server_body("s1", flavor=flavor)}))
    assert (await cloud.get_server(ServerId("s1"))).watchdog_action == "poweroff"
