"""libvirt events -> Masakari VM payloads, as masakari-monitors' instance monitor sends them (pure).

Watchdog (and I/O error) events cannot be produced by libvirt's test driver (measured, FACTS.md),
so they are tested here with recorded events: the exact arguments libvirt-python passes to the
callbacks, replayed through the agent's own callbacks into its spool.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from haven.agent import reports
from haven.agent.reports import notification, process_payload, vm_payload
from servers.libvirtd import import_libvirt

from .conftest import RunAgent, agent_config

libvirt = import_libvirt()

UUID = "6695eb01-f6a4-8304-79aa-97f2502e193f"  # the test driver's default domain


def test_the_numbers_are_libvirts() -> None:
    # Our name X is libvirt's VIR_DOMAIN_EVENT_X (VIR_DOMAIN_EVENT_ID_... for the event ids).
    names = [
        "EVENT_ID_LIFECYCLE", "EVENT_ID_REBOOT", "EVENT_ID_WATCHDOG", "EVENT_ID_IO_ERROR",
        "EVENT_ID_IO_ERROR_REASON", "EVENT_ID_CONTROL_ERROR", "SUSPENDED", "STOPPED", "SHUTDOWN", "CRASHED",
        "SUSPENDED_IOERROR", "SUSPENDED_WATCHDOG", "SUSPENDED_API_ERROR", "STOPPED_SHUTDOWN",
        "STOPPED_DESTROYED", "STOPPED_CRASHED", "STOPPED_FAILED", "SHUTDOWN_FINISHED", "CRASHED_PANICKED",
        "CRASHED_CRASHLOADED",
    ]  # fmt: skip
    pairs = {
        name: "VIR_DOMAIN_" + name if name.startswith("EVENT_ID") else "VIR_DOMAIN_EVENT_" + name
        for name in names
    }
    for ours, theirs in pairs.items():
        assert getattr(reports, ours) == getattr(libvirt, theirs), ours
    for number, name in reports.WATCHDOG_ACTIONS.items():
        assert getattr(libvirt, f"VIR_DOMAIN_EVENT_WATCHDOG_{name}") == number
    for number, name in reports.IO_ERROR_ACTIONS.items():
        assert getattr(libvirt, f"VIR_DOMAIN_EVENT_IO_ERROR_{name}") == number


@pytest.mark.parametrize(
    ("event", "detail", "expected"),
    [
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED, "STOPPED_FAILED"),
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED, "STOPPED_DESTROYED"),
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, "STOPPED_SHUTDOWN"),
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED, "STOPPED_CRASHED"),
        (libvirt.VIR_DOMAIN_EVENT_SHUTDOWN, libvirt.VIR_DOMAIN_EVENT_SHUTDOWN_FINISHED, "SHUTDOWN_FINISHED"),
        (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_IOERROR, "SUSPENDED_IOERROR"),
        (
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
            libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG,
            "SUSPENDED_WATCHDOG",
        ),
        (libvirt.VIR_DOMAIN_EVENT_CRASHED, libvirt.VIR_DOMAIN_EVENT_CRASHED_PANICKED, "CRASHED_PANICKED"),
    ],
)
def test_failures_become_lifecycle_payloads(event: int, detail: int, expected: str) -> None:
    assert vm_payload(libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, event, detail, UUID) == {
        "event": "LIFECYCLE", "instance_uuid": UUID, "vir_domain_event": expected,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("event", "detail"),
    [
        (libvirt.VIR_DOMAIN_EVENT_STARTED, libvirt.VIR_DOMAIN_EVENT_STARTED_BOOTED),
        (libvirt.VIR_DOMAIN_EVENT_RESUMED, libvirt.VIR_DOMAIN_EVENT_RESUMED_UNPAUSED),
        (libvirt.VIR_DOMAIN_EVENT_SUSPENDED, libvirt.VIR_DOMAIN_EVENT_SUSPENDED_PAUSED),  # a user's pause
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED),  # live migration
        (libvirt.VIR_DOMAIN_EVENT_STOPPED, libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED),
        (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_DEFINED_ADDED),
        (libvirt.VIR_DOMAIN_EVENT_UNDEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED_REMOVED),
    ],
)
def test_normal_life_is_not_reported(event: int, detail: int) -> None:
    assert vm_payload(libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, event, detail, UUID) is None


def test_other_event_ids_are_named_as_the_monitor_names_them() -> None:
    assert vm_payload(libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, -1, -1, UUID)["vir_domain_event"] == "UNKNOWN"  # type: ignore[index]
    assert vm_payload(libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR, 1, -1, UUID) == {
        "event": "IO_ERROR", "instance_uuid": UUID, "vir_domain_event": "IO_ERROR_PAUSE",
    }  # fmt: skip
    assert (
        vm_payload(libvirt.VIR_DOMAIN_EVENT_ID_RTC_CHANGE, -1, -1, UUID) is None
    )  # the monitor skips it too


def test_notification_bodies_have_masakaris_shape() -> None:
    body = notification("PROCESS", "compute-01", process_payload("nova-compute", running=False))
    fields = body["notification"]
    assert fields["type"] == "PROCESS" and fields["hostname"] == "compute-01"
    assert fields["payload"] == {"event": "STOPPED", "process_name": "nova-compute"}
    assert "+" not in fields["generated_time"] and "T" in fields["generated_time"]  # UTC, no zone
    assert process_payload("libvirtd", running=True)["event"] == "STARTED"


class RecordedDomain:
    """Stands in for the virDomain libvirt passes to a callback: the agent only asks for its UUID."""

    def UUIDString(self) -> str:
        return UUID


async def test_recorded_watchdog_events_are_spooled_as_vm_notifications(
    tmp_path: Path, run_agent: RunAgent
) -> None:
    """The test driver cannot fire a watchdog: replay what libvirt-python passes the callback."""
    # libvirt_uri points nowhere: the watch keeps retrying, the callbacks are what is under test.
    config = agent_config(
        tmp_path, "http://127.0.0.1:9", libvirt_uri="test+unix:///default?socket=/nonexistent"
    )
    async with run_agent(config) as agent:
        assert agent.libvirt is not None
        handlers = dict(agent.libvirt._handlers())
        watchdog = handlers[libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG]
        io_error = handlers[libvirt.VIR_DOMAIN_EVENT_ID_IO_ERROR]
        lifecycle = handlers[libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE]
        # (conn, dom, action, opaque) and (conn, dom, srcpath, devalias, action, opaque): libvirt's order.
        recorded = [
            lambda: watchdog(None, RecordedDomain(), libvirt.VIR_DOMAIN_EVENT_WATCHDOG_RESET, None),
            lambda: watchdog(None, RecordedDomain(), libvirt.VIR_DOMAIN_EVENT_WATCHDOG_POWEROFF, None),
            lambda: lifecycle(None, RecordedDomain(), libvirt.VIR_DOMAIN_EVENT_SUSPENDED,
                              libvirt.VIR_DOMAIN_EVENT_SUSPENDED_WATCHDOG, None),
            lambda: io_error(None, RecordedDomain(), "/var/lib/disk.img", "virtio-disk0",
                             libvirt.VIR_DOMAIN_EVENT_IO_ERROR_PAUSE, None),
        ]  # fmt: skip
        for replay in recorded:  # on another thread, as libvirt's event loop calls them
            await asyncio.to_thread(replay)
        await asyncio.sleep(0.05)  # the handover to the agent's loop (call_soon_threadsafe)
        spooled = [item.body["notification"]["payload"]["vir_domain_event"] for item in agent.spool.pending()]
    assert spooled == ["WATCHDOG_RESET", "WATCHDOG_POWEROFF", "SUSPENDED_WATCHDOG", "IO_ERROR_PAUSE"]
