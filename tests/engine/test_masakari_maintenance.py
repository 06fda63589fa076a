"""on_maintenance as Masakari sets it, and who ends it (``[recovery] return_to_service``).

What Masakari does, read from its code (openstack/masakari, master):
- masakari/engine/manager.py ``_handle_notification_type_process``: a PROCESS notification with
  event STOPPED sets the host ``on_maintenance = True``, then disables its compute service.
- masakari/engine/manager.py ``_handle_notification_type_host``: a COMPUTE_HOST STOPPED (host_status
  NORMAL) sets ``on_maintenance = True`` before the host's recovery.
- masakari/ha/api.py ``NotificationAPI._create_notification``: a notification about a host on
  maintenance is refused, whatever its type (HostOnMaintenanceError, a 409 in
  masakari/api/openstack/ha/notifications.py); tests/api checks haven's 409.
- Masakari never clears the flag itself: its operators do, once the host is repaired.

haven sets the flag when it actually takes the host's service out (force down, disable), and its
own detector still recovers a host whose maintenance is haven's (see haven.service.engine_intake).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from test_engine import Rig, victim_of

from haven.domain.events import EventKind
from haven.domain.incidents import NotificationStatus, NotificationType
from haven.domain.settings import EngineSettings, RecoverySettings


async def rig_with(tmp_path: Path, return_to_service: str) -> Rig:
    settings = EngineSettings(recovery=replace(RecoverySettings(), return_to_service=return_to_service))
    return await Rig.build(f"sqlite:///{tmp_path}/haven.db", settings=settings)


@pytest.fixture
async def masakari(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await rig_with(tmp_path, "masakari")
    yield made
    made.close()


@pytest.fixture
async def automatic(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await rig_with(tmp_path, "automatic")
    yield made
    made.close()


def process_notes(rig: Rig) -> list[tuple[str, NotificationStatus]]:
    notes = rig.store.list_notifications(type=NotificationType.PROCESS)
    return sorted((str(n.payload["event"]), n.status) for n in notes)


async def test_a_process_failure_puts_the_host_on_maintenance_until_an_operator_ends_it(
    masakari: Rig,
) -> None:
    # manager.py _handle_notification_type_process: STOPPED -> on_maintenance True, service disabled.
    rig = masakari
    victim = victim_of(rig)
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(90.0)
    member = rig.store.get_host(victim)
    assert member.on_maintenance and member.disabled_by_haven
    assert not (await rig.host(victim)).service_enabled
    rig.cloud.crash_nova_compute(victim, crashed=False)
    await rig.run_for(60.0)
    # Back, but still on maintenance: haven's own STARTED is ignored (Masakari's API refuses it) and
    # the service stays disabled, as Masakari leaves it.
    assert process_notes(rig) == [
        ("STARTED", NotificationStatus.IGNORED),
        ("STOPPED", NotificationStatus.FINISHED),
    ]
    assert not (await rig.host(victim)).service_enabled
    assert rig.store.get_host(victim).on_maintenance and rig.kinds(EventKind.HOST_RETURNED) == []

    rig.store.update_host(victim, on_maintenance=False)  # the operator's `segment host update`
    await rig.run_until(lambda: bool(rig.kinds(EventKind.HOST_RETURNED)), limit_s=30.0)
    state = await rig.host(victim)
    assert state.service_enabled and state.service_up and state.disabled_reason == ""
    assert not rig.store.get_host(victim).disabled_by_haven
    assert rig.cloud.evacuations == []


async def test_automatic_return_ends_the_maintenance_haven_began(automatic: Rig) -> None:
    rig = automatic
    victim = victim_of(rig)
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(90.0)
    assert rig.store.get_host(victim).on_maintenance
    rig.cloud.crash_nova_compute(victim, crashed=False)
    await rig.run_for(30.0)
    assert (await rig.host(victim)).service_enabled
    member = rig.store.get_host(victim)
    assert not member.on_maintenance and not member.disabled_by_haven
    assert process_notes(rig) == [
        ("STARTED", NotificationStatus.FINISHED),
        ("STOPPED", NotificationStatus.FINISHED),
    ]


async def test_automatic_return_leaves_an_operators_maintenance_alone(automatic: Rig) -> None:
    rig = automatic
    victim = victim_of(rig)
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(90.0)
    rig.cloud.crash_nova_compute(victim, crashed=False)
    await rig.run_for(30.0)
    assert not rig.store.get_host(victim).on_maintenance
    rig.store.update_host(victim, on_maintenance=True)  # now the operator's own maintenance
    rig.cloud.crash_nova_compute(victim)
    await rig.run_for(90.0)
    # Masakari leaves a host on maintenance alone: nothing disabled, the report ignored.
    assert (await rig.host(victim)).service_enabled
    assert rig.store.get_host(victim).on_maintenance
    assert ("STOPPED", NotificationStatus.IGNORED) in process_notes(rig)


@pytest.mark.parametrize("mode", ["masakari", "automatic"])
async def test_a_host_on_havens_maintenance_that_then_dies_is_still_recovered(
    tmp_path: Path, mode: str
) -> None:
    # A crashed nova-compute leaves its VMs running: the host's death must still bring them back,
    # though Masakari would refuse its monitor's report (the host is on maintenance).
    rig = await rig_with(tmp_path, mode)
    try:
        victim = victim_of(rig)
        ha = await rig.ha_vms(victim)
        rig.cloud.crash_nova_compute(victim)
        await rig.run_for(120.0)
        assert rig.store.get_host(victim).on_maintenance
        rig.cloud.fail_power(victim)
        await rig.run_until(
            lambda: (
                bool(rig.store.list_notifications(type=NotificationType.COMPUTE_HOST))
                and not rig.engine.open_notifications()
            )
        )
        (recovery,) = rig.store.list_notifications(type=NotificationType.COMPUTE_HOST)
        assert recovery.status is NotificationStatus.FINISHED
        assert ha and all(len(rig.cloud.hosts_running(s)) == 1 for s in ha)
        assert all(rig.cloud.hosts_running(s) != [victim] for s in ha)
    finally:
        rig.close()


async def test_a_host_recovery_puts_the_host_on_maintenance_and_it_is_not_opened_again(masakari: Rig) -> None:
    # manager.py _handle_notification_type_host: on_maintenance True for the host recovered.
    rig = masakari
    victim = victim_of(rig)
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    assert rig.store.get_host(victim).on_maintenance
    await rig.engine._executor._fencer.power_on(victim)  # back on, still out of service
    await rig.run_for(300.0)
    assert len(rig.store.list_notifications(type=NotificationType.COMPUTE_HOST)) == 1
    assert rig.cloud.live_hosts_fenced == []  # booting, it was not fenced again
    assert (await rig.host(victim)).forced_down  # Masakari's operators return it


async def test_a_report_haven_refuses_leaves_the_host_out_of_maintenance(masakari: Rig) -> None:
    # haven's difference: Masakari sets the flag before it looks; haven when it takes the host out.
    rig = masakari
    victim = victim_of(rig)
    opened = rig.engine.submit(
        NotificationType.COMPUTE_HOST, victim, {"event": "STOPPED", "host_status": "NORMAL"}
    )
    assert opened is not None
    await rig.run_until(rig.recovery_over, limit_s=120.0)
    assert rig.store.get_notification(opened.id).status is NotificationStatus.FAILED
    assert not rig.store.get_host(victim).on_maintenance
    assert (await rig.host(victim)).service_enabled


async def test_a_reserved_host_that_fails_stops_being_reserved(masakari: Rig) -> None:
    # manager.py _handle_notification_type_host: "Set reserved flag to False if this host is reserved".
    rig = masakari
    victim = victim_of(rig)
    rig.store.update_host(victim, reserved=True)
    rig.cloud.fail_power(victim)
    await rig.run_until(rig.recovery_over)
    member = rig.store.get_host(victim)
    assert member.on_maintenance and not member.reserved


async def test_a_process_failure_leaves_a_reserved_host_reserved(masakari: Rig) -> None:
    # manager.py _handle_notification_type_process sets on_maintenance only.
    rig = masakari
    victim = victim_of(rig)
    rig.store.update_host(victim, reserved=True)
    opened = rig.engine.submit(
        NotificationType.PROCESS, victim, {"event": "STOPPED", "process_name": "nova-compute"}
    )
    assert opened is not None
    await rig.run_until(lambda: rig.store.get_host(victim).on_maintenance, limit_s=120.0)
    assert rig.store.get_host(victim).reserved
