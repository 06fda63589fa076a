"""The pure decision behind guest recovery: which events are failures, watchdog policies, the crash-loop
limit, and the [recovery] settings that shape them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from haven.domain.cloud import Flavor, PowerState, Server, TaskState, VmState, watchdog_action_of
from haven.domain.errors import ConfigError
from haven.domain.ids import HostName, ServerId
from haven.domain.settings import RecoverySettings
from haven.recovery.vm_policy import (
    StopHistory,
    VmAction,
    VmEvent,
    classify,
    decide,
    span,
    watchdog_resets,
)
from haven.service.config import load_config

DEFAULTS = RecoverySettings()


def vm(
    ha: bool = True,
    state: VmState = VmState.STOPPED,
    power: PowerState = PowerState.SHUTDOWN,
    watchdog: str = "",
    **metadata: str,
) -> Server:
    meta = {"HA_Enabled": "True"} if ha else {}
    return Server(
        ServerId("vm-1"),
        "web-1",
        HostName("compute-1"),
        Flavor("m1.small", 1, 2048, 20),
        vm_state=state,
        power_state=power,
        metadata={**meta, **metadata},
        watchdog_action=watchdog,
    )


def crash(**more: Any) -> dict[str, Any]:
    return {"event": "LIFECYCLE", "instance_uuid": "vm-1", "vir_domain_event": "STOPPED_FAILED", **more}


WATCHDOG = {"event": "WATCHDOG", "instance_uuid": "vm-1", "vir_domain_event": "WATCHDOG_RESET"}


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (crash(), VmEvent.CRASH),
        ({"event": "lifecycle", "vir_domain_event": "crashed_panicked"}, VmEvent.CRASH),
        ({"event": "IO_ERROR", "vir_domain_event": "IO_ERROR_REPORT"}, VmEvent.CRASH),
        (WATCHDOG, VmEvent.WATCHDOG),
        ({"event": "LIFECYCLE", "vir_domain_event": "STOPPED_SHUTDOWN"}, VmEvent.STOPPED),  # a shutdown
        ({"event": "LIFECYCLE", "vir_domain_event": "STOPPED_DESTROYED"}, VmEvent.STOPPED),  # virsh destroy
        ({"event": "LIFECYCLE", "vir_domain_event": "SHUTDOWN_FINISHED"}, VmEvent.STOPPED),
        ({"event": "LIFECYCLE", "vir_domain_event": "CRASHED_CRASHLOADED"}, VmEvent.OTHER),  # kdump took over
        ({"event": "REBOOT"}, VmEvent.OTHER),
        ({}, VmEvent.OTHER),
    ],
)
def test_which_events_are_failures(payload: dict[str, Any], kind: VmEvent) -> None:
    assert classify(payload) is kind


def test_a_crashed_ha_vm_is_restarted_the_configured_way() -> None:
    assert decide(crash(), vm(), 0, DEFAULTS) == decide(crash(), vm(), 2, DEFAULTS)
    assert decide(crash(), vm(), 0, DEFAULTS).action is VmAction.RESTART
    assert decide(crash(), vm(), 0, DEFAULTS).note == "web-1 crashed: start"
    shown_error = vm(state=VmState.ERROR, power=PowerState.CRASHED)
    assert decide(crash(), shown_error, 0, DEFAULTS).note == "web-1 crashed: stop, start"
    reboot = RecoverySettings(vm_restart_method="hard_reboot")
    assert decide(crash(), vm(), 0, reboot).action is VmAction.HARD_REBOOT


DESTROYED = {"event": "LIFECYCLE", "instance_uuid": "vm-1", "vir_domain_event": "STOPPED_DESTROYED"}
# Nova has not synced the power state yet: it still shows the destroyed guest active and running.
NOT_SYNCED = vm(state=VmState.ACTIVE, power=PowerState.RUNNING)


def test_a_guest_stopped_behind_nova_s_back_is_restarted_whatever_nova_shows_yet() -> None:
    decision = decide(DESTROYED, NOT_SYNCED, 0, DEFAULTS)
    assert (decision.action, decision.note) == (VmAction.RESTART, "web-1 stopped unexpectedly: stop, start")
    # Nova's power-state sync has run (vm_state stopped, its own stop recorded after the event).
    assert decide(DESTROYED, vm(), 0, DEFAULTS).note == "web-1 stopped unexpectedly: start"
    reboot = RecoverySettings(vm_restart_method="hard_reboot")
    assert decide(DESTROYED, NOT_SYNCED, 0, reboot).action is VmAction.HARD_REBOOT
    assert decide(DESTROYED, vm(ha=False), 0, DEFAULTS).action is VmAction.IGNORED
    assert decide(DESTROYED, vm(HA_Mode="notify"), 0, DEFAULTS).action is VmAction.LEFT_TO_OWNER


def test_a_stop_its_owner_asked_nova_for_is_left_alone() -> None:
    asked = decide(DESTROYED, vm(), 0, DEFAULTS, StopHistory(owner_stop=True))
    assert (asked.action, asked.note) == (
        VmAction.IGNORED,
        "web-1 was stopped through Nova (os-stop): not restarted",
    )
    stopping = dataclasses.replace(NOT_SYNCED, task_state=TaskState.POWERING_OFF)
    assert decide(DESTROYED, stopping, 0, DEFAULTS).action is VmAction.IGNORED
    again = decide(DESTROYED, NOT_SYNCED, 0, DEFAULTS, StopHistory(restarted=True))
    assert (again.action, again.note) == (VmAction.NOTHING, "web-1 was started again since: nothing to do")


def test_unexpected_stops_count_towards_the_crash_loop_limit() -> None:
    settings = RecoverySettings(crash_loop_max_restarts=2)
    assert decide(DESTROYED, NOT_SYNCED, 1, settings).action is VmAction.RESTART
    assert decide(DESTROYED, NOT_SYNCED, 2, settings).action is VmAction.LEFT_STOPPED


def test_the_crash_loop_limit_leaves_the_vm_stopped_and_says_so() -> None:
    settings = RecoverySettings(crash_loop_max_restarts=3, crash_loop_window_s=600.0)
    assert decide(crash(), vm(), 2, settings).action is VmAction.RESTART
    held = decide(crash(), vm(), 3, settings)
    assert held.action is VmAction.LEFT_STOPPED
    assert held.note == "restarted 3 times in 10 min; left stopped"
    assert (
        decide(crash(), vm(), 0, RecoverySettings(crash_loop_max_restarts=0)).action is VmAction.LEFT_STOPPED
    )


def test_what_haven_leaves_alone() -> None:
    assert decide(crash(), None, 0, DEFAULTS) == decide(WATCHDOG, None, 0, DEFAULTS)
    assert decide(crash(), None, 0, DEFAULTS).note == "the VM does not exist"
    assert decide(crash(), vm(HA_Mode="notify"), 0, DEFAULTS).action is VmAction.LEFT_TO_OWNER
    not_ha = decide(crash(), vm(ha=False), 0, DEFAULTS)
    assert not_ha.action is VmAction.IGNORED and "process_all_instances" in not_ha.note
    every = RecoverySettings(process_all_instances=True)
    assert decide(crash(), vm(ha=False), 0, every).action is VmAction.RESTART
    # Nova still shows a crashed guest running until its power-state sync (15 s or more later):
    # only a start or reboot asked since the crash means it runs again.
    running = vm(state=VmState.ACTIVE, power=PowerState.RUNNING)
    assert decide(crash(), running, 0, DEFAULTS).note == "web-1 crashed: stop, start"
    again = decide(crash(), running, 0, DEFAULTS, StopHistory(restarted=True))
    assert (again.action, again.note) == (VmAction.NOTHING, "web-1 was started again since: nothing to do")
    kdump = {"event": "LIFECYCLE", "vir_domain_event": "CRASHED_CRASHLOADED"}
    assert (
        decide(kdump, vm(), 0, DEFAULTS).note
        == "LIFECYCLE CRASHED_CRASHLOADED is not a failure haven recovers"
    )


@pytest.mark.parametrize(
    ("action", "default", "resets"),
    [
        ("", "reset", True),
        ("reset", "notify", True),
        ("RESET", "reset", True),
        ("", "notify", False),
        ("poweroff", "reset", False),
        ("pause", "reset", False),
        ("none", "reset", False),
        ("disabled", "reset", False),
        ("notify", "reset", False),
    ],
)
def test_the_watchdog_policy(action: str, default: str, resets: bool) -> None:
    assert watchdog_resets(action, default) is resets
    settings = RecoverySettings(watchdog_default_action=default)
    running = vm(state=VmState.ACTIVE, power=PowerState.RUNNING, watchdog=action)
    decision = decide(WATCHDOG, running, 0, settings)
    assert decision.action is (VmAction.HARD_REBOOT if resets else VmAction.RECORDED)
    assert f"hw:watchdog_action={action or default}" in decision.note


def test_the_watchdog_action_comes_from_the_flavor_first_then_the_image() -> None:
    assert watchdog_action_of({"hw:watchdog_action": "Reset"}, {"hw_watchdog_action": "pause"}) == "reset"
    assert watchdog_action_of({}, {"hw_watchdog_action": "pause"}) == "pause"
    assert watchdog_action_of({}, {}) == ""


def test_windows_read_as_people_say_them() -> None:
    assert (span(600), span(90), span(60), span(7.5)) == ("10 min", "90 s", "1 min", "7.5 s")


# ---- [recovery] in the config file ---------------------------------------------------------------


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "haven.toml"
    path.write_text(body)
    return path


def test_the_guest_recovery_settings_are_read_from_the_config_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[recovery]\nprocess_all_instances = true\nvm_restart_method = "hard_reboot"\n'
        'crash_loop_max_restarts = 5\ncrash_loop_window_s = 1800\nwatchdog_default_action = "notify"\n',
    )
    r = load_config(tmp_path, path).engine.recovery
    assert (r.process_all_instances, r.vm_restart_method, r.crash_loop_max_restarts) == (
        True,
        "hard_reboot",
        5,
    )
    assert (r.crash_loop_window_s, r.watchdog_default_action) == (1800.0, "notify")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('vm_restart_method = "reboot"', "vm_restart_method 'reboot' is not known"),
        ('watchdog_default_action = "explode"', "watchdog_default_action 'explode' is not known"),
        ("crash_loop_window_s = 0", "crash_loop_window_s must be positive"),
        ("crash_loop_max_restarts = -1", "crash_loop_max_restarts must not be negative"),
        ('crash_loop_max_restarts = "3"', "crash_loop_max_restarts must be a int"),
    ],
)
def test_bad_guest_recovery_settings_are_named(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, write(tmp_path, f"[recovery]\n{line}\n"))
    assert message in caught.value.message
