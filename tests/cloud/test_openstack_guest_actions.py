"""The OpenStack driver's os-instance-actions and watchdog action, against the recorded-response server
(request building and parsing only; stop/start/reboot are in test_openstack_driver.py)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from email.utils import formatdate

import pytest

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
from haven.cloud.openstack.cloud import ACTIONS_SLACK_S
from haven.domain.ids import ServerId


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def answer_at(actions: list[dict[str, str]], nova_now: float | None) -> Answer:
    """os-instance-actions as a Nova whose clock reads ``nova_now`` answers it (None: no Date header)."""
    date = "" if nova_now is None else formatdate(nova_now, usegmt=True)
    return Answer(200, {"instanceActions": actions}, headers={"Date": date})


@pytest.mark.parametrize("skew", [-60.0, 0.0, 60.0])
async def test_instance_actions_are_moved_onto_havens_clock_by_the_offset_from_novas_date(
    cloud: OpenStackCloud,  # noqa: F811
    nova: RecordedNova,  # noqa: F811
    skew: float,
) -> None:
    # Nova's clock is ``skew`` s off haven's. An action 5 s after ``since`` (haven's clock) is found
    # and dated 5 s after it; one from 60 s before is not, whichever way Nova's clock is off.
    since = time.time() - 10
    actions = [
        {"action": "start", "start_time": iso(since + 5 + skew), "request_id": "req-2"},
        {"action": "stop", "start_time": iso(since - 60 + skew), "request_id": "req-1"},  # updated later
    ]
    path = f"{V}/servers/s1/os-instance-actions"
    nova.answer("GET", path, answer_at(actions, time.time() + skew))
    found = await cloud.server_actions(ServerId("s1"), since)
    assert [a.action for a in found] == ["start"]
    assert found[0].at - since == pytest.approx(5.0, abs=1.0)  # Date has whole seconds
    (first,) = nova.made("GET", path)
    assert first.query == {} and _version(first) == "2.58"  # no offset known yet: unfiltered
    await cloud.server_actions(ServerId("s1"), since)
    (reach,) = nova.made("GET", path)[1].query["changes-since"]
    reach_at = datetime.fromisoformat(reach).replace(tzinfo=UTC).timestamp()
    assert reach_at - (since + skew) == pytest.approx(-ACTIONS_SLACK_S, abs=1.0)  # in Nova's clock


async def test_without_a_date_header_actions_keep_novas_times_and_it_is_logged_once(
    cloud: OpenStackCloud,  # noqa: F811
    nova: RecordedNova,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    since = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC).timestamp()
    actions = [
        {"action": "start", "start_time": "2026-11-21T12:00:05.000000", "request_id": "req-2"},
        {"action": "stop", "start_time": "2026-11-21T11:59:00.000000", "request_id": "req-1"},
    ]
    path = f"{V}/servers/s1/os-instance-actions"
    nova.answer("GET", path, answer_at(actions, None))
    with caplog.at_level(logging.WARNING, "haven.cloud.openstack"):
        for _ in range(2):
            found = await cloud.server_actions(ServerId("s1"), since)
            assert [(a.action, a.at - since) for a in found] == [("start", 5.0)]
    assert all(call.query == {} for call in nova.made("GET", path))
    assert len([r for r in caplog.records if "Date header" in r.getMessage()]) == 1


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
