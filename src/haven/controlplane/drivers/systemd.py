"""systemd over D-Bus (dbus-fast): one host's units, read and driven through org.freedesktop.systemd1.

Used by the reconciler as that host's ``Units`` port. Reads ActiveState, SubState, LoadState,
InvocationID and ActiveEnterTimestamp of the unit, and the service's NRestarts; queues StartUnit,
StopUnit and RestartUnit jobs (mode "replace") without waiting for them: the next pass reads the result.
D-Bus errors are translated here: NoSuchUnit is NotFound, anything else (the bus gone, a timeout)
a TemporaryError. The connection is opened on first use and opened again after it breaks.

``cpu_s`` (the ``CpuMeter`` port) is the unit's CPU time: systemd's CPUUsageNSec. A systemd 252 on a
hybrid cgroup hierarchy (cgroup v1 controllers, as this project's machines and the HA lab's systemd
in a PID namespace) reports none (2**64-1) even with CPUAccounting=yes; then, for a systemd on this
machine only (a ``unix:`` bus: a remote host's cgroup of the same name would be another process),
the unit's ControlGroup's processes are read from /sys/fs/cgroup (unified, then name=systemd) and
their /proc/PID/stat CPU times summed, keeping only processes in that systemd's PID namespace (its
bus socket's peer, SO_PEERCRED): two namespaced systemds of one machine (the HA lab's controllers)
put their units of one name in the same cgroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from haven.domain.controlplane import UnitActive, UnitStatus
from haven.domain.errors import NotFound, TemporaryError
from haven.domain.waiting import within

log = logging.getLogger(__name__)

_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"
_UNIT = "org.freedesktop.systemd1.Unit"
_SERVICE = "org.freedesktop.systemd1.Service"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_NO_FIGURE = 2**64 - 1  # systemd's "not known" for CPUUsageNSec
_CGROUP_ROOTS = ("/sys/fs/cgroup", "/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd")
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


class SystemdUnits:
    """``bus_address``: a D-Bus address (``unix:path=/run/dbus/system_bus_socket``); None: the system bus."""

    def __init__(self, bus_address: str | None = None, timeout_s: float = 5.0) -> None:
        self._address = bus_address
        self._timeout_s = timeout_s
        self._bus: MessageBus | None = None
        self._connecting = asyncio.Lock()
        self._attempts = 0  # connection attempts made
        self._failure: TemporaryError | None = None  # the latest attempt's failure (None: it connected)
        self._cgroups: dict[str, str] = {}  # unit -> its ControlGroup (fixed by its name)
        self._no_figure: set[str] = set()  # units this systemd gives no CPUUsageNSec for
        self._namespace = ""  # the PID namespace of the systemd behind the bus ("": not known yet)

    async def close(self) -> None:
        bus, self._bus = self._bus, None
        self._namespace = ""  # a bus that broke may come back with another systemd behind it
        self._no_figure.clear()
        if bus is not None:
            bus.disconnect()  # only shuts the socket down: it is closed once the reader sees it
            with contextlib.suppress(Exception):  # a bus that broke is closed all the same
                await within(bus.wait_for_disconnect(), self._timeout_s)  # type: ignore[no-untyped-call]

    async def status(self, unit: str) -> UnitStatus:
        path = await self._unit_path(unit)
        props = await self._get_all(path, _UNIT)
        if props.get("LoadState") == "not-found":
            return UnitStatus(UnitActive.INACTIVE, "dead", loaded=False)
        n_restarts = 0
        if unit.endswith(".service"):
            n_restarts = int((await self._get_all(path, _SERVICE)).get("NRestarts", 0))
        entered = int(props.get("ActiveEnterTimestamp", 0))
        return UnitStatus(
            active=UnitActive(str(props.get("ActiveState", "inactive"))),
            sub_state=str(props.get("SubState", "")),
            n_restarts=n_restarts,
            invocation_id=bytes(props.get("InvocationID", b"")).hex(),
            active_since=entered / 1e6 if entered else None,
        )

    async def cpu_s(self, unit: str) -> float | None:
        """The CPU time ``unit``'s processes used, in seconds; None when neither systemd nor (for a
        systemd on this machine) the unit's cgroup tells it."""
        if not unit.endswith(".service"):
            return None
        if unit in self._no_figure and self._namespace and unit in self._cgroups:
            # This systemd gives no CPUUsageNSec (hybrid cgroups): the cgroup's processes alone, no
            # D-Bus round trip. Under load a starved systemd answered those two calls later than
            # the read's bound (the probe's timeout), the figure was lost and a replica working flat
            # out was judged hung (bench/ha_lab.py --drill kill, 24 clients, load 25-30).
            return cgroup_cpu_s(self._cgroups[unit], self._namespace)
        path = await self._unit_path(unit)
        nsec = await self._get(path, _SERVICE, "CPUUsageNSec")
        if isinstance(nsec, int) and nsec != _NO_FIGURE:
            return nsec / 1e9
        self._no_figure.add(unit)
        namespace = await self._local_namespace()
        if not namespace:
            return None
        cgroup = self._cgroups.get(unit)
        if cgroup is None:
            cgroup = str(await self._get(path, _SERVICE, "ControlGroup") or "")
            if cgroup:
                self._cgroups[unit] = cgroup
        return cgroup_cpu_s(cgroup, namespace) if cgroup else None

    async def start(self, unit: str) -> None:
        await self._call(_MANAGER_PATH, _MANAGER, "StartUnit", "ss", [unit, "replace"])

    async def stop(self, unit: str) -> None:
        await self._call(_MANAGER_PATH, _MANAGER, "StopUnit", "ss", [unit, "replace"])

    async def restart(self, unit: str) -> None:
        await self._call(_MANAGER_PATH, _MANAGER, "RestartUnit", "ss", [unit, "replace"])

    async def kill(self, unit: str) -> None:
        """SIGKILL every process of ``unit`` (KillUnit, whom ``all``); a unit with none is left alone."""
        try:
            await self._call(_MANAGER_PATH, _MANAGER, "KillUnit", "ssi", [unit, "all", 9])
        except TemporaryError as exc:
            text = str(exc)
            if "auxiliary processes" in text:
                # Its main process was signalled, others not (a systemd without its own cgroups, as
                # the HA lab's PID 1 of a namespace): the main one once more. That second call failing
                # (its main process already gone) is no failure: logged, not raised.
                try:
                    await self._call(_MANAGER_PATH, _MANAGER, "KillUnit", "ssi", [unit, "main", 9])
                except TemporaryError as again:
                    log.info("kill of %s: main process not signalled again: %s", unit, again)
                return
            if "NoSuchProcess" not in text and "not running" not in text.lower():
                raise

    # ---- the bus ----------------------------------------------------------------------------------

    async def _unit_path(self, unit: str) -> str:
        # LoadUnit (not GetUnit) also answers for a unit that is not loaded because it is inactive.
        reply = await self._call(_MANAGER_PATH, _MANAGER, "LoadUnit", "s", [unit])
        return str(reply[0])

    async def _get(self, path: str, interface: str, name: str) -> Any:
        reply = await self._call(path, _PROPERTIES, "Get", "ss", [interface, name])
        variant: Variant = reply[0]
        return variant.value

    async def _local_namespace(self) -> str:
        """The PID namespace (``pid:[N]``) of the systemd behind this driver's bus, when that bus is a
        socket on this machine whose listener is seen here; "" otherwise (remote, abstract, unknown)."""
        if not self._namespace:  # kept once known; a bus not up yet is asked again
            # In a thread: a connect to a listener whose backlog is full (a frozen bus) waits.
            self._namespace = await asyncio.to_thread(bus_namespace, self._address)
        return self._namespace

    async def _get_all(self, path: str, interface: str) -> dict[str, Any]:
        reply = await self._call(path, _PROPERTIES, "GetAll", "s", [interface])
        values: dict[str, Variant] = reply[0]
        return {key: variant.value for key, variant in values.items()}

    async def _call(
        self, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> list[Any]:
        message = Message(
            destination=_SYSTEMD,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body,
        )
        bus = await self._connected()
        try:
            reply = await within(bus.call(message), self._timeout_s)
        except TimeoutError:
            await self.close()
            raise TemporaryError(f"systemd did not answer {member} within {self._timeout_s:g} s") from None
        except (OSError, EOFError, DBusError) as exc:
            await self.close()
            raise TemporaryError(f"systemd's bus failed during {member}: {exc}") from exc
        if reply is None:
            raise TemporaryError(f"systemd gave no reply to {member}")
        if reply.message_type is MessageType.ERROR:
            error = str(reply.error_name)
            text = reply.body[0] if reply.body else error
            if error.endswith(".NoSuchUnit") or error.endswith(".LoadFailed"):
                raise NotFound(f"systemd: {text}")
            raise TemporaryError(f"systemd refused {member}: {error}: {text}")
        return list(reply.body)

    async def _connected(self) -> MessageBus:
        # One connection however many calls arrive at once (the reconciler reads a host's units
        # together): without the lock each opened its own and all but the last were never closed.
        # A call that waited while another's attempt failed fails alike at once: else a silent host
        # (a hung systemd, a frozen controller) cost one connect timeout per waiting call, in turn
        # (6 units: a 30 s pass, measured on the HA lab).
        attempts = self._attempts
        async with self._connecting:
            if self._bus is not None and self._bus.connected:
                return self._bus
            if self._attempts != attempts and self._failure is not None:
                raise self._failure
            self._attempts += 1
            bus = MessageBus(bus_address=self._address, bus_type=BusType.SYSTEM)
            try:
                self._bus = await within(bus.connect(), self._timeout_s)
            except (TimeoutError, OSError, EOFError, DBusError) as exc:
                where = self._address or "the system bus"
                self._failure = TemporaryError(
                    f"cannot reach systemd's D-Bus at {where}: {exc or type(exc).__name__}"
                )
                raise self._failure from exc
            self._failure = None
            return self._bus


def bus_namespace(address: str | None) -> str:
    """The PID namespace of the process that listens on the D-Bus ``address`` (systemd's socket
    activation: systemd itself; else dbus-daemon, in the same namespace), read from its socket's
    peer credentials; "" for a bus not on this machine's file system or a peer not seen here."""
    if address is None:
        address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
    first = address.split(";")[0]
    if not first.startswith("unix:"):
        return ""
    paths = [p.removeprefix("path=") for p in first.removeprefix("unix:").split(",") if p.startswith("path=")]
    if not paths:
        return ""
    path = paths[0]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        return os.readlink(f"/proc/{pid}/ns/pid") if pid > 0 else ""
    except OSError:
        return ""


def cgroup_cpu_s(cgroup: str, namespace: str) -> float | None:
    """The CPU time (user and system, seconds) of the processes of ``cgroup`` (a unit's ControlGroup)
    that are in PID namespace ``namespace``; None when it holds none of them (or cannot be read)."""
    for root in _CGROUP_ROOTS:
        try:
            pids = Path(root + cgroup, "cgroup.procs").read_text().split()
            break
        except OSError:
            continue
    else:
        return None
    ticks, counted = 0, 0
    for pid in pids:
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != namespace:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
        counted += 1
    return ticks * _TICK_S if counted else None
