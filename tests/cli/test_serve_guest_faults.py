"""`haven serve --inject` of a guest fault on the simulated cloud: the simulated agent's report reaches
the engine and the VM is recovered, as a real `haven serve` process shows it through its API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.conftest import HavenServer, start_haven

RECOVERY_TIMEOUT_S = 30.0


@pytest.fixture(params=["vm-crash", "guest-watchdog"])
def injected(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, HavenServer]]:
    scenario: str = request.param
    for server in start_haven(tmp_path / "home", "--inject", scenario, "--inject-after", "0.5"):
        yield scenario, server


def vm_notifications(server: HavenServer) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{server.url}/v1/notifications",
        params={"type": "VM"},
        headers={"X-Auth-Token": server.token, "OpenStack-API-Version": "instance-ha 1.1"},
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["notifications"]
    return found


def test_the_injected_guest_fault_is_reported_by_its_agent_and_recovered(
    injected: tuple[str, HavenServer],
) -> None:
    scenario, server = injected
    server.wait_for_log(r"injected: VM \S+ ")
    started = time.monotonic()
    deadline = started + RECOVERY_TIMEOUT_S
    while not (done := [n for n in vm_notifications(server) if n["status"] == "finished"]):
        assert time.monotonic() < deadline, f"{scenario}: no VM recovered within {RECOVERY_TIMEOUT_S} s"
        time.sleep(0.2)
    (note,) = done
    expected = {"vm-crash": "STOPPED_FAILED", "guest-watchdog": "WATCHDOG_RESET"}[scenario]
    assert note["payload"]["vir_domain_event"] == expected
    shown = httpx.get(
        f"{server.url}/v1/notifications/{note['notification_uuid']}",
        headers={"X-Auth-Token": server.token},
        timeout=5,
    ).json()["notification"]
    summary = shown["haven_recovery"]["summary"]
    assert summary["restarted"] is True and summary["note"].endswith("running again"), summary
    print(f"{scenario}: injected -> recovered in {time.monotonic() - started:.1f} s")
