"""One MariaDB Galera node run by systemd as a unit: haven's GaleraNode over that unit's D-Bus.

Who calls it: haven.stateful.serving (``[stateful.galera] driver = "systemd"``), haven.lab.ha_stateful
(which writes the HA lab's Galera units and forms the cluster through this driver) and its tests.

What is systemd's and what is the files': whether the node runs is the unit's ActiveState (active,
activating, reloading or deactivating: running; inactive or failed: stopped), or a server answering
on the node's unix socket however it was started (never started a second time). Starting and stopping
are systemd's StartUnit / StopUnit jobs over its D-Bus. Everything else is read from the node's data
folder as the local driver reads it (haven.stateful.galera_node.LocalGaleraNode): grastate.dat, the
wsrep status over its socket, and ``mariadbd --wsrep-recover`` run by haven on the stopped node's data
folder (what Debian's unit does in its ExecStartPre through ``galera_recovery``).

The unit (``unit_file`` writes it) starts ``mariadbd --defaults-file=CNF $_WSREP_NEW_CLUSTER
$_WSREP_START_POSITION``, as Debian's mariadb.service does, but reads those two variables from an
environment file of its own node (``FOLDER/wsrep.env``) instead of systemd's manager environment, which
``galera_new_cluster`` sets: that environment is shared by every unit of the machine's systemd, and a
second Galera unit on the same machine started meanwhile (two nodes of the lab share a controller)
would bootstrap a second cluster. The file is consumed by the start that reads it: the unit's
ExecStartPost removes it once mariadbd runs (``Type=exec``), so an automatic or manual later start of
that unit never bootstraps again; haven removes it too, once the start's job is over. A bootstrap
first writes ``safe_to_bootstrap: 1`` into grastate.dat, as ``galera_new_cluster`` expects. A unit that
does not read that file or pass ``$_WSREP_NEW_CLUSTER`` (Debian's mariadb.service reads it from the
manager environment) would make every bootstrap a plain start: haven serve refuses such a unit when it
builds the service (``bootstrap_problems`` over the EnvironmentFiles and ExecStart read on D-Bus).

The unit has ``Restart=no``: haven is the one that starts a stopped node (as Pacemaker's galera agent
requires of the unit it drives); a restart by systemd would race haven's ``--wsrep-recover`` on the
same data folder and, after a full outage, start nodes that must wait for the bootstrap.
Every failure crosses as a haven.domain.errors.TemporaryError or PermanentError.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from haven.domain.errors import PermanentError, TemporaryError
from haven.domain.waiting import within
from haven.stateful.galera import GraState, LiveStatus, Position
from haven.stateful.galera_node import MARIADBD, LocalGaleraNode, NodeLayout

_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"
_UNIT = "org.freedesktop.systemd1.Unit"
_SERVICE = "org.freedesktop.systemd1.Service"
_PROPERTIES = "org.freedesktop.DBus.Properties"
RUNNING_STATES = frozenset({"active", "activating", "reloading", "deactivating"})
ENV_FILE = "wsrep.env"


def unit_file(layout: NodeLayout, description: str) -> str:
    """The node's unit: Debian's ExecStart with its node's own one-shot environment file."""
    env = layout.folder / ENV_FILE
    return (
        f"[Unit]\nDescription={description}\nDefaultDependencies=no\n"
        "[Service]\nType=exec\n"
        f"EnvironmentFile=-{env}\n"
        f"ExecStart={MARIADBD} --defaults-file={layout.cnf} $_WSREP_NEW_CLUSTER $_WSREP_START_POSITION\n"
        f"ExecStartPost=/bin/rm -f {env}\n"
        f"StandardOutput=append:{layout.folder / 'mariadbd.out'}\n"
        f"StandardError=append:{layout.folder / 'mariadbd.out'}\n"
        "Restart=no\nTimeoutStartSec=30\nTimeoutStopSec=120\n"
    )


NEW_CLUSTER_ARGS = frozenset({"$_WSREP_NEW_CLUSTER", "${_WSREP_NEW_CLUSTER}"})


def bootstrap_problems(
    env_files: Sequence[str], exec_start: Sequence[Sequence[str]], folder: Path
) -> list[str]:
    """What a unit lacks for haven's bootstrap (empty: nothing): haven writes ``_WSREP_NEW_CLUSTER`` into
    ``FOLDER/wsrep.env``, so the unit must read that file (``env_files``: its EnvironmentFile= paths)
    and pass ``$_WSREP_NEW_CLUSTER`` to mariadbd (``exec_start``: its ExecStart= argvs, unexpanded).
    Debian's mariadb.service reads it from systemd's manager environment (``galera_new_cluster``)
    instead: there haven's bootstrap would silently be a plain start."""
    problems = []
    env = str(folder / ENV_FILE)
    if env not in env_files:
        problems.append(f"it reads no EnvironmentFile={env} (where haven writes _WSREP_NEW_CLUSTER)")
    if not any(arg in NEW_CLUSTER_ARGS for argv in exec_start for arg in argv):
        problems.append("its ExecStart does not pass $_WSREP_NEW_CLUSTER to mariadbd")
    return problems


def unit_file_exec(text: str) -> tuple[list[str], list[list[str]]]:
    """A unit file's EnvironmentFile= paths and ExecStart= argvs (as ``SystemdBus.unit_exec`` reads them
    over D-Bus; an empty ``ExecStart=`` resets the list, as in a drop-in)."""
    env_files: list[str] = []
    exec_start: list[list[str]] = []
    for raw in text.splitlines():
        key, sep, value = raw.strip().partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "EnvironmentFile" and value:
            env_files.append(value.removeprefix("-"))
        elif key == "ExecStart":
            if not value:
                exec_start = []
                continue
            argv = shlex.split(value.lstrip("@-:+!"))
            exec_start.append(argv)
    return env_files, exec_start


async def read_unit_exec(unit: str, bus: str | None) -> tuple[list[str], list[list[str]]]:
    """``unit``'s EnvironmentFile= paths and ExecStart= argvs, read over D-Bus from its systemd."""
    async with SystemdBus(bus) as systemd:
        return await systemd.unit_exec(unit)


class SystemdBus:
    """The few calls of systemd's D-Bus API this driver makes; one connection per ``async with``.

    A connection is opened per use (a few ms on a unix socket): the recovery loop and the tests run it
    from different event loops, and a connection belongs to the loop that opened it.
    """

    def __init__(self, address: str | None, timeout_s: float = 5.0) -> None:
        self._address, self._timeout_s = address, timeout_s
        self._bus: MessageBus | None = None

    async def __aenter__(self) -> SystemdBus:
        bus = MessageBus(bus_address=self._address, bus_type=BusType.SYSTEM)
        try:
            self._bus = await within(bus.connect(), self._timeout_s)
        except (TimeoutError, OSError, EOFError, DBusError) as exc:
            where = self._address or "the system bus"
            raise TemporaryError(
                f"cannot reach systemd's D-Bus at {where}: {exc or type(exc).__name__}"
            ) from exc
        return self

    async def __aexit__(self, *_exc: object) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await within(bus.wait_for_disconnect(), self._timeout_s)  # type: ignore[no-untyped-call]

    async def unit(self, unit: str) -> dict[str, Any]:
        """The unit's Unit properties (ActiveState, InvocationID...)."""
        path = str((await self.call(_MANAGER_PATH, _MANAGER, "LoadUnit", "s", [unit]))[0])
        values: dict[str, Variant] = (await self.call(path, _PROPERTIES, "GetAll", "s", [_UNIT]))[0]
        props = {key: variant.value for key, variant in values.items()}
        if props.get("LoadState") != "loaded":
            raise PermanentError(f"systemd has no unit {unit} ({props.get('LoadState')})")
        return props

    async def unit_exec(self, unit: str) -> tuple[list[str], list[list[str]]]:
        """The service's EnvironmentFiles paths and ExecStart argvs (unexpanded: ``$VAR`` as written)."""
        await self.unit(unit)  # loaded, or a PermanentError naming it
        path = str((await self.call(_MANAGER_PATH, _MANAGER, "LoadUnit", "s", [unit]))[0])
        values: dict[str, Variant] = (await self.call(path, _PROPERTIES, "GetAll", "s", [_SERVICE]))[0]
        env = values.get("EnvironmentFiles")
        execs = values.get("ExecStart")
        env_files = [str(item[0]) for item in (env.value if env is not None else [])]
        exec_start = [[str(arg) for arg in item[1]] for item in (execs.value if execs is not None else [])]
        return env_files, exec_start

    async def manager(self, member: str, signature: str = "", body: list[Any] | None = None) -> list[Any]:
        return await self.call(_MANAGER_PATH, _MANAGER, member, signature, body or [])

    async def call(
        self, path: str, interface: str, member: str, signature: str, body: list[Any]
    ) -> list[Any]:
        if self._bus is None:
            raise TemporaryError("systemd's D-Bus is not connected")
        message = Message(
            destination=_SYSTEMD,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body,
        )
        try:
            reply = await within(self._bus.call(message), self._timeout_s)
        except TimeoutError:
            raise TemporaryError(f"systemd did not answer {member} within {self._timeout_s:g} s") from None
        except (OSError, EOFError, DBusError) as exc:
            raise TemporaryError(f"systemd's bus failed during {member}: {exc}") from exc
        if reply is None:
            raise TemporaryError(f"systemd gave no reply to {member}")
        if reply.message_type is MessageType.ERROR:
            text = reply.body[0] if reply.body else reply.error_name
            raise TemporaryError(f"systemd refused {member}: {reply.error_name}: {text}")
        return list(reply.body)


class SystemdUnit:
    """One unit's jobs, each waited for until the unit is where the job takes it (or ``timeout_s``)."""

    def __init__(self, unit: str, bus: str | None = None, timeout_s: float = 30.0) -> None:
        self.unit, self.bus, self._timeout_s = unit, bus, timeout_s

    async def active_state(self) -> str:
        async with SystemdBus(self.bus) as bus:
            return str((await bus.unit(self.unit)).get("ActiveState", ""))

    async def running(self) -> bool:
        return await self.active_state() in RUNNING_STATES

    async def start(self) -> str:
        """StartUnit, then the state of the new invocation once its process runs (``Type=exec``)."""
        async with SystemdBus(self.bus) as bus:
            before = (await bus.unit(self.unit)).get("InvocationID", b"")
            await bus.manager("StartUnit", "ss", [self.unit, "replace"])
            return await self._wait(
                bus, lambda state, inv: inv != before and state not in ("activating", "inactive"), "start"
            )

    async def stop(self) -> None:
        """StopUnit (SIGTERM: a clean shutdown), until inactive."""
        async with SystemdBus(self.bus) as bus:
            await bus.manager("StopUnit", "ss", [self.unit, "replace"])
            await self._wait(bus, lambda state, _inv: state in ("inactive", "failed"), "stop")

    async def kill(self) -> None:
        """SIGKILL to the unit's main process (a power cut of that server), until the unit is down."""
        async with SystemdBus(self.bus) as bus:
            await bus.manager("KillUnit", "ssi", [self.unit, "main", 9])
            await self._wait(bus, lambda state, _inv: state in ("inactive", "failed"), "stop after SIGKILL")

    async def _wait(self, bus: SystemdBus, done: Any, what: str) -> str:
        deadline = time.monotonic() + self._timeout_s
        while True:
            props = await bus.unit(self.unit)
            state = str(props.get("ActiveState", ""))
            if done(state, props.get("InvocationID", b"")):
                return state
            if time.monotonic() > deadline:
                raise TemporaryError(f"{self.unit} still {state} {self._timeout_s:g} s after its {what}")
            await asyncio.sleep(0.1)


class SystemdGaleraNode:
    """A Galera node whose mariadbd is the unit ``unit`` of the systemd at D-Bus ``bus`` (None: system)."""

    def __init__(
        self,
        layout: NodeLayout,
        unit: str,
        bus: str | None = None,
        sql_timeout_s: float = 2.0,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.name = layout.name
        self.layout = layout
        self.unit = unit
        self.bus = bus
        self.files = LocalGaleraNode(layout, sql_timeout_s)  # grastate, SQL, --wsrep-recover
        self.systemd = SystemdUnit(unit, bus, start_timeout_s)
        self._starting = False

    # ---- reads -----------------------------------------------------------------------------------

    async def active_state(self) -> str:
        return await self.systemd.active_state()

    async def running(self) -> bool:
        if await self.systemd.running():
            return True
        # A server on its socket started otherwise (by hand, or by another unit) is never started again.
        if await asyncio.to_thread(self.files.runs):
            return True
        if not self._starting:  # left by a haven that died between writing it and starting the unit:
            (self.layout.folder / ENV_FILE).unlink(missing_ok=True)  # nobody's later start may read it
        return False

    async def grastate(self) -> GraState:
        return await self.files.grastate()

    async def live(self) -> LiveStatus:
        return await self.files.live()

    async def recover_position(self) -> Position:
        if await self.systemd.running():
            raise PermanentError(f"{self.name}: its unit {self.unit} runs: its position is read live")
        return await self.files.recover_position()

    # ---- effects ---------------------------------------------------------------------------------

    async def start(self, position: Position | None) -> None:
        env = {"_WSREP_START_POSITION": f"--wsrep-start-position={position}"} if position else {}
        await self._start(env)

    async def bootstrap(self, position: Position) -> None:
        if await self.running():
            await self.files.bootstrap(position)  # in place: pc.bootstrap=YES on a non-primary node
            return
        await asyncio.to_thread(self.files._mark_safe)
        await self._start(
            {
                "_WSREP_NEW_CLUSTER": "--wsrep-new-cluster",
                "_WSREP_START_POSITION": f"--wsrep-start-position={position}",
            }
        )

    async def bootstrap_new(self) -> None:
        """The very first start of a new cluster (no grastate.dat yet)."""
        await self._start({"_WSREP_NEW_CLUSTER": "--wsrep-new-cluster"})

    async def stop(self) -> None:
        """A clean stop (SIGTERM: mariadbd shuts down and saves its seqno), waited for."""
        await self.systemd.stop()

    async def kill(self) -> None:
        """A power cut of this node: SIGKILL to its mariadbd (no clean shutdown: seqno -1), until stopped."""
        await self.systemd.kill()

    async def _start(self, env: dict[str, str]) -> None:
        if await self.running():
            return  # already running: starting it again is a no-op (the step is idempotent)
        path = self.layout.folder / ENV_FILE
        text = "".join(f"{key}={value}\n" for key, value in env.items())
        self._starting = True
        try:
            await asyncio.to_thread(_write, path, text)
            state = await self.systemd.start()
        finally:
            path.unlink(missing_ok=True)  # consumed (ExecStartPost), or the start failed: never read again
            self._starting = False
        if state != "active":
            raise TemporaryError(
                f"{self.name}: {self.unit} is {state} after its start: {self.files.error_tail(3)}"
            )


def _write(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)
