"""systemd over D-Bus (dbus-fast): one host's units, read and driven through org.freedesktop.systemd1.

Used by the reconciler as that host's ``Units`` port. Reads ActiveState, SubState, LoadState,
InvocationID and ActiveEnterTimestamp of the unit, and the service's NRestarts; queues StartUnit,
StopUnit and RestartUnit jobs (mode "replace") without waiting for them: the next pass reads the result.
D-Bus errors are translated here: NoSuchUnit is NotFound, anything else (the bus gone, a timeout)
a TemporaryError. The connection is opened on first use and opened again after it breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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


class SystemdUnits:
    """``bus_address``: a D-Bus address (``unix:path=/run/dbus/system_bus_socket``); None: the system bus."""

    def __init__(self, bus_address: str | None = None, timeout_s: float = 5.0) -> None:
        self._address = bus_address
        self._timeout_s = timeout_s
        self._bus: MessageBus | None = None
        self._connecting = asyncio.Lock()
        self._attempts = 0  # connection attempts made
        self._failure: TemporaryError | None = None  # the latest attempt's failure (None: it connected)

    async def close(self) -> None:
        bus, self._bus = self._bus, None
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
